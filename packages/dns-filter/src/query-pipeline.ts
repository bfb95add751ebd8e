// The query pipeline of one filter: parse -> decide (rules, or the proxy callback) ->
// forward (cache or upstream) -> release (rebinding check, onResolved) -> end. This
// module parses, admits and decides by rules; each later step is its own module:
// proxy-decision.ts, query-forward.ts, query-release.ts, query-end.ts.

import { performance } from 'node:perf_hooks';

import { noMatchVerdict, passesDns, type DomainDecision } from '@netfence/policy-engine';

import type { LimitedLogger } from './limited-logger';
import { createProxyDecider } from './proxy-decision';
import type { QueryCtx, QueryEnds, Send } from './query-context';
import { createQueryEnds, type PipelineState } from './query-end';
import { createForwarder } from './query-forward';
import { createReleaser } from './query-release';
import type { QueryStats } from './query-stats';
import type { ResponseCache } from './response-cache';
import type { FilterSettings } from './settings';
import type { ClientInfo, QueryEvent, QueryReason, ResolvedInfo } from './types';
import type { UpstreamPool } from './upstream-pool';
import { CLASS_IN, QTYPE, RCODE, parseQuery } from './wire';

export interface QueryPipelineDeps {
  /** The current settings; a query keeps those it was received under. */
  readonly settings: () => FilterSettings;
  readonly stats: QueryStats;
  readonly listeners: ReadonlySet<(e: QueryEvent) => void>;
  readonly log: LimitedLogger;
  readonly cache: ResponseCache;
  readonly cacheSize: number;
  readonly pool: UpstreamPool;
  readonly maxInFlight: number;
  readonly onResolved: ((info: ResolvedInfo) => void | Promise<void>) | undefined;
  readonly hookTimeoutMs: number;
}

export interface QueryPipeline {
  /**
   * Handles one message; `send` answers it. `tcp`: the client takes answers up to 65535
   * bytes. Returns false when the message is dropped without any answer.
   */
  handle(msg: Buffer, client: ClientInfo, send: Send, tcp: boolean): boolean;
  /** Queries started and not finished. */
  readonly inFlight: number;
  /** Answers are no longer sent; hook deadlines stop. In-flight queries still end (and are counted). */
  close(): void;
}

/** allowlist/denylist: the rule set decides; the mode says what no match means. */
function decideByRules(ctx: QueryCtx, ends: QueryEnds, forward: (ctx: QueryCtx, reason: QueryReason) => void): void {
  if (!ctx.q.nameClean) {
    ends.block(ctx, 'invalid-name');
    return;
  }
  let d: DomainDecision;
  try {
    d = ctx.cfg.ruleSet.decide(ctx.q.name);
  } catch {
    ends.block(ctx, 'invalid-name');
    return;
  }
  ctx.rule = d.rule;
  const reason = d.verdict === 'none' ? 'no-match' : 'rule';
  if (passesDns(d.verdict, noMatchVerdict(ctx.cfg.mode))) forward(ctx, reason);
  else ends.block(ctx, reason);
}

export function createQueryPipeline(deps: QueryPipelineDeps): QueryPipeline {
  const { settings, stats, maxInFlight } = deps;
  const c = stats.counters;
  const state: PipelineState = { inFlight: 0, closed: false };
  const ends = createQueryEnds({ state, stats, listeners: deps.listeners, log: deps.log });
  const releaser = createReleaser({ ends, counters: c, log: deps.log, onResolved: deps.onResolved, hookTimeoutMs: deps.hookTimeoutMs });
  const forward = createForwarder({ ends, release: releaser.release, counters: c, cacheSize: deps.cacheSize, cache: deps.cache, pool: deps.pool });
  const proxyDecide = createProxyDecider({ ends, forward, release: releaser.release });

  function handle(msg: Buffer, client: ClientInfo, send: Send, tcp: boolean): boolean {
    const t0 = performance.now();
    c.queries++;
    const r = parseQuery(msg);
    if (!r.ok) {
      if (r.kind === 'drop') {
        c.invalid++;
        return false;
      }
      ends.answerInvalid({ msg, client, send, t0 }, r.kind === 'formerr' ? RCODE.FORMERR : RCODE.NOTIMP, r.kind, r.questionEnd);
      return true;
    }
    const q = r.query;
    if (q.qclass !== CLASS_IN) {
      ends.answerInvalid({ msg, client, send, t0 }, RCODE.REFUSED, 'not-in-class', q.questionEnd, q);
      return true;
    }
    if (q.qtype === QTYPE.AXFR || q.qtype === QTYPE.IXFR) {
      ends.answerInvalid({ msg, client, send, t0 }, RCODE.REFUSED, 'zone-transfer', q.questionEnd, q);
      return true;
    }
    const ctx: QueryCtx = {
      msg,
      q,
      client,
      send,
      maxSize: tcp ? 65535 : q.edns ? q.ednsUdpSize : 512,
      t0,
      cfg: settings(),
      rule: undefined,
      learn: true,
      done: false,
      timer: undefined,
      hookDeadline: 0,
      hookUpstream: undefined,
    };
    state.inFlight++;
    if (state.inFlight > maxInFlight) {
      c.overloaded++;
      ends.fail(ctx, 'overload');
      return true;
    }
    const mode = ctx.cfg.mode;
    if (mode === 'disabled') forward(ctx, 'mode-disabled');
    else if (mode === 'proxy') proxyDecide(ctx);
    else decideByRules(ctx, ends, forward);
    return true;
  }

  return {
    handle,
    get inFlight() {
      return state.inFlight;
    },
    close() {
      state.closed = true;
      releaser.close();
    },
  };
}
