// The drop-event ring buffer every attachment shares (events carry the attachment's number),
// pinned at <bpffs_root>/events: one consumer and one mapping instead of one per attachment.

import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRingBufferConsumer, loadCollection, openPinnedMap, type BpfMap, type RingBufferConsumer } from '@netfence/bpf-loader';
import { POLICY_MAPS, decodeEvent, objectPath } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import type { DatapathEvent } from './datapath';

const EVENTS = POLICY_MAPS.events.name;

export class SharedEventRing {
  private ring: { map: BpfMap; consumer: RingBufferConsumer } | undefined;

  constructor(
    private readonly root: string,
    /** Map sizes by name; the ring's entry is corrected to a pinned ring's size. */
    private readonly sizes: Record<string, number>,
    private readonly onEvent: (ev: DatapathEvent) => void,
    private readonly logger: Logger,
  ) {}

  /** Opens (or creates and pins) the ring and starts reading it; idempotent. */
  open(): void {
    if (this.ring) return;
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const path = join(this.root, EVENTS);
    let map: BpfMap;
    if (existsSync(path)) {
      map = openPinnedMap(path, { type: POLICY_MAPS.events.type });
      if (map.maxEntries !== this.sizes[EVENTS]) {
        this.logger.warn({ pinned: map.maxEntries, configured: this.sizes[EVENTS] }, 'the pinned event ring keeps its size until every attachment is gone');
        this.sizes[EVENTS] = map.maxEntries;
      }
    } else {
      const c = loadCollection(objectPath('tc'), { mapSizes: { [EVENTS]: this.sizes[EVENTS]! }, pinMaps: { dir: this.root, maps: [EVENTS] }, programs: [] });
      try {
        map = c.takeMap(EVENTS);
      } finally {
        c.close();
      }
    }
    const consumer = createRingBufferConsumer(
      map,
      (rec) => {
        const ev = decodeEvent(rec);
        this.onEvent({
          numericId: ev.attachmentId,
          destination: ev.dstAddr,
          port: ev.dstPort,
          protocol: ev.protocol,
          reason: ev.reason.toLowerCase(),
          dryRun: ev.dryRun,
          hook: ev.hook.toLowerCase(),
        });
      },
      { intervalMs: 50, onError: (err) => this.logger.warn({ err }, 'event ring buffer') },
    );
    this.ring = { map, consumer };
  }

  /** Stops reading; removes the shared pins when no attachment's directory needs them. */
  close(): void {
    this.ring?.consumer.close();
    this.ring?.map.close();
    this.ring = undefined;
    this.removeUnusedPins();
  }

  /**
   * The shared pins (the event ring) stay only while an attachment's directory needs them: with
   * none left, they go, and so does the root directory when that leaves it empty.
   */
  private removeUnusedPins(): void {
    const root = this.root;
    if (!existsSync(root) || readdirSync(root).some((n) => n !== EVENTS)) return;
    try {
      rmSync(join(root, EVENTS), { force: true });
    } catch (e) {
      this.logger.warn({ err: e, root }, 'cannot remove the unused shared pins');
      return;
    }
    try {
      rmdirSync(root);
    } catch {
      /* a mount point, or something else appeared in it: it stays */
    }
  }
}
