import { createLogRateLimiter, startSuppressedSummaries } from './log-rate-limiter';

/** The pino-compatible logger of the filter (only these methods are used). */
export interface LimitedLoggerTarget {
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
  debug(obj: unknown, msg?: string): void;
}

export interface LimitedLoggerOptions {
  readonly perSecond?: number;
  readonly burst?: number;
  /** How often kinds that went quiet get their 'log lines suppressed' line. Default 10 000 ms. */
  readonly summaryIntervalMs?: number;
}

export interface LimitedLogger {
  /** Writes the line unless its kind (`key`) is over its rate; adds `suppressed` when lines were dropped before it. */
  log(level: 'warn' | 'error' | 'debug', key: string, obj: Record<string, unknown>, msg: string): void;
  /** Lines not written so far. */
  readonly suppressed: number;
  /** Stops the summary timer and writes the last summary. Idempotent. */
  close(): void;
}

/**
 * Every internal log line a workload can trigger goes through here, rate-limited per kind of
 * line (a fixed, small set of keys: a workload cannot invent new ones). Without a logger
 * nothing is counted or written.
 */
export function createLimitedLogger(logger: LimitedLoggerTarget | undefined, opts: LimitedLoggerOptions = {}): LimitedLogger {
  const limiter = createLogRateLimiter({ perSecond: opts.perSecond ?? 10, burst: opts.burst ?? 20 });
  const summaryIntervalMs = opts.summaryIntervalMs ?? 10_000;
  if (!(summaryIntervalMs >= 1)) throw new RangeError('logRateLimit.summaryIntervalMs must be >= 1');
  const summaries = logger ? startSuppressedSummaries(limiter, summaryIntervalMs, (key, suppressed) => logger.warn({ kind: key, suppressed }, 'log lines suppressed')) : undefined;
  return {
    log(level, key, obj, msg) {
      if (!logger) return;
      const p = limiter.take(key);
      if (!p.ok) {
        summaries?.wake();
        return;
      }
      logger[level](p.suppressed > 0 ? { ...obj, suppressed: p.suppressed } : obj, msg);
    },
    get suppressed() {
      return limiter.suppressedTotal;
    },
    close() {
      summaries?.stop();
    },
  };
}
