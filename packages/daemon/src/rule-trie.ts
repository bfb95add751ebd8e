// What one attachment's rules tries hold (one LPM trie per family with the allow AND the deny
// list), as a pure model: list operations in, the entry writes that bring the kernel tries
// there out. The datapath (bpf-attachment.ts) writes them; nothing here touches the kernel.
//
// The programs do one longest-prefix look-up and read the verdict from the entry
// (docs/DESIGN.md, "Datapath rules"): on the deny list -> deny (deny wins a tie: an equal
// prefix on both lists is one entry with both bits), allow only -> allow, unless its deadline
// lapsed: then the longest SHORTER deny prefix holding it decides (`shadowDenyLen`), or, with
// none, the entry counts as absent. That is exactly the old two-list rule ("longest prefix
// across both lists wins, deny wins a tie; a lapsed allow entry counts as absent"), which
// rule-trie.test.ts checks against a copy of the old decision.

import { parseCidr, type Cidr } from '@netfence/policy-engine';
import { DaemonError } from './daemon-error';

/** One entry of a rules trie, as the kernel holds it (less last_seen_ns, which the programs own). */
export interface RuleEntry {
  readonly cidr: Cidr;
  readonly allow: boolean;
  readonly deny: boolean;
  /** Allow deadline, CLOCK_MONOTONIC seconds; 0 = none. Kept while the prefix is on the allow list. */
  readonly expiresS: number;
  /**
   * For an entry on the allow list: the longest deny prefix strictly shorter than this one that
   * holds it (what decides once the deadline lapsed); undefined = none.
   */
  readonly shadowDenyLen: number | undefined;
}

/** One write to a trie: the entry at `cidr` becomes `entry` (undefined: deleted); `prev` is what it was. */
export interface RuleWrite {
  readonly cidr: Cidr;
  readonly entry: RuleEntry | undefined;
  readonly prev: RuleEntry | undefined;
}

export interface RuleOp {
  readonly op: 'add' | 'delete';
  readonly list: 'allow' | 'deny';
  readonly cidr: string;
  /** Deadline of an added allow entry (CLOCK_MONOTONIC seconds, 0 none). */
  readonly expiresS?: number;
}

/** Per-attachment limits, each per family (maps.allow_entries, maps.deny_entries). */
export interface RuleLimits {
  readonly allow: number;
  readonly deny: number;
}

/** The deny prefixes of one family, indexed for "the longest deny prefix holding X shorter than n". */
class FamilyIndex {
  /** Canonical text -> entry, every entry of this family. */
  readonly entries = new Map<string, RuleEntry>();
  allowCount = 0;
  denyCount = 0;
  /** Deny prefix lengths present (with how many deny entries have each), and their masked keys. */
  private readonly denyLens = new Map<number, number>();
  private lensDesc: number[] = [];
  private readonly denyKeys = new Set<string>();

  put(text: string, prev: RuleEntry | undefined, next: RuleEntry | undefined): void {
    if (prev?.allow) this.allowCount--;
    if (next?.allow) this.allowCount++;
    if (prev?.deny && !next?.deny) this.dropDeny(prev.cidr);
    if (next?.deny && !prev?.deny) this.addDeny(next.cidr);
    if (next) this.entries.set(text, next);
    else this.entries.delete(text);
  }

  private addDeny(c: Cidr): void {
    this.denyCount++;
    this.denyKeys.add(maskedKey(c, c.prefixLen));
    const n = this.denyLens.get(c.prefixLen) ?? 0;
    this.denyLens.set(c.prefixLen, n + 1);
    if (n === 0) this.lensDesc = [...this.denyLens.keys()].sort((a, b) => b - a);
  }

  private dropDeny(c: Cidr): void {
    this.denyCount--;
    this.denyKeys.delete(maskedKey(c, c.prefixLen));
    const n = this.denyLens.get(c.prefixLen)! - 1;
    if (n > 0) this.denyLens.set(c.prefixLen, n);
    else {
      this.denyLens.delete(c.prefixLen);
      this.lensDesc = this.lensDesc.filter((l) => l !== c.prefixLen);
    }
  }

  /** The longest deny prefix strictly shorter than `c` that holds it. Costs one set probe per deny length present. */
  shadowOf(c: Cidr): number | undefined {
    for (const l of this.lensDesc) if (l < c.prefixLen && this.denyKeys.has(maskedKey(c, l))) return l;
    return undefined;
  }
}

/** `c`'s address masked to `len` bits, with the length: the identity of the prefix c/len. */
function maskedKey(c: Cidr, len: number): string {
  const b = c.bytes;
  let out = `${len}`;
  for (let w = 0; w < b.length; w += 4) {
    const bits = Math.min(32, Math.max(0, len - w * 8));
    const word = ((b[w]! << 24) | (b[w + 1]! << 16) | (b[w + 2]! << 8) | b[w + 3]!) >>> 0;
    const mask = bits === 0 ? 0 : bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    out += `:${(word & mask) >>> 0}`;
  }
  return out;
}

/** Does `outer` hold `inner` and is it strictly shorter? */
function holds(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.prefixLen < inner.prefixLen && maskedKey(inner, outer.prefixLen) === maskedKey(outer, outer.prefixLen);
}

/** Changed deny prefixes of a batch over which shadows are checked one by one; beyond, every allow entry of the family is. */
const DIRTY_SCAN_MAX = 32;

export class RuleTrie {
  private readonly fam: Record<4 | 6, FamilyIndex> = { 4: new FamilyIndex(), 6: new FamilyIndex() };

  constructor(private readonly limits: RuleLimits) {}

