// Log lines a workload can trigger (a refused or malformed DNS query, a drop event, whatever
// an attachment's DNS server logs) go through a per-attachment rate limit: a workload that
// floods cannot make the host's log grow without bound, nor slow the other attachments by
// making the daemon write. Lines over the limit are counted: the next written line of the
// same key carries `suppressed`, and keys that went quiet get one summary line.

import { createLogRateLimiter, type DnsFilterLogger, type LogRateLimiter } from '@netfence/dns-filter';
import type { Level, Logger } from 'pino';

export interface WorkloadLogOptions {
  /** Lines a second per key once its burst is spent (default 10). */
  readonly perSecond?: number;
  /** Lines a key may write at once (default 20). */
  readonly burst?: number;
  /** How often keys that went quiet get their summary line (default 10 s). */
  readonly summaryIntervalMs?: number;
  readonly now?: () => number;
}

type LineLevel = Extract<Level, 'debug' | 'info' | 'warn' | 'error'>;

export interface WorkloadLog {
  /**
   * Writes a line for `kind` of `attachment` if its key is under the limit. Disabled levels
   * are not counted. Untrusted data goes in `obj` under named keys, as everywhere.
   */
  write(kind: string, attachment: string, level: LineLevel, obj: Record<string, unknown>, msg: string): void;
  /** A logger whose every line counts against `kind` of `attachment` (for a library's own lines). */
  loggerFor(kind: string, attachment: string, bindings?: Record<string, unknown>): DnsFilterLogger;
  /** Lines suppressed so far, all keys. */
  readonly suppressedTotal: number;
  /** Writes the pending summaries and stops the timer. Idempotent. */
  close(): void;
}

export function createWorkloadLog(logger: Logger, opts: WorkloadLogOptions = {}): WorkloadLog {
  const limiter: LogRateLimiter = createLogRateLimiter({ perSecond: opts.perSecond ?? 10, burst: opts.burst ?? 20, now: opts.now });
  const keyOf = (kind: string, attachment: string) => `${kind}\u0000${attachment}`;

  function summarise(): void {
    for (const { key, suppressed } of limiter.drain()) {
      const [kind, attachment] = key.split('\u0000');
      logger.warn({ event: 'log-rate-limit', kind, attachment, suppressed }, 'log lines suppressed (rate limit)');
    }
  }
  const timer = setInterval(summarise, opts.summaryIntervalMs ?? 10_000);
  timer.unref();
  let closed = false;

  function write(kind: string, attachment: string, level: LineLevel, obj: Record<string, unknown>, msg: string, base: Logger = logger): void {
    if (!base.isLevelEnabled(level)) return;
    const permit = limiter.take(keyOf(kind, attachment));
    if (!permit.ok) return;
    base[level](permit.suppressed ? { ...obj, suppressed: permit.suppressed } : obj, msg);
  }

  function loggerFor(kind: string, attachment: string, bindings: Record<string, unknown> = {}): DnsFilterLogger {
    const base = logger.child({ attachment, ...bindings });
    const line = (level: LineLevel) => (obj: unknown, msg?: string) =>
      write(kind, attachment, level, obj instanceof Error ? { err: obj } : typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>) : { value: obj }, msg ?? '', base);
    return {
      debug: line('debug'),
      info: line('info'),
      warn: line('warn'),
      error: line('error'),
      child: (more) => loggerFor(kind, attachment, { ...bindings, ...more }),
    };
  }

  return {
    write: (kind, attachment, level, obj, msg) => write(kind, attachment, level, obj, msg),
    loggerFor,
    get suppressedTotal() {
      return limiter.suppressedTotal;
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      summarise();
    },
  };
}
