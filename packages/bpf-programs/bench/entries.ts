// The benchmark's rules: a small policy, a realistic 100,000-entry policy (what one attachment
// with a big allowlist holds) and the small policies of other attachments, encoded for each of
// the tries the benchmark fills: ours (one trie per attachment: key {prefixlen, addr}, value a
// RULE), the reference program's (same key, u32 value) and the host-wide alternative's
// (key {32 + prefixlen, slot big-endian, addr}, value a RULE).
import { encodeLpmKeyV4, encodeRule, LAYOUT } from '@netfence/bpf-programs';

/** One entry of an attachment's IPv4 rules trie. `addr` is the network address as a u32. */
export interface BenchRule {
  readonly addr: number;
  readonly len: number;
  readonly allow: boolean;
  readonly deny: boolean;
  /** Allow-only entries: the longest shorter deny prefix holding this one. */
  readonly shadowDenyLen?: number;
}

/** The address every benchmark packet goes to (the lab's server): allowed in every policy. */
export const SERVER = '10.200.1.1';
/** An address no policy allows (outside 10.0.0.0/8 and the small policy): a packet to it must drop. */
export const NOT_ALLOWED = '198.51.100.77';
export const BIG = 100_000;
export const OTHER_ENTRIES = 100;

const ip = (a: string): number => a.split('.').reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);
const mask = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/** The 10-entry policy (9 allows, 1 deny), also part of the big one. */
const SMALL: readonly [string, number, 'allow' | 'deny'][] = [
  [SERVER, 32, 'allow'],
  ['10.200.7.0', 24, 'allow'],
  ['203.0.113.0', 24, 'allow'],
  ['10.200.3.0', 24, 'allow'],
  ['10.200.4.4', 32, 'allow'],
  ['10.200.5.0', 24, 'allow'],
  ['10.200.6.0', 24, 'allow'],
  ['10.200.8.0', 22, 'allow'],
  ['10.200.12.0', 24, 'allow'],
  ['10.200.7.66', 32, 'deny'],
];

/** Deterministic PRNG (mulberry32): the same entries on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A set of entries, one per prefix; a prefix on both lists is one entry with both bits (deny wins). */
class RuleSet {
  readonly #byKey = new Map<string, { addr: number; len: number; allow: boolean; deny: boolean }>();
  add(addr: number, len: number, list: 'allow' | 'deny'): void {
    const a = (addr & mask(len)) >>> 0;
    const k = `${a}/${len}`;
    const e = this.#byKey.get(k) ?? { addr: a, len, allow: false, deny: false };
    e[list] = true;
    this.#byKey.set(k, e);
  }
  get size(): number {
    return this.#byKey.size;
  }
  /** The entries, with each allow-only entry's shadow deny (the longest shorter deny holding it). */
  done(): BenchRule[] {
    const denies = [...this.#byKey.values()].filter((e) => e.deny).sort((x, y) => y.len - x.len);
    return [...this.#byKey.values()].map((e) => {
      if (e.deny) return e;
      const d = denies.find((x) => x.len < e.len && ((e.addr & mask(x.len)) >>> 0) === x.addr);
      return d ? { ...e, shadowDenyLen: d.len } : e;
    });
  }
}

/** The 10-entry policy. */
export function smallPolicy(): BenchRule[] {
  const s = new RuleSet();
  for (const [a, len, list] of SMALL) s.add(ip(a), len, list);
  return s.done();
}

/**
 * A realistic big policy of `total` entries in one attachment's trie: the small policy, 20 deny
 * entries (/32s, /24s, two /16s) in 10.0.0.0/8 outside 10.200.0.0/16, and allows spread over
 * 10.0.0.0/8: 16 /16s, 200 /20s, 3,800 /24s, 1,000 /28s, the rest /32s. Some allows sit inside
 * a deny (shadowDenyLen set), some /32s inside allowed /24s, as an allowlist built from DNS
 * answers and CIDR rules looks.
 */
