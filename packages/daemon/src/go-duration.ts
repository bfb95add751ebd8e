// Durations as netfence.v1 writes them (Go's time.ParseDuration syntax), plus a bare
// number meaning seconds (Netfence's own, kept for existing configs).

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3, // U+00B5 MICRO SIGN, as Go accepts it
  μs: 1e-3, // U+03BC GREEK SMALL LETTER MU, as Go accepts it
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** One `<decimal><unit>` term of a Go duration; units longest first so `ms` is not read as `m`. */
const TERM_RE = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
const BARE_RE = /^(\d+(?:\.\d*)?|\.\d+)$/;

/**
 * Parses a duration to milliseconds: Go syntax (`300ms`, `1.5h`, `1m30s`, `2h45m`, `250us`,
 * `0`), or a bare decimal number of seconds (`5`, `0.5`). Returns undefined for anything else
 * (negative durations included: no Netfence duration can be negative). The result is not
 * rounded; callers decide (see `toTimerMs`).
 */
export function parseDurationMs(text: string): number | undefined {
  const s = text.trim();
  if (s === '') return undefined;
  if (BARE_RE.test(s)) return Number(s) * 1000;
  let total = 0;
  TERM_RE.lastIndex = 0;
  let pos = 0;
  while (pos < s.length) {
    TERM_RE.lastIndex = pos;
    const m = TERM_RE.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = TERM_RE.lastIndex;
  }
  return total;
}

/**
 * Milliseconds as the daemon's timers use them: a whole number, rounded up so that a small
 * non-zero duration (`300us`) never becomes 0, which means "do not wait" for some keys.
 */
export function toTimerMs(ms: number): number {
  return ms <= 0 ? 0 : Math.ceil(ms - 1e-9);
}

/** The largest delay Node's timers take (2^31-1 ms, about 24.8 days); longer ones fire at once. */
export const NODE_TIMER_MAX_MS = 2 ** 31 - 1;
