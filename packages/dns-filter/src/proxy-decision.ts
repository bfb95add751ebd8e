// Proxy mode: the decide() callback says whether a name resolves, within a deadline.
// An allowed A/AAAA query with `ips` is answered with those addresses (no upstream);
// any other allowed query is forwarded. No callback, a throw, a rejection or a late
// answer gives SERVFAIL; a refusal, the settings' block answer.

import { clampTtl } from './settings';
import type { Answer, QueryCtx, QueryEnds } from './query-context';
import type { ProxyDecision, QueryReason } from './types';
import { QTYPE, addressBytes, buildAddressResponse, qtypeName } from './wire';

export interface ProxyDeps {
  readonly ends: QueryEnds;
  readonly forward: (ctx: QueryCtx, reason: QueryReason) => void;
  readonly release: (ctx: QueryCtx, answer: Answer) => void;
}

/** The answer made of the decision's addresses (those of the query's family only). */
function synthesised(ctx: QueryCtx, d: ProxyDecision, ips: readonly unknown[]): Answer {
  const qt = ctx.q.qtype;
  const want = qt === QTYPE.A ? 4 : 16;
  const bytes: Uint8Array[] = [];
  const texts: string[] = [];
  for (const ip of ips) {
    const b = typeof ip === 'string' ? addressBytes(ip) : null;
    if (b && b.length === want) {
      bytes.push(b);
      texts.push(ip as string);
    }
  }
  const ttl = clampTtl(typeof d.ttlSec === 'number' && d.ttlSec >= 0 ? Math.floor(d.ttlSec) : ctx.cfg.minTtl, ctx.cfg);
  const buf = buildAddressResponse(ctx.msg, ctx.q.questionEnd, qt, bytes, ttl, ctx.q.edns);
  return { buf, addresses: texts, ttlSec: ttl, cnames: [], cached: false, reason: 'proxy', upstream: undefined };
}

/** Returns proxyDecide(ctx): asks the settings' decide() and acts on its decision. */
export function createProxyDecider(deps: ProxyDeps): (ctx: QueryCtx) => void {
  const { ends, forward, release } = deps;

  function onDecision(ctx: QueryCtx, d: ProxyDecision): void {
    if (ctx.done) return;
    if (ctx.timer) clearTimeout(ctx.timer);
    ctx.timer = undefined;
    if (d === null || typeof d !== 'object' || !d.allow) {
      ends.block(ctx, 'proxy');
      return;
    }
    ctx.learn = d.addToFilter !== false;
    const qt = ctx.q.qtype;
    if (Array.isArray(d.ips) && d.ips.length > 0 && (qt === QTYPE.A || qt === QTYPE.AAAA)) {
      release(ctx, synthesised(ctx, d, d.ips));
      return;
    }
    forward(ctx, 'proxy');
  }

  return function proxyDecide(ctx) {
    const decide = ctx.cfg.decide;
    if (!decide) {
      ends.fail(ctx, 'proxy-error');
      return;
    }
    if (!ctx.q.nameClean || ctx.q.name === '') {
      ends.block(ctx, 'invalid-name');
      return;
    }
    ctx.timer = setTimeout(() => ends.fail(ctx, 'proxy-timeout'), ctx.cfg.decideTimeoutMs);
    let p: Promise<ProxyDecision>;
    try {
      p = Promise.resolve(decide(ctx.q.name, qtypeName(ctx.q.qtype), ctx.client));
    } catch {
      ends.fail(ctx, 'proxy-error');
      return;
    }
    p.then(
      (d) => onDecision(ctx, d),
      () => ends.fail(ctx, 'proxy-error'),
    );
  };
}
