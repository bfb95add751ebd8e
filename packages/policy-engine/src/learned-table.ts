// The learned addresses of one attachment as a mutable index, for the DNS answer path.
//
// Why not learnAddresses on the frozen state: that copies the state's `learned` array for every
// answer (O(learned)); with 10,000 addresses learned it cost ~25 µs and 80 KB of garbage per
// answer, and the daemon's profile under dnsperf showed it (7% of CPU, GC pauses of 5-17 ms).
// Here an answer costs O(its addresses) (O(cap) when the per-name cap evicts), and the frozen
// list the state and the saves need is built only when asked for (at most once per change).

import { checkLearnInput, type LearnOptions } from './attachment-state';
import { PolicyError, inputText, quote } from './policy-error';
import type { LearnedAddress } from './types';

export interface LearnedTableOptions {
  /** At most this many addresses per name (default: no limit). */
  readonly maxAddressesPerName?: number;
}

/** What learning one answer would change; computed by plan(), applied by apply(). */
export interface LearnPlan {
  /** New or later-expiring entries, in answer order. */
  readonly upserts: readonly LearnedAddress[];
  /** Entries of the answer's name the per-name cap pushes out, oldest unused first. */
  readonly evictions: readonly LearnedAddress[];
  /** Addresses no name holds yet (the kernel needs them). */
  readonly added: readonly string[];
  /** Addresses no name holds once the plan is applied (the kernel may drop them). */
  readonly released: readonly string[];
  /** Addresses of the answer not learned because the answer alone has more than the cap. */
  readonly skipped: number;
  /** The earliest expiry among the upserts (Infinity when none). */
  readonly soonest: number;
  /** When the plan was made (ms). */
  readonly at: number;
}

export interface ExpiryPlan {
  readonly removed: readonly LearnedAddress[];
  /** Expired entries kept for recent traffic, with their new expiry. */
  readonly kept: readonly LearnedAddress[];
  /** Addresses no name holds any more. */
  readonly released: readonly string[];
  /** Expired entries beyond the plan's limit are left for another plan. */
  readonly more: boolean;
}

const keyOf = (l: LearnedAddress): string => `${l.address} ${l.name}`;

export class LearnedTable {
  /** name -> address -> entry */
  private readonly byName = new Map<string, Map<string, LearnedAddress>>();
  /** address -> name -> entry */
  private readonly byAddress = new Map<string, Map<string, LearnedAddress>>();
  /** key -> when an answer last carried it (ms); unknown for entries handed in without a history. */
  private readonly learnedAt = new Map<string, number>();
  /** Every entry, flat: lists iterate this instead of one small map per name. */
  private readonly entries = new Set<LearnedAddress>();
  /**
   * The entries again, as a binary min-heap by expiresAt that knows each entry's position, so
   * the next expiry and the expired entries are found without a pass over the table and an entry
   * replaced or dropped leaves it at once: the daemon asks for the next expiry after every learned
   * answer and sweeps in chunks, and both scanned every entry (O(learned) per answer and per chunk;
   * issue 16's profile showed the sweep's chunks back to back for up to 97 ms after a dnsperf
   * run). Hand-written: planExpiry walks it in order without popping, which no heap package here
   * exposes.
   */
  private readonly byExpiry = new MinHeap<LearnedAddress>((l) => l.expiresAt, { removable: true });
  private snapshot: readonly LearnedAddress[] | undefined;
  readonly maxPerName: number;

