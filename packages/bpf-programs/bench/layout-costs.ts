// The user-space costs that differ between the two map layouts: reading one attachment's
// entries back (the daemon does it on restart to reconcile), and dropping an attachment.
import { BpfError, openMapById, type BpfMap } from '@netfence/bpf-loader';
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
  readonly freedMs: number;
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

const sleepMs = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/**
 * Map of maps: drop an attachment's trie (`trie` must be referenced only by `outer[slot]` and
 * this fd): delete the slot and close the fd (what the daemon waits for), then how long until
 * the kernel has freed the trie (its id gone; done by a kernel worker after an RCU grace
 * period, nobody waits for it). Polled every 1 ms, up to 5 s.
 */
export function dropOwnTrie(outer: BpfMap, slot: Buffer, trie: BpfMap): OwnTrieDrop {
  const id = trie.info().id;
  const t0 = process.hrtime.bigint();
  if (!outer.delete(slot)) throw new Error(`drop: slot ${slot.readUInt32LE(0)} of ${outer.name} was empty`);
  trie.close();
  const syscallsUs = msSince(t0) * 1e3;
  for (;;) {
    try {
      openMapById(id).close();
    } catch (e) {
      if (e instanceof BpfError && e.code === 'BPF_ERR_NOT_FOUND') return { syscallsUs, freedMs: msSince(t0) };
      throw e;
    }
    if (msSince(t0) > 5000) return { syscallsUs, freedMs: NaN };
    sleepMs(1);
  }
}

/** Host-wide trie: drop an attachment = delete its keys one by one (the keys known, e.g. from the daemon's memory). */
export function dropHostWide(hw: BpfMap, keys: Buffer, count: number): HostWideDrop {
  const t0 = process.hrtime.bigint();
  let deleted = 0;
  for (let i = 0; i < count; i++) if (hw.delete(keys.subarray(i * HW_KEY_SIZE, (i + 1) * HW_KEY_SIZE))) deleted++;
  return { deleted, ms: msSince(t0) };
}
