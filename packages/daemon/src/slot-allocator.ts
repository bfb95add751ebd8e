// Slot numbers of the host-wide maps: an attachment is a slot in [1, maxSlots), slot 0 is never
// handed out (its config is all zero: the programs drop). Pure bookkeeping; the datapath
// (host-program-set.ts) finds the slots in use at start and clears a slot before freeing it.

import { DaemonError } from './daemon-error';

export class SlotAllocator {
  private readonly used = new Set<number>();
  /** Slots never handed out are taken first (`next` on), then freed ones oldest first: a freed slot is reused as late as possible. */
  private next = 1;
  private queue: number[] = [];
  private head = 0;
  private readonly queued = new Set<number>();

  /** `maxSlots` is the size of the host maps (maps.max_attachments + 1); `used` the slots found in use. */
  constructor(
    readonly maxSlots: number,
    used: Iterable<number> = [],
  ) {
    if (!Number.isInteger(maxSlots) || maxSlots < 2) throw new DaemonError('NETFENCE_ERR_INTERNAL', `maxSlots must be an integer >= 2, got ${maxSlots}`);
    for (const s of used) this.claim(s);
  }

  get inUse(): number {
    return this.used.size;
  }

  has(slot: number): boolean {
    return this.used.has(slot);
  }

  /** A free slot, now in use. NETFENCE_ERR_ATTACHMENTS_EXHAUSTED when every one is. */
  allocate(): number {
    while (this.next < this.maxSlots && (this.used.has(this.next) || this.queued.has(this.next))) this.next++;
    let slot: number | undefined;
    if (this.next < this.maxSlots) slot = this.next++;
    while (slot === undefined && this.head < this.queue.length) {
      const s = this.queue[this.head++]!;
      this.queued.delete(s);
      if (!this.used.has(s)) slot = s; // a claimed one is skipped
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head); // drop the consumed head now and then
      this.head = 0;
    }
    if (slot === undefined)
      throw new DaemonError('NETFENCE_ERR_ATTACHMENTS_EXHAUSTED', `all ${this.maxSlots - 1} attachment slots are in use (maps.max_attachments); detach one or raise it`);
    this.used.add(slot);
    return slot;
  }

  /** Marks a slot found in use (restart). */
  claim(slot: number): void {
    if (!Number.isInteger(slot) || slot < 1 || slot >= this.maxSlots) throw new DaemonError('NETFENCE_ERR_INTERNAL', `slot ${slot} is outside [1, ${this.maxSlots})`);
    this.used.add(slot);
  }

  free(slot: number): void {
    if (!this.used.delete(slot) || this.queued.has(slot)) return;
    this.queue.push(slot);
    this.queued.add(slot);
  }
}
