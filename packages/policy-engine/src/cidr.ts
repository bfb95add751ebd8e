import { PolicyError, inputText, quote } from './policy-error';
import type { Cidr } from './types';

function invalid(input: unknown, why: string): PolicyError {
  return new PolicyError('NETFENCE_ERR_INVALID_CIDR', `invalid CIDR ${quote(input)}: ${why}`, {
    input: inputText(input),
  });
}

const DEC_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PREFIX_LEN = /^(0|[1-9][0-9]{0,2})$/;

function parseV4(s: string, input: string): Uint8Array | undefined {
  // fast path: one pass, no allocation but the result
  const out = new Uint8Array(4);
  let part = 0;
  let v = 0;
  let digits = 0;
  let ok = true;
  for (let i = 0; i <= s.length; i++) {
    const c = i === s.length ? 46 : s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 3 || v > 255) {
        ok = false;
        break;
      }
      out[part++] = v;
      v = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && v === 0) {
        ok = false; // leading zero
        break;
      }
      v = v * 10 + (c - 48);
      if (++digits > 3) {
        ok = false;
        break;
      }
    } else {
      ok = false;
      break;
    }
  }
  if (ok && part === 4) return out;
  // slow path: explain
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  for (const p of parts) {
    if (!DEC_OCTET.test(p)) throw invalid(input, `bad IPv4 octet ${quote(p)}`);
    if (Number(p) > 255) throw invalid(input, `IPv4 octet ${p} is over 255`);
  }
  return undefined;
}

function parseV6(s: string, input: string): Uint8Array {
  if (s.includes('%')) throw invalid(input, 'zone identifiers are not allowed');
  const groups: number[] = [];
  let v4tail: Uint8Array | undefined;
  let body = s;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    const tail = s.slice(lastColon + 1);
    v4tail = parseV4(tail, input);
    if (!v4tail) throw invalid(input, `bad embedded IPv4 address ${quote(tail)}`);
    body = s.slice(0, lastColon + 1);
    // "::1.2.3.4" -> body "::" ; "1::1.2.3.4" -> "1::" ; "1:2:3:4:5:6:1.2.3.4" -> "1:2:3:4:5:6:"
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const maxGroups = v4tail ? 6 : 8;
  const dbl = body.indexOf('::');
  const parseGroups = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').map((g) => {
      if (!HEX_GROUP.test(g)) throw invalid(input, g === '' ? 'empty group' : `bad IPv6 group ${quote(g)}`);
      return parseInt(g, 16);
    });
  };
  if (dbl === -1) {
    const g = parseGroups(body);
    if (g.length !== maxGroups) throw invalid(input, `expected ${maxGroups} groups, got ${g.length}`);
    groups.push(...g);
  } else {
    if (body.indexOf('::', dbl + 1) !== -1) throw invalid(input, 'more than one "::"');
    const head = parseGroups(body.slice(0, dbl));
    const tail = parseGroups(body.slice(dbl + 2));
    if (head.length + tail.length > maxGroups - 1) throw invalid(input, 'too many groups');
    groups.push(...head, ...new Array<number>(maxGroups - head.length - tail.length).fill(0), ...tail);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < groups.length; i++) {
    out[i * 2] = groups[i]! >> 8;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  if (v4tail) out.set(v4tail, 12);
  return out;
}

function maskBytes(bytes: Uint8Array, prefixLen: number): void {
  for (let i = 0; i < bytes.length; i++) {
    const bitsHere = prefixLen - i * 8;
    if (bitsHere >= 8) continue;
    bytes[i] = bitsHere <= 0 ? 0 : bytes[i]! & (0xff << (8 - bitsHere)) & 0xff;
  }
}

/** Canonical text of an address (no prefix). IPv6 per RFC 5952. */
export function formatAddress(family: 4 | 6, bytes: Uint8Array): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (bestStart === -1) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** Build a Cidr from bytes (copied and masked). */
export function makeCidr(family: 4 | 6, bytes: Uint8Array, prefixLen: number): Cidr {
  return ownCidr(family, Uint8Array.from(bytes), prefixLen);
}

/** Like makeCidr, but takes ownership of `b` (masks it in place). */
function ownCidr(family: 4 | 6, b: Uint8Array, prefixLen: number): Cidr {
  maskBytes(b, prefixLen);
  return Object.freeze({ family, prefixLen, bytes: b, text: `${formatAddress(family, b)}/${prefixLen}` });
}

function isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Parse an IPv4 or IPv6 prefix. A bare address is a /32 or /128; host bits are
 * masked; an IPv4-mapped IPv6 prefix `::ffff:a.b.c.d/(96+n)` becomes IPv4 `/n`.
 * Throws NETFENCE_ERR_INVALID_CIDR naming the input.
 */
export function parseCidr(input: string): Cidr {
  if (typeof input !== 'string') throw invalid(input, 'not a string');
  if (input.length === 0) throw invalid(input, 'empty');
  if (input.length > 100) throw invalid(input, 'too long');
  const slash = input.indexOf('/');
  const addr = slash === -1 ? input : input.slice(0, slash);
  let family: 4 | 6;
  let bytes: Uint8Array;
  if (addr.includes(':')) {
    family = 6;
    bytes = parseV6(addr, input);
  } else {
    family = 4;
    const b = parseV4(addr, input);
    if (!b) throw invalid(input, 'not an IPv4 or IPv6 address');
    bytes = b;
  }
  const max = family === 4 ? 32 : 128;
  let prefixLen = max;
  if (slash !== -1) {
    const p = input.slice(slash + 1);
    if (!PREFIX_LEN.test(p)) throw invalid(input, `bad prefix length ${quote(p)}`);
    prefixLen = Number(p);
    if (prefixLen > max) throw invalid(input, `prefix length ${prefixLen} is over ${max}`);
  }
  if (family === 6 && prefixLen >= 96 && isMapped(bytes)) {
    return makeCidr(4, bytes.subarray(12, 16), prefixLen - 96);
  }
  return ownCidr(family, bytes, prefixLen);
}

/** Parse a single host address (full-length prefix; an explicit /32 or /128 is accepted). */
export function parseAddress(input: string): Cidr {
  const c = parseCidr(input);
  if (c.prefixLen !== (c.family === 4 ? 32 : 128)) {
    throw new PolicyError('NETFENCE_ERR_INVALID_CIDR', `invalid address ${quote(input)}: a prefix, not a single host`, {
      input: inputText(input),
    });
  }
  return c;
}

/** Canonical text of a prefix (parses it). */
export function canonicalCidr(input: string): string {
  return parseCidr(input).text;
}

/** True when prefix `outer` contains prefix `inner` (same family, outer not longer, bits agree). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefixLen > inner.prefixLen) return false;
  const full = outer.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (outer.bytes[i] !== inner.bytes[i]) return false;
  const rest = outer.prefixLen & 7;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return (outer.bytes[full]! & m) === (inner.bytes[full]! & m);
}

/** Total order on prefixes: family, then address bytes, then prefix length. */
export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) {
    const d = a.bytes[i]! - b.bytes[i]!;
    if (d !== 0) return d;
  }
  return a.prefixLen - b.prefixLen;
}
