/** Reconnect backoff settings. */
export interface BackoffOptions {
  /** Ceiling of the first retry delay. Default 250 ms. */
  readonly initialMs?: number;
  /** Largest ceiling. Default 30 000 ms. */
  readonly maxMs?: number;
  /** Growth factor of the ceiling per failed attempt. Default 2. */
  readonly multiplier?: number;
  /**
   * Full jitter (default true): the delay is uniform in [0, ceiling]. With false the delay
   * is exactly the ceiling (deterministic; useful in tests).
   */
  readonly jitter?: boolean;
}

export interface ResolvedBackoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier: number;
  readonly jitter: boolean;
}

export function resolveBackoff(o: BackoffOptions | undefined): ResolvedBackoff {
  const initialMs = o?.initialMs ?? 250;
  const maxMs = o?.maxMs ?? 30_000;
  const multiplier = o?.multiplier ?? 2;
  return { initialMs, maxMs: Math.max(maxMs, initialMs), multiplier, jitter: o?.jitter ?? true };
}

/** Ceiling of the delay before retry number `attempt` (0-based): min(maxMs, initialMs * multiplier^attempt). */
export function backoffCeiling(b: ResolvedBackoff, attempt: number): number {
  const raw = b.initialMs * Math.pow(b.multiplier, Math.min(attempt, 64));
  return Math.min(b.maxMs, Number.isFinite(raw) ? raw : b.maxMs);
}

/** The delay before retry number `attempt` (exponential, capped, full jitter unless disabled). */
export function backoffDelay(b: ResolvedBackoff, attempt: number, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(b, attempt);
  return b.jitter ? Math.floor(random() * ceiling) : ceiling;
}
