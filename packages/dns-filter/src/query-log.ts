import type { QueryEvent } from './types';
import { createLogRateLimiter, startSuppressedSummaries } from './log-rate-limiter';

/**
 * The per-query JSON lines of `netfence-dns --log-queries`. Every query can be sent by a
 * workload, so the lines are rate-limited per (client address, verdict) and in total: a
 * flood from one client costs a bounded number of lines and does not silence other clients
 * or verdicts. A written line carries `suppressed` (lines of its client and verdict dropped
 * before it); every `summaryIntervalMs` and at close() one line per client and verdict
 * that went quiet says how many were dropped: `{ event: 'suppressed', client,
 * verdict, suppressed }`.
 */
export interface QueryLogOptions {
  /** Writes one log line: its fields and its message (netfence-dns hands them to its pino logger). */
  readonly log: (fields: Record<string, unknown>, msg: string) => void;
  /** Per client address and verdict. Defaults 20 lines a second, bursts of 50. */
  readonly perSecond?: number;
  readonly burst?: number;
  /** All clients together. Defaults 200 lines a second, bursts of 500. */
  readonly totalPerSecond?: number;
  readonly totalBurst?: number;
  /** Default 10 000 ms. */
  readonly summaryIntervalMs?: number;
}

export interface QueryLog {
  onQuery(e: QueryEvent): void;
  /** Lines not written so far. */
  readonly suppressed: number;
  /** Stops the summary timer and writes the last summaries. Idempotent. */
  close(): void;
}

export const QUERY_LOG_DEFAULTS = { perSecond: 20, burst: 50, totalPerSecond: 200, totalBurst: 500, summaryIntervalMs: 10_000 } as const;

export function createQueryLog(opts: QueryLogOptions): QueryLog {
  const limiter = createLogRateLimiter({
    perSecond: opts.perSecond ?? QUERY_LOG_DEFAULTS.perSecond,
    burst: opts.burst ?? QUERY_LOG_DEFAULTS.burst,
    total: { perSecond: opts.totalPerSecond ?? QUERY_LOG_DEFAULTS.totalPerSecond, burst: opts.totalBurst ?? QUERY_LOG_DEFAULTS.totalBurst },
    maxKeys: 4096,
  });
  const summaries = startSuppressedSummaries(limiter, opts.summaryIntervalMs ?? QUERY_LOG_DEFAULTS.summaryIntervalMs, (key, suppressed) => {
    const sp = key.indexOf(' ');
    opts.log({ event: 'suppressed', client: key.slice(sp + 1), verdict: key.slice(0, sp), suppressed }, 'dns query lines suppressed');
  });
  return {
    onQuery(e) {
      const p = limiter.take(`${e.verdict} ${e.client.address}`);
      if (!p.ok) {
        summaries.wake();
        return;
      }
      opts.log(
        {
          event: 'query',
          client: `${e.client.address}:${e.client.port}`,
          transport: e.client.transport,
          name: e.name,
          qtype: e.qtype,
          verdict: e.verdict,
          reason: e.reason,
          rule: e.rule ? `${e.rule.action} ${e.rule.includeSubdomains ? '*.' : ''}${e.rule.domain}` : undefined,
          rcode: e.rcode,
          latencyMs: e.latencyMs,
          cached: e.cached,
          upstream: e.upstream,
          addresses: e.addresses,
          suppressed: p.suppressed > 0 ? p.suppressed : undefined,
        },
        'dns query',
      );
    },
    get suppressed() {
      return limiter.suppressedTotal;
    },
    close: summaries.stop,
  };
}
