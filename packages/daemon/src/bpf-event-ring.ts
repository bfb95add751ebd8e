// The drop-event ring buffer every attachment shares (events carry the attachment's number): the
// host set's `events` map (<root>/_host/events), read by one consumer.

import { createRingBufferConsumer, type BpfMap, type RingBufferConsumer } from '@netfence/bpf-loader';
import { decodeEvent } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import type { DatapathEvent } from './datapath';

/** Reads the host ring on a short timer and hands each record, decoded, to `onEvent`. close() stops it (the map is the host set's). */
export function consumeEventRing(ring: BpfMap, onEvent: (ev: DatapathEvent) => void, logger: Logger): RingBufferConsumer {
  return createRingBufferConsumer(
    ring,
    (rec) => {
      const ev = decodeEvent(rec);
      onEvent({
        numericId: ev.attachmentId,
        destination: ev.dstAddr,
        port: ev.dstPort,
        protocol: ev.protocol,
        reason: ev.reason.toLowerCase(),
        dryRun: ev.dryRun,
        hook: ev.hook.toLowerCase(),
      });
    },
    { intervalMs: 50, onError: (err) => logger.warn({ err }, 'event ring buffer') },
  );
}
