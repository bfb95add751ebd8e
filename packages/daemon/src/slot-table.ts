// Which slots of the host maps are in use, and by which attachment directory. Found at start
// from the kernel: a slot whose trie an attachment directory pins is in use; a slot with state
// that nobody uses (a directory removed by hand, a crash half way through a removal) is cleared.
// A device or cgroup binding left naming a cleared slot is harmless: no program of ours runs
// there (its links are gone with its directory), and binding a target writes it first.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openPinnedMap } from '@netfence/bpf-loader';
import { RULE_TRIES } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import type { HostMaps } from './host-program-set';
import { deviceSlot, type Device, type DeviceDirection } from './device-slots';
import { TRIE_PINS, type Hook } from './pin-layout';
import { SlotAllocator } from './slot-allocator';
import { clearSlot, fillSlot, type RuleTries, type SlotSnapshot } from './slot-state';

/**
 * What an attachment binds: a device's hook (`direction` 'ingress' or 'egress': its TCX link;
 * 'xdp': its XDP link, on the device's receive path) or a cgroup.
 */
export type Target = { readonly kind: 'tc'; readonly ifindex: number; readonly direction: DeviceDirection } | { readonly kind: 'cgroup'; readonly cgroupPath: string; readonly cgroupId: bigint };

/** Where the target's filter runs. */
export function hookOf(t: Target): Hook {
  return t.kind === 'cgroup' ? 'cgroup' : t.direction === 'xdp' ? 'xdp' : 'tc';
}

/** The device bindings a target has (a TC target's device and direction). */
export function devicesOf(t: Target): Device[] {
  return t.kind === 'tc' ? [{ ifindex: t.ifindex, direction: t.direction }] : [];
}

/** The id of the IPv4 trie pinned in `dir`, undefined without one. */
function pinnedTrieId(dir: string): number | undefined {
  const p = join(dir, TRIE_PINS[4]);
  if (!existsSync(p)) return undefined;
  const m = openPinnedMap(p, { type: RULE_TRIES.v4.type });
  try {
    return m.info().id;
  } finally {
    m.close();
  }
}

export class SlotTable {
  /** Slot -> id of its IPv4 trie, and back. */
  private readonly trieOf = new Map<number, number>();
  private readonly slotOfTrie = new Map<number, number>();

  private constructor(
    private readonly host: HostMaps,
    private readonly alloc: SlotAllocator,
  ) {}

  /**
   * The slots in use after a start: those whose IPv4 trie one of `dirs` pins. Every other slot
   * with state is cleared. (A cgroup's storage is no witness: the kernel keeps it, with whatever
   * slot it named, after the cgroup's links are gone.)
   */
  static recover(host: HostMaps, slots: number, dirs: readonly string[], logger: Logger): SlotTable {
    const trieSlot = new Map<number, number>(); // trie id -> slot
    for (const [slot, id] of host.rules[4].entries()) trieSlot.set(id, slot);
    const used = new Set<number>();
    for (const dir of dirs) {
      const id = pinnedTrieId(dir);
      const slot = id === undefined ? undefined : trieSlot.get(id);
      if (slot !== undefined) used.add(slot);
    }
    const table = new SlotTable(host, new SlotAllocator(slots, used));
    for (const [id, slot] of trieSlot) if (used.has(slot)) table.remember(slot, id);
    const stale = new Set<number>([...trieSlot.values()].filter((s) => !used.has(s)));
    for (let s = 1; s < slots; s++) if (!used.has(s) && host.config.get(s).active) stale.add(s);
    for (const s of stale) clearSlot(host, s);
    if (stale.size) logger.info({ slots: [...stale].slice(0, 20), count: stale.size }, 'cleared host map slots no attachment uses');
    return table;
  }

  get inUse(): number {
    return this.alloc.inUse;
  }

  /** A free slot (NETFENCE_ERR_ATTACHMENTS_EXHAUSTED when none). */
  allocate(): number {
    return this.alloc.allocate();
  }

  /** Fills a slot from a snapshot (slot-state.ts fillSlot) and remembers its trie. */
  fill(slot: number, snap: SlotSnapshot, tries: RuleTries): void {
    fillSlot(this.host, slot, snap, tries);
    this.remember(slot, tries.maps[4].info().id);
  }

  private remember(slot: number, trieId: number): void {
    this.trieOf.set(slot, trieId);
    this.slotOfTrie.set(trieId, slot);
  }

  /** Clears the slot (inactive first: whatever still judges by it drops), unbinds `devices` still naming it, and frees it. */
  release(slot: number, devices: readonly Device[] = []): void {
    clearSlot(this.host, slot, devices);
    const trie = this.trieOf.get(slot);
    if (trie !== undefined) this.slotOfTrie.delete(trie);
    this.trieOf.delete(slot);
    this.alloc.free(slot);
  }

  /** The slot whose IPv4 trie `dir` pins (undefined: none, or a trie in no slot). */
  slotOfDir(dir: string): number | undefined {
    const id = pinnedTrieId(dir);
    return id === undefined ? undefined : this.slotOfTrie.get(id);
  }

  /** The slot the target is bound to now (what its programs judge by); undefined when none. */
  boundSlot(t: Target): number | undefined {
    if (t.kind === 'tc') return deviceSlot(this.host, t);
    const s = this.host.cgSlot.get(t.cgroupId);
    return s === undefined || s === 0 ? undefined : s;
  }
}