export function bigPolicy(total = BIG): BenchRule[] {
  const s = new RuleSet();
  for (const [a, len, list] of SMALL) s.add(ip(a), len, list);
  const r = prng(11);
  const in10 = (): number => ((10 << 24) | (r() & 0xffffff)) >>> 0;
  const outside200 = (): number => {
    for (;;) {
      const a = in10();
      if (a >>> 16 !== ((10 << 8) | 200)) return a;
    }
  };
  for (let i = 0; i < 12; i++) s.add(outside200(), 32, 'deny');
  for (let i = 0; i < 6; i++) s.add(outside200(), 24, 'deny');
  for (let i = 0; i < 2; i++) s.add(outside200(), 16, 'deny');
  for (const [len, n] of [[16, 16], [20, 200], [24, 3800], [28, 1000]] as const) {
    const goal = s.size + n;
    while (s.size < goal) s.add(in10(), len, 'allow');
  }
  while (s.size < total) s.add(in10(), 32, 'allow');
  return s.done();
}

/** A small policy of another attachment (`n` allows: /32s and a few /24s in 10.0.0.0/8). */
export function otherPolicy(seed: number, n = OTHER_ENTRIES): BenchRule[] {
  const s = new RuleSet();
  const r = prng(1000 + seed);
  while (s.size < n) s.add(((10 << 24) | (r() & 0xffffff)) >>> 0, s.size % 10 === 0 ? 24 : 32, 'allow');
  return s.done();
}

const bytesOf = (addr: number): Uint8Array => Uint8Array.of(addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255);

/** Keys and values of ours (one trie per attachment), packed for updateBatch. */
export function oursEncoded(rules: readonly BenchRule[]): { keys: Buffer; values: Buffer; count: number } {
  const K = LAYOUT.lpmKeyV4.size;
  const V = LAYOUT.rule.size;
  const keys = Buffer.alloc(rules.length * K);
  const values = Buffer.alloc(rules.length * V);
  rules.forEach((e, i) => {
    encodeLpmKeyV4(bytesOf(e.addr), e.len).copy(keys, i * K);
    encodeRule({ prefixLen: e.len, allow: e.allow, deny: e.deny, lastSeenNs: 0n, expiresS: 0, shadowDenyLen: e.shadowDenyLen }).copy(values, i * V);
  });
  return { keys, values, count: rules.length };
}

/** The reference program's entries: the same keys ({prefixlen, addr}, 8 bytes), value u32 1. */
export function referenceEncoded(rules: readonly BenchRule[]): { keys: Buffer; values: Buffer; count: number } {
  const { keys } = oursEncoded(rules);
  const values = Buffer.alloc(rules.length * 4);
  for (let i = 0; i < rules.length; i++) values.writeUInt32LE(1, i * 4);
  return { keys, values, count: rules.length };
}

/** Size of a host-wide trie key: {u32 prefixlen, u32 slot (big-endian), u8 addr[4]}. */
export const HW_KEY_SIZE = 12;

/** The host-wide trie's entries of one slot: prefixlen 32 (the slot) + the rule's, same values as ours. */
export function hostWideEncoded(slot: number, rules: readonly BenchRule[]): { keys: Buffer; values: Buffer; count: number } {
  const ours = oursEncoded(rules);
  const keys = Buffer.alloc(rules.length * HW_KEY_SIZE);
  rules.forEach((e, i) => {
    keys.writeUInt32LE(32 + e.len, i * HW_KEY_SIZE);
    keys.writeUInt32BE(slot, i * HW_KEY_SIZE + 4);
    ours.keys.copy(keys, i * HW_KEY_SIZE + 8, i * LAYOUT.lpmKeyV4.size + 4, (i + 1) * LAYOUT.lpmKeyV4.size);
  });
  return { keys, values: ours.values, count: rules.length };
}

/** Ethernet + IPv4 + TCP SYN to `dst` port 7000 (TC test runs take the frame; cgroup_skb runs strip the Ethernet header). */
export function synFrame(dst: string): Buffer {
  const f = Buffer.alloc(14 + 20 + 20);
  f.writeUInt16BE(0x0800, 12);
  const iph = f.subarray(14);
  iph[0] = 0x45;
  iph.writeUInt16BE(40, 2);
  iph[8] = 64;
  iph[9] = 6;
  Buffer.from([10, 200, 1, 2]).copy(iph, 12);
  Buffer.from(bytesOf(ip(dst))).copy(iph, 16);
  const tcp = f.subarray(34);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(7000, 2);
  tcp[12] = 0x50;
  tcp[13] = 0x02;
  return f;
}
