// The end of every query: send the answer (unless the filter is closed), free the
// in-flight slot, record latency, tell the query listeners. Also answers messages
// refused before they became queries (FORMERR, NOTIMP, not IN, zone transfers).

import { performance } from 'node:perf_hooks';

import type { LimitedLogger } from './limited-logger';
import type { QueryCtx, QueryEnds, QueryInput, QueryOutcome } from './query-context';
import type { QueryStats } from './query-stats';
import type { QueryEvent, QueryReason } from './types';
import { RCODE, buildEmptyResponse, qtypeName, rcodeName, type ParsedQuery } from './wire';

/** What the pipeline and the filter share about queries in flight. */
export interface PipelineState {
  /** Queries started and not finished. */
  inFlight: number;
  /** Set by close(): answers are no longer sent. */
  closed: boolean;
}

export interface QueryEndDeps {
  readonly state: PipelineState;
  readonly stats: QueryStats;
  readonly listeners: ReadonlySet<(e: QueryEvent) => void>;
  readonly log: LimitedLogger;
}

export interface QueryEndsWithInvalid extends QueryEnds {
  /**
   * Answers a message refused before it became a query (no in-flight slot taken).
   * `q` is absent when the message did not parse.
   */
  answerInvalid(input: QueryInput, rcode: number, reason: QueryReason, questionEnd: number, q?: ParsedQuery): void;
}

/** The client's ID back on its message (the upstream pool rewrote it when forwarding). */
export function restoreId(ctx: QueryCtx): void {
  ctx.msg[0] = ctx.q.id >> 8;
  ctx.msg[1] = ctx.q.id & 0xff;
}

export function createQueryEnds(deps: QueryEndDeps): QueryEndsWithInvalid {
  const { state, stats, listeners, log } = deps;
  const c = stats.counters;

  function emit(ev: QueryEvent): void {
    for (const l of listeners) {
      try {
        l(ev);
      } catch (e) {
        log.log('warn', 'query-listener', { err: e }, 'query listener threw');
      }
    }
  }

  function finish(ctx: QueryCtx, buf: Buffer, outcome: QueryOutcome): void {
    if (ctx.done) return;
    ctx.done = true;
    if (ctx.timer) clearTimeout(ctx.timer);
    state.inFlight--;
    if (!state.closed) {
      try {
        ctx.send(buf);
      } catch (e) {
        log.log('debug', 'send-failed', { err: e }, 'send failed');
      }
    }
    const ms = performance.now() - ctx.t0;
    stats.recordLatency(ms);
    if (listeners.size > 0) {
      const { upstream, addresses } = outcome;
      emit({
        name: ctx.q.name,
        qtype: qtypeName(ctx.q.qtype),
        verdict: outcome.verdict,
        reason: outcome.reason,
        ...(ctx.rule ? { rule: ctx.rule } : {}),
        rcode: rcodeName(buf.length >= 4 ? buf[3]! & 0xf : 0),
        latencyMs: Math.round(ms * 1000) / 1000,
        client: ctx.client,
        cached: outcome.cached,
        ...(upstream !== undefined ? { upstream } : {}),
        ...(addresses !== undefined && addresses.length > 0 ? { addresses } : {}),
      });
    }
  }

  return {
    finish,
    fail(ctx, reason, upstream) {
      if (ctx.done) return;
      restoreId(ctx);
      c.failed++;
      finish(ctx, buildEmptyResponse(ctx.msg, ctx.q.questionEnd, RCODE.SERVFAIL, ctx.q.edns), { verdict: 'failed', reason, cached: false, upstream });
    },
    block(ctx, reason) {
      if (ctx.done) return;
      restoreId(ctx);
      c.blocked++;
      finish(ctx, buildEmptyResponse(ctx.msg, ctx.q.questionEnd, ctx.cfg.blockRcode, ctx.q.edns), { verdict: 'blocked', reason, cached: false });
    },
    answerInvalid(input, rcode, reason, questionEnd, q) {
      c.invalid++;
      const buf = buildEmptyResponse(input.msg, questionEnd, rcode, q?.edns ?? false);
      try {
        input.send(buf);
      } catch {
        // socket closed
      }
      if (listeners.size > 0) {
        emit({
          name: q?.name ?? '',
          qtype: qtypeName(q?.qtype ?? 0),
          verdict: 'invalid',
          reason,
          rcode: rcodeName(rcode),
          latencyMs: Math.round((performance.now() - input.t0) * 1000) / 1000,
          client: input.client,
          cached: false,
        });
      }
    },
  };
}
