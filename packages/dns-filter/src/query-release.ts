// The last step before an answer leaves: the rebinding check, the client's ID and
// question written on it, truncation to the client's size, then onResolved awaited
// (with a deadline) before it is sent. A hook that throws, rejects or is late gives
// the client SERVFAIL.

import { performance } from 'node:perf_hooks';

import type { LimitedLogger } from './limited-logger';
import { isPrivateAddress } from './private-address';
import type { Answer, QueryCtx, QueryEnds } from './query-context';
import { restoreId } from './query-end';
import type { QueryCounters } from './query-stats';
import { createSweepTimer } from './sweep-timer';
import type { ResolvedInfo } from './types';
import { buildEmptyResponse, qtypeName } from './wire';

export interface ReleaseDeps {
  readonly ends: QueryEnds;
  readonly counters: QueryCounters;
  readonly log: LimitedLogger;
  readonly onResolved: ((info: ResolvedInfo) => void | Promise<void>) | undefined;
  readonly hookTimeoutMs: number;
}

export interface Releaser {
  /** Checks, hooks and sends `answer` (owned by this query). */
  release(ctx: QueryCtx, answer: Answer): void;
  /** Stops the hook deadline sweep. */
  close(): void;
}

/** An answer pointing into private ranges is refused unless the name is exempt or allowed exactly. */
function isRebinding(ctx: QueryCtx, addresses: readonly string[]): boolean {
  const r = ctx.cfg;
  if (!r.rebinding || addresses.length === 0 || r.rebindingAllowed.has(ctx.q.name)) return false;
  const exact = ctx.rule !== undefined && ctx.rule.action === 'allow' && !ctx.rule.includeSubdomains && ctx.rule.domain === ctx.q.name;
  return !exact && addresses.some(isPrivateAddress);
}

export function createReleaser(deps: ReleaseDeps): Releaser {
  const { ends, counters: c, log, onResolved, hookTimeoutMs } = deps;
  /** Queries waiting for onResolved, in start order (one constant timeout: deadlines are monotonic). */
  const hookWaiting = new Set<QueryCtx>();
  // Runs only while a hook is awaited (see sweep-timer.ts).
  const hookSweep = createSweepTimer(Math.max(5, Math.min(50, hookTimeoutMs / 4)), () => {
    const now = performance.now();
    for (const ctx of hookWaiting) {
      if (ctx.hookDeadline > now) break;
      hookWaiting.delete(ctx);
      if (ctx.done) continue;
      c.hookFailures++;
      ends.fail(ctx, 'hook-failed', ctx.hookUpstream);
    }
    return hookWaiting.size > 0;
  });

  const allowed = (ctx: QueryCtx, out: Buffer, a: Answer): void => {
    c.allowed++;
    ends.finish(ctx, out, { verdict: 'allowed', reason: a.reason, cached: a.cached, upstream: a.upstream, addresses: a.addresses });
  };
  const hookFailed = (ctx: QueryCtx, e: unknown, upstream: string | undefined): void => {
    c.hookFailures++;
    log.log('warn', 'hook-failed', { err: e, dns: { name: ctx.q.name } }, 'onResolved failed');
    ends.fail(ctx, 'hook-failed', upstream);
  };

  function release(ctx: QueryCtx, a: Answer): void {
    if (isRebinding(ctx, a.addresses)) {
      c.rebindingBlocked++;
      ends.block(ctx, 'rebinding');
      return;
    }
    // the client's ID and question (original case) on the answer
    const buf = a.buf;
    restoreId(ctx);
    buf[0] = ctx.q.id >> 8;
    buf[1] = ctx.q.id & 0xff;
    ctx.msg.copy(buf, 12, 12, ctx.q.questionEnd);
    const out = buf.length > ctx.maxSize ? buildEmptyResponse(ctx.msg, ctx.q.questionEnd, buf[3]! & 0xf, ctx.q.edns, true) : buf;
    if (onResolved === undefined || a.addresses.length === 0 || !ctx.learn) {
      allowed(ctx, out, a);
      return;
    }
    let res: void | Promise<void>;
    const info: ResolvedInfo = {
      name: ctx.q.name,
      qtype: qtypeName(ctx.q.qtype),
      addresses: a.addresses,
      ttlSec: a.ttlSec,
      cnames: a.cnames,
      mode: ctx.cfg.mode,
      cached: a.cached,
      client: ctx.client,
    };
    try {
      res = onResolved(info);
    } catch (e) {
      hookFailed(ctx, e, a.upstream);
      return;
    }
    if (res === undefined || typeof (res as Promise<void>).then !== 'function') {
      allowed(ctx, out, a);
      return;
    }
    ctx.hookDeadline = performance.now() + hookTimeoutMs;
    ctx.hookUpstream = a.upstream;
    hookWaiting.add(ctx);
    hookSweep.wake();
    (res as Promise<void>).then(
      () => {
        hookWaiting.delete(ctx);
        if (!ctx.done) allowed(ctx, out, a);
      },
      (e: unknown) => {
        hookWaiting.delete(ctx);
        if (!ctx.done) hookFailed(ctx, e, a.upstream);
      },
    );
  }

  return {
    release,
    close() {
      hookSweep.close();
    },
  };
}