  /**
   * The model of tries read back from the kernel (restart): the entries as they are, shadows
   * included. `repairShadows()` then gives the writes for any shadow a crash left stale.
   */
  static fromEntries(entries: Iterable<RuleEntry>, limits: RuleLimits): RuleTrie {
    const t = new RuleTrie(limits);
    for (const e of entries) {
      if (!e.allow && !e.deny) continue;
      t.put(e.cidr, e);
    }
    return t;
  }

  get(cidr: string): RuleEntry | undefined {
    const c = parseCidr(cidr);
    return this.fam[c.family].entries.get(c.text);
  }

  /** Every entry (both families). */
  *entries(): IterableIterator<RuleEntry> {
    yield* this.fam[4].entries.values();
    yield* this.fam[6].entries.values();
  }

  /** The allow and deny lists, as canonical prefixes (what readView reports). */
  lists(): { allow: Set<string>; deny: Set<string> } {
    const allow = new Set<string>();
    const deny = new Set<string>();
    for (const e of this.entries()) {
      if (e.allow) allow.add(e.cidr.text);
      if (e.deny) deny.add(e.cidr.text);
    }
    return { allow, deny };
  }

  count(list: 'allow' | 'deny', family: 4 | 6): number {
    return list === 'allow' ? this.fam[family].allowCount : this.fam[family].denyCount;
  }

  private put(cidr: Cidr, next: RuleEntry | undefined): RuleEntry | undefined {
    const f = this.fam[cidr.family];
    const prev = f.entries.get(cidr.text);
    f.put(cidr.text, prev, next);
    return prev;
  }

  /** Writes `next` at its prefix into the model and records the write. */
  private write(out: RuleWrite[], cidr: Cidr, next: RuleEntry | undefined): void {
    const prev = this.put(cidr, next);
    out.push({ cidr, entry: next, prev });
  }

  /**
   * Applies list operations to the model and returns the trie writes, in order: each op's own
   * entry, then (when deny prefixes changed) the allow entries whose shadow changed. Throws
   * NETFENCE_ERR_MAP_FULL over a limit, leaving the model as it was.
   */
  plan(ops: readonly RuleOp[]): RuleWrite[] {
    const out: RuleWrite[] = [];
    const dirty: Cidr[] = [];
    try {
      for (const o of ops) this.planOne(o, out, dirty);
      if (dirty.length) this.reshadow(dirty, out);
    } catch (e) {
      this.revert(out);
      throw e;
    }
    return out;
  }

  private planOne(o: RuleOp, out: RuleWrite[], dirty: Cidr[]): void {
    const c = parseCidr(o.cidr);
    const f = this.fam[c.family];
    const cur = f.entries.get(c.text);
    const onList = o.list === 'allow' ? !!cur?.allow : !!cur?.deny;
    if ((o.op === 'add') === onList) return; // already so
    if (o.op === 'add') {
      const n = o.list === 'allow' ? f.allowCount : f.denyCount;
      const limit = o.list === 'allow' ? this.limits.allow : this.limits.deny;
      if (n >= limit)
        throw new DaemonError('NETFENCE_ERR_MAP_FULL', `the ${o.list} list of IPv${c.family} holds its ${limit} entries, ${c.text} does not fit (raise maps.${o.list}_entries)`);
    }
    const allow = o.list === 'allow' ? o.op === 'add' : !!cur?.allow;
    const deny = o.list === 'deny' ? o.op === 'add' : !!cur?.deny;
    if (!allow && !deny) this.write(out, c, undefined);
    else {
      const expiresS = allow ? (o.list === 'allow' && o.op === 'add' ? (o.expiresS ?? 0) : cur!.expiresS) : 0;
      this.write(out, c, { cidr: c, allow, deny, expiresS, shadowDenyLen: allow ? f.shadowOf(c) : undefined });
    }
    if (o.list === 'deny') dirty.push(c);
  }

  /** Recomputes the shadow of the allow entries under changed deny prefixes (one pass per family). */
  private reshadow(dirty: readonly Cidr[], out: RuleWrite[]): void {
    for (const family of [4, 6] as const) {
      const changed = dirty.filter((d) => d.family === family);
      if (changed.length === 0) continue;
      const f = this.fam[family];
      const all = changed.length > DIRTY_SCAN_MAX;
      for (const e of [...f.entries.values()]) {
        if (!e.allow || (!all && !changed.some((d) => holds(d, e.cidr)))) continue;
        const s = f.shadowOf(e.cidr);
        if (s !== e.shadowDenyLen) this.write(out, e.cidr, { ...e, shadowDenyLen: s });
      }
    }
  }

  /** Sets the deadline of an allow entry; no write when it is not on the allow list or unchanged. */
  setExpiry(cidr: string, expiresS: number): RuleWrite[] {
    const c = parseCidr(cidr);
    const cur = this.fam[c.family].entries.get(c.text);
    if (!cur?.allow || cur.expiresS === expiresS) return [];
    const out: RuleWrite[] = [];
    this.write(out, c, { ...cur, expiresS });
    return out;
  }

  /** The writes that correct shadows a crash left stale (after fromEntries). */
  repairShadows(): RuleWrite[] {
    const out: RuleWrite[] = [];
    for (const family of [4, 6] as const) {
      const f = this.fam[family];
      for (const e of [...f.entries.values()]) {
        const s = e.allow ? f.shadowOf(e.cidr) : undefined;
        if (e.allow && s !== e.shadowDenyLen) this.write(out, e.cidr, { ...e, shadowDenyLen: s });
      }
    }
    return out;
  }

  /** Undoes writes in the model (newest first), e.g. after the kernel refused one of them. */
  revert(writes: readonly RuleWrite[]): void {
    for (let i = writes.length - 1; i >= 0; i--) this.put(writes[i]!.cidr, writes[i]!.prev);
  }
}