  /** `previous`: a table these entries come from (keeps when each was last learned, for the cap's order). */
  constructor(entries: readonly LearnedAddress[] = [], opts: LearnedTableOptions = {}, previous?: LearnedTable) {
    const cap = opts.maxAddressesPerName ?? Infinity;
    if (cap !== Infinity && (!Number.isInteger(cap) || cap < 1)) {
      throw new PolicyError('NETFENCE_ERR_INVALID_COMMAND', `maxAddressesPerName must be an integer >= 1: ${quote(cap)}`, { input: inputText(cap) });
    }
    this.maxPerName = cap;
    const seen = new Set<string>();
    for (const l of entries) {
      if (seen.has(keyOf(l))) continue;
      seen.add(keyOf(l));
      this.put(l, previous?.learnedAt.get(keyOf(l)));
    }
    // a list handed in whole is the table's list until the first change
    if (Object.isFrozen(entries) && seen.size === entries.length) this.snapshot = entries;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Whether any name holds this address (canonical host prefix text). */
  holds(address: string): boolean {
    return this.byAddress.has(address);
  }

  /** The name whose entry for this address expires last (any of them on a tie), or undefined. */
  nameOf(address: string): string | undefined {
    let best: LearnedAddress | undefined;
    for (const l of this.byAddress.get(address)?.values() ?? []) if (best === undefined || l.expiresAt >= best.expiresAt) best = l;
    return best?.name;
  }

  /** How many addresses a name holds. */
  countOf(name: string): number {
    return this.byName.get(name)?.size ?? 0;
  }

  /** Every entry, frozen; the same array until the table changes. */
  list(): readonly LearnedAddress[] {
    if (!this.snapshot) {
      const out: LearnedAddress[] = [];
      for (const l of this.entries) out.push(l);
      this.snapshot = Object.freeze(out);
    }
    return this.snapshot;
  }

  /**
   * What learning this answer changes, without changing anything (learnAddresses' validation
   * and semantics: one entry per (address, name), an expiry only ever extended). With the
   * per-name cap, the answer's own addresses stay (its first `cap` when it has more) and the
   * name's other entries go oldest unused first: by the later of the last traffic the kernel saw
   * (`lastSeenMs`, asked only when the cap is reached) and the last answer that carried it;
   * oldest expiry first on a tie.
   */
  plan(input: { name: string; addresses: readonly string[]; ttlSec: number }, nowMs: number, opts: LearnOptions & { readonly lastSeenMs?: (address: string) => number | undefined } = {}): LearnPlan {
    const { name, addresses: all, expiresAt } = checkLearnInput(input, nowMs, opts);
    const cap = this.maxPerName;
    const addresses = all.length > cap ? all.slice(0, cap) : all;
    const mine = this.byName.get(name);
    const upserts: LearnedAddress[] = [];
    const added: string[] = [];
    let fresh = 0;
    for (const address of addresses) {
      const held = mine?.get(address);
      if (held === undefined) fresh++;
      if (held !== undefined && held.expiresAt >= expiresAt) continue;
      upserts.push(Object.freeze({ address, name, expiresAt }));
      if (!this.byAddress.has(address)) added.push(address);
    }
    const over = (mine?.size ?? 0) + fresh - cap;
    let evictions: LearnedAddress[] = [];
    const released: string[] = [];
    if (over > 0 && mine) {
      const keep = new Set(addresses);
      const used = (l: LearnedAddress): number => Math.max(opts.lastSeenMs?.(l.address) ?? -Infinity, this.learnedAt.get(keyOf(l)) ?? -Infinity);
      evictions = [...mine.values()]
        .filter((l) => !keep.has(l.address))
        .map((l) => ({ l, used: used(l) }))
        .sort((a, b) => a.used - b.used || a.l.expiresAt - b.l.expiresAt)
        .slice(0, over)
        .map((x) => x.l);
      for (const l of evictions) if (this.byAddress.get(l.address)!.size === 1) released.push(l.address);
    }
    let soonest = Infinity;
    for (const u of upserts) soonest = Math.min(soonest, u.expiresAt);
    return { upserts, evictions, added, released, skipped: all.length - addresses.length, soonest, at: nowMs };
  }

  /** Applies a plan made on this table's current contents. */
  apply(p: LearnPlan): void {
    if (p.upserts.length === 0 && p.evictions.length === 0) return;
    for (const l of p.evictions) this.drop(l);
    for (const l of p.upserts) this.put(l, p.at);
    this.snapshot = undefined;
  }

  /**
   * Which entries expire at nowMs, without changing anything (expireState's rule): those whose
   * expiresAt <= nowMs go unless `lastSeenMs(address)` is within graceMs of now; such an entry
   * is kept with expiresAt = lastSeen + graceMs. One pass, no new state built. With `limit`,
   * at most that many expired entries are looked at (`more` says whether any were left).
   */
  planExpiry(nowMs: number, opts: { readonly lastSeenMs?: (address: string) => number | undefined; readonly graceMs?: number; readonly limit?: number } = {}): ExpiryPlan {
    const grace = opts.graceMs ?? 0;
    const limit = opts.limit ?? Infinity;
    const removed: LearnedAddress[] = [];
    const kept: LearnedAddress[] = [];
    let more = false;
    // The heap's items with expiresAt <= nowMs, earliest first, without changing it: a second,
    // small heap of indices whose children are pushed as each is taken (a subtree whose root
    // expires later holds nothing that expires sooner).
    const h = this.byExpiry.items;
    const frontier = new MinHeap<number>((i) => h[i]!.expiresAt);
    if (h.length > 0) frontier.push(0);
    while (frontier.size > 0) {
      const i = frontier.pop();
      const l = h[i]!;
      if (l.expiresAt > nowMs) continue;
      if (2 * i + 1 < h.length) frontier.push(2 * i + 1);
      if (2 * i + 2 < h.length) frontier.push(2 * i + 2);
      if (removed.length + kept.length >= limit) {
        more = true;
        break;
      }
      const seen = opts.lastSeenMs?.(l.address);
      if (seen !== undefined && Number.isFinite(seen) && seen + grace > nowMs) kept.push(Object.freeze({ ...l, expiresAt: seen + grace }));
      else removed.push(l);
    }
    const gone = new Map<string, number>();
    for (const l of removed) gone.set(l.address, (gone.get(l.address) ?? 0) + 1);
    const released: string[] = [];
    for (const [address, n] of gone) if (this.byAddress.get(address)!.size === n) released.push(address);
    return { removed, kept, released, more };
  }

  /** Applies a plan made by planExpiry on this table's current contents. */
  applyExpiry(p: ExpiryPlan): void {
    if (p.removed.length === 0 && p.kept.length === 0) return;
    for (const l of p.kept) this.put(l, this.learnedAt.get(keyOf(l)));
    for (const l of p.removed) this.drop(l);
    this.snapshot = undefined;
  }

  /** The earliest expiresAt, or undefined when empty. O(1). */
  nextExpiry(): number | undefined {
    return this.byExpiry.items[0]?.expiresAt;
  }

  private put(l: LearnedAddress, learnedAt: number | undefined): void {
    if (learnedAt === undefined) this.learnedAt.delete(keyOf(l));
    else this.learnedAt.set(keyOf(l), learnedAt);
    let n = this.byName.get(l.name);
    if (!n) this.byName.set(l.name, (n = new Map()));
    const old = n.get(l.address);
    if (old) {
      this.entries.delete(old);
      this.byExpiry.remove(old);
    }
    this.entries.add(l);
    this.byExpiry.push(l);
    n.set(l.address, l);
    let a = this.byAddress.get(l.address);
    if (!a) this.byAddress.set(l.address, (a = new Map()));
    a.set(l.name, l);
  }

  private drop(l: LearnedAddress): void {
    const n = this.byName.get(l.name);
    const held = n?.get(l.address);
    if (!n || !held) return;
    n.delete(l.address);
    this.entries.delete(held);
    this.byExpiry.remove(held);
    this.learnedAt.delete(keyOf(l));
    if (n.size === 0) this.byName.delete(l.name);
    const a = this.byAddress.get(l.address)!;
    a.delete(l.name);
    if (a.size === 0) this.byAddress.delete(l.address);
  }
}

/**
 * A binary min-heap by `keyOf` (`items[0]` the least), which can tell where each item sits
 * (`at`, when asked for: removal then takes O(log n)). The learned entries by expiresAt, and
 * planExpiry's frontier of indices into them.
 */
class MinHeap<T> {
  readonly items: T[] = [];
  private readonly at: Map<T, number> | undefined;

