// Counters and the latency histogram of one filter's queries. The counters object is
// shared with the upstream pool (it counts its own queries, timeouts and errors).

import type { UpstreamCounters } from './upstream-pool';

/** Upper bounds (ms) of the latency buckets; the counts have one more (+Inf). */
export const LATENCY_BUCKETS_MS: readonly number[] = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

export interface QueryCounters extends UpstreamCounters {
  queries: number;
  allowed: number;
  blocked: number;
  failed: number;
  invalid: number;
  cacheHits: number;
  cacheMisses: number;
  overloaded: number;
  hookFailures: number;
  rebindingBlocked: number;
}

export interface QueryStats {
  readonly counters: QueryCounters;
  /** Adds one query's latency. */
  recordLatency(ms: number): void;
  readonly latencyCounts: readonly number[];
  readonly latencySumMs: number;
}

export function createQueryStats(): QueryStats {
  const counters: QueryCounters = {
    queries: 0,
    allowed: 0,
    blocked: 0,
    failed: 0,
    invalid: 0,
    cacheHits: 0,
    cacheMisses: 0,
    overloaded: 0,
    hookFailures: 0,
    rebindingBlocked: 0,
    upstreamQueries: 0,
    upstreamTimeouts: 0,
    upstreamErrors: 0,
    tcpFallbacks: 0,
    spoofedDropped: 0,
  };
  const latencyCounts = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  let latencySumMs = 0;
  return {
    counters,
    recordLatency(ms) {
      latencySumMs += ms;
      let b = 0;
      while (b < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[b]!) b++;
      latencyCounts[b]!++;
    },
    latencyCounts,
    get latencySumMs() {
      return latencySumMs;
    },
  };
}
