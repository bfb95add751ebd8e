import { parseCidr } from './cidr';
import { parseDomainPattern } from './domain-name';
import { PolicyError, inputText, quote } from './policy-error';
import type { RuleAction } from './types';

/** One parsed rule line. */
export type ParsedRule =
  | { kind: 'domain'; action: RuleAction; domain: string; includeSubdomains: boolean }
  | { kind: 'cidr'; action: RuleAction; cidr: string /* canonical */; ttlMs?: number };

const TTL_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const TTL_RE = /^([0-9]{1,12})(ms|s|m|h|d)$/;

/** Parse a duration like `300s`, `5m`, `1h`, `1d`, `250ms` into milliseconds (> 0). */
export function parseTtl(input: string): number {
  const m = typeof input === 'string' ? TTL_RE.exec(input) : null;
  const ms = m ? Number(m[1]) * TTL_UNITS[m[2]!]! : NaN;
  if (!m || !(ms > 0) || !Number.isSafeInteger(ms)) {
    throw new PolicyError(
      'NETFENCE_ERR_INVALID_TTL',
      `invalid TTL ${quote(input)}: expected a positive number with unit ms, s, m, h or d (e.g. 300s, 5m, 1h)`,
      { input: inputText(input) },
    );
  }
  return ms;
}

function looksLikeIp(s: string): boolean {
  return s.includes(':') || s.includes('/') || /^[0-9.]+$/.test(s);
}

/**
 * Parse one rule line: `ALLOW *.pypi.org`, `DENY ads.example.com`, `ALLOW 10.0.0.0/16`,
 * `ALLOW 10.0.0.0/16 ttl=300s`. Keywords are case-insensitive; a TTL is allowed on
 * CIDR rules only. Throws NETFENCE_ERR_INVALID_RULE (or the INVALID_DOMAIN /
 * INVALID_CIDR / INVALID_TTL error of the bad part) naming the line.
 */
export function parseRuleLine(line: string): ParsedRule {
  const bad = (why: string, cause?: unknown): PolicyError =>
    new PolicyError('NETFENCE_ERR_INVALID_RULE', `invalid rule line ${quote(line)}: ${why}`, {
      input: inputText(line),
      cause,
    });
  if (typeof line !== 'string') throw bad('not a string');
  const tokens = line.trim().split(/\s+/).filter((t) => t.length > 0);
  if (tokens.length === 0) throw bad('empty line');
  const kw = tokens[0]!.toUpperCase();
  if (kw !== 'ALLOW' && kw !== 'DENY') throw bad(`expected ALLOW or DENY, got ${quote(tokens[0])}`);
  const action: RuleAction = kw === 'ALLOW' ? 'allow' : 'deny';
  const target = tokens[1];
  if (target === undefined) throw bad('missing domain or CIDR');
  let ttlMs: number | undefined;
  for (const opt of tokens.slice(2)) {
    const eq = opt.indexOf('=');
    const key = eq === -1 ? opt : opt.slice(0, eq).toLowerCase();
    if (key !== 'ttl' || eq === -1) throw bad(`unknown option ${quote(opt)} (only ttl=<duration>)`);
    if (ttlMs !== undefined) throw bad('ttl given twice');
    ttlMs = parseTtl(opt.slice(eq + 1));
  }
  if (looksLikeIp(target)) {
    const cidr = parseCidr(target).text;
    return ttlMs === undefined ? { kind: 'cidr', action, cidr } : { kind: 'cidr', action, cidr, ttlMs };
  }
  if (ttlMs !== undefined) throw bad('a ttl is only allowed on CIDR rules');
  const p = parseDomainPattern(target);
  return { kind: 'domain', action, domain: p.domain, includeSubdomains: p.includeSubdomains };
}

/**
 * Parse a text of rule lines; blank lines and `#` comments are skipped. Errors
 * name the line number (in `input`: `line N: <text>`); the original error is the cause.
 */
export function parseRuleLines(text: string): ParsedRule[] {
  const out: ParsedRule[] = [];
  const lines = String(text).split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const hash = raw.indexOf('#');
    const l = (hash === -1 ? raw : raw.slice(0, hash)).trim();
    if (l.length === 0) continue;
    try {
      out.push(parseRuleLine(l));
    } catch (e) {
      const pe = PolicyError.from(e);
      throw new PolicyError(pe.code, `line ${i + 1}: ${pe.message.replace(/^NETFENCE_ERR_[A-Z_]+: /, '')}`, { input: `line ${i + 1}: ${l}`, cause: pe });
    }
  }
  return out;
}
