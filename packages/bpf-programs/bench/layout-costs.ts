// The user-space costs that differ between the two map layouts: reading one attachment's
// entries back (the daemon does it on restart to reconcile), and dropping an attachment.
import type { BpfMap } from '@netfence/bpf-loader';
import { HW_KEY_SIZE } from './entries';

const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

export interface ReadBack {
  readonly entries: number;
  readonly ms: number;
  /** Host-wide: keys walked to find them. */
  readonly walked?: number;
}
export interface OwnTrieDrop {
  readonly syscallsUs: number;
}
export interface HostWideDrop {
  readonly deleted: number;
  readonly ms: number;
}

/** Map of maps: read every entry of the attachment's own trie (next key, look-up). */
export function readBackOwnTrie(trie: BpfMap): ReadBack {
  const t0 = process.hrtime.bigint();
  let entries = 0;
  for (const k of trie.keys()) if (trie.lookup(k) !== undefined) entries++;
  return { entries, ms: msSince(t0) };
}

/**
 * Host-wide trie: the kernel has no "keys of this slot" walk, so read back = walk every key of
 * every attachment and look up those of the slot. (An LPM trie's next-key order happens to keep
 * one slot's keys together, but it starts from the first key of the whole trie, and that order
 * is not an interface the kernel promises.)
 */
export function readBackHostWide(hw: BpfMap, slot: number): ReadBack {
  const t0 = process.hrtime.bigint();
  let entries = 0;
  let walked = 0;
  for (const k of hw.keys()) {
    walked++;
    if (k.readUInt32BE(4) === slot && hw.lookup(k) !== undefined) entries++;
  }
  return { entries, walked, ms: msSince(t0) };
}

/**
 * Map of maps: drop an attachment's trie: delete its slot and close the fd (the daemon also
 * unpins it). `trie` must be referenced by `outer[slot]` and this fd only. What this times is
 * what the daemon waits for; the kernel frees the trie's nodes afterwards in a worker (after an
 * RCU grace period), which nothing waits for.
 */
export function dropOwnTrie(outer: BpfMap, slot: Buffer, trie: BpfMap): OwnTrieDrop {
  const t0 = process.hrtime.bigint();
  if (!outer.delete(slot)) throw new Error(`drop: slot ${slot.readUInt32LE(0)} of ${outer.name} was empty`);
  trie.close();
  return { syscallsUs: msSince(t0) * 1e3 };
}

/** Host-wide trie: drop an attachment = delete its keys one by one (the keys known, e.g. from the daemon's memory). */
export function dropHostWide(hw: BpfMap, keys: Buffer, count: number): HostWideDrop {
  const t0 = process.hrtime.bigint();
  let deleted = 0;
  for (let i = 0; i < count; i++) if (hw.delete(keys.subarray(i * HW_KEY_SIZE, (i + 1) * HW_KEY_SIZE))) deleted++;
  return { deleted, ms: msSince(t0) };
}
