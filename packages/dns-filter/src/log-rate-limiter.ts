import { createSweepTimer } from './sweep-timer';

/**
 * Per-key rate limit for log lines a workload can trigger (a blocked query, a malformed
 * packet, a drop event). Each key (an attachment, a client, a kind of line) gets a token
 * bucket of `burst` lines refilled at `perSecond`; a line over the limit is not written but
 * counted, and the next line that is written for that key carries the count
 * (`suppressed`). `drain()` hands out the counts of keys that went quiet, so the owner can
 * write one "N lines suppressed" summary instead of losing them.
 *
 * Bounded: at most `maxKeys` keys are tracked; past that the least recently seen key is
 * forgotten (its pending count is handed to the next drain()), so a workload that invents
 * keys cannot make the limiter itself grow without limit. Where keys come from the workload
 * (client addresses), `total` adds one bucket shared by all keys, so many keys together
 * cannot write more than that either; a line it stops is counted as suppressed under its
 * own key.
 */
export interface LogRateLimiterOptions {
  /** Lines per second each key may write once its burst is spent. Default 10. */
  readonly perSecond?: number;
  /** Lines a key may write at once. Default 20. */
  readonly burst?: number;
  /** Keys tracked at most. Default 10,000. */
  readonly maxKeys?: number;
  /**
   * One bucket all keys share: `perSecond` lines a second once `burst` (default 2 x perSecond)
   * is spent. Default: no shared limit.
   */
  readonly total?: { readonly perSecond: number; readonly burst?: number };
  /** Clock in milliseconds (tests). Default Date.now. */
  readonly now?: () => number;
}

export type LogPermit = { readonly ok: true; /** lines of this key suppressed since its last written line */ readonly suppressed: number } | { readonly ok: false };

export interface LogRateLimiter {
  /** May a line for `key` be written now? Counts it as suppressed when not. */
  take(key: string): LogPermit;
  /** Suppressed counts not yet reported (keys that went quiet, or were forgotten); resets them. */
  drain(): Array<{ key: string; suppressed: number }>;
  /** Every line suppressed so far, over all keys (for a metric). */
  readonly suppressedTotal: number;
}

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
}

/** Adds the tokens earned since the bucket's last refill, up to `burst`. */
function refill(b: { tokens: number; at: number }, t: number, perSecond: number, burst: number): void {
  b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * perSecond);
  b.at = t;
}

const DENY: LogPermit = Object.freeze({ ok: false });

export function createLogRateLimiter(opts: LogRateLimiterOptions = {}): LogRateLimiter {
  const perSecond = opts.perSecond ?? 10;
  const burst = opts.burst ?? 20;
  const maxKeys = opts.maxKeys ?? 10_000;
  const now = opts.now ?? Date.now;
  if (!(perSecond > 0) || !(burst >= 1) || !(maxKeys >= 1)) throw new RangeError('log rate limiter: perSecond > 0, burst >= 1 and maxKeys >= 1 are required');
  let shared: { tokens: number; at: number; readonly perSecond: number; readonly burst: number } | undefined;
  if (opts.total !== undefined) {
    const { perSecond: tps, burst: tb = 2 * tps } = opts.total;
    if (!(tps > 0) || !(tb >= 1)) throw new RangeError('log rate limiter: total.perSecond > 0 and total.burst >= 1 are required');
    shared = { tokens: tb, at: now(), perSecond: tps, burst: tb };
  }
  // A Map iterates in insertion order; re-inserting on use keeps it in least-recently-used order.
  const buckets = new Map<string, Bucket>();
  const forgotten = new Map<string, number>();
  let suppressedSum = 0;

  return {
    take(key) {
      const t = now();
      let b = buckets.get(key);
      if (b) {
        buckets.delete(key);
        refill(b, t, perSecond, burst);
      } else {
        b = { tokens: burst, at: t, suppressed: 0 };
        if (buckets.size >= maxKeys) {
          const [oldKey, old] = buckets.entries().next().value as [string, Bucket];
          buckets.delete(oldKey);
          if (old.suppressed > 0 && forgotten.size < maxKeys) forgotten.set(oldKey, (forgotten.get(oldKey) ?? 0) + old.suppressed);
        }
      }
      buckets.set(key, b);
      if (shared) refill(shared, t, shared.perSecond, shared.burst);
      if (b.tokens >= 1 && (shared === undefined || shared.tokens >= 1)) {
        b.tokens -= 1;
        if (shared) shared.tokens -= 1;
        const suppressed = b.suppressed;
        b.suppressed = 0;
        return { ok: true, suppressed };
      }
      b.suppressed++;
      suppressedSum++;
      return DENY;
    },
    drain() {
      const out: Array<{ key: string; suppressed: number }> = [];
      for (const [key, n] of forgotten) out.push({ key, suppressed: n });
      forgotten.clear();
      for (const [key, b] of buckets) {
        if (b.suppressed > 0) {
          out.push({ key, suppressed: b.suppressed });
          b.suppressed = 0;
        }
      }
      return out;
    },
    get suppressedTotal() {
      return suppressedSum;
    },
  };
}

export interface SuppressedSummaries {
  /** A line was suppressed: the summaries run until every suppressed line has been reported. */
  wake(): void;
  /** Stops them and writes the last summary. Idempotent. */
  stop(): void;
}

/**
 * Hands the limiter's drained counts to `write` every `intervalMs` (an unref'd timer) and once
 * more at stop(): the 'N lines suppressed' summaries both log wrappers write. The timer runs
 * only from a wake() (call it whenever take() says no) until an interval with nothing to
 * report, so a quiet logger holds no timer (see sweep-timer.ts).
 */
export function startSuppressedSummaries(limiter: LogRateLimiter, intervalMs: number, write: (key: string, suppressed: number) => void): SuppressedSummaries {
  if (!(intervalMs >= 1)) throw new RangeError('log rate limiter: summaryIntervalMs >= 1 is required');
  const summarize = (): boolean => {
    const pending = limiter.drain();
    for (const { key, suppressed } of pending) write(key, suppressed);
    return pending.length > 0;
  };
  const timer = createSweepTimer(intervalMs, summarize);
  let stopped = false;
  return {
    wake: timer.wake,
    stop() {
      if (stopped) return;
      stopped = true;
      timer.close();
      summarize();
    },
  };
}