  constructor(private readonly keyOf: (t: T) => number, opts: { removable?: boolean } = {}) {
    this.at = opts.removable ? new Map() : undefined;
  }

  get size(): number {
    return this.items.length;
  }

  push(t: T): void {
    this.items.push(t);
    this.up(this.items.length - 1, t);
  }

  /** Takes the least item out (the heap must not be empty). */
  pop(): T {
    const top = this.items[0]!;
    this.removeAt(0, top);
    return top;
  }

  /** Takes `t` out, if it is in (a removable heap). */
  remove(t: T): void {
    const i = this.at?.get(t);
    if (i !== undefined) this.removeAt(i, t);
  }

  private removeAt(i: number, t: T): void {
    this.at?.delete(t);
    const last = this.items.pop()!;
    if (i === this.items.length) return; // it was the last
    this.down(this.up(i, last), last);
  }

  /** Moves `t`, to be placed at `i`, up to where it belongs; returns where it went. */
  private up(i: number, t: T): number {
    const k = this.keyOf(t);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.keyOf(this.items[p]!) <= k) break;
      this.place(this.items[p]!, i);
      i = p;
    }
    this.place(t, i);
    return i;
  }

  private down(i: number, t: T): void {
    const h = this.items;
    const k = this.keyOf(t);
    for (;;) {
      const a = 2 * i + 1;
      if (a >= h.length) break;
      const c = a + 1 < h.length && this.keyOf(h[a + 1]!) < this.keyOf(h[a]!) ? a + 1 : a;
      if (this.keyOf(h[c]!) >= k) break;
      this.place(h[c]!, i);
      i = c;
    }
    this.place(t, i);
  }

  private place(t: T, i: number): void {
    this.items[i] = t;
    this.at?.set(t, i);
  }
}
