// The live events of `netfenced events` (DaemonService.WatchEvents): drop events and DNS
// decisions, kept in a bounded ring of the most recent ones and fanned out to subscribers. A
// workload decides how many events there are, so everything here is bounded: the ring holds
// RING_SIZE, each subscriber's queue SUBSCRIBER_QUEUE; a subscriber that reads too slowly misses
// events (counted, told in the next event's `missed`), the daemon never queues without limit.
// Events are kept as plain objects (one is made per DNS query and per drop; the protobuf
// message is only built for a subscriber).

import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { FirewallEventSchema, type FirewallEvent } from '@netfence/proto';

export const RING_SIZE = 1024;
export const SUBSCRIBER_QUEUE = 1024;

export interface DropFields {
  readonly destination: string;
  readonly port: number;
  readonly protocol: number;
  readonly reason: string;
  readonly learnedFrom?: string;
  readonly dryRun: boolean;
  readonly hook: string;
}

export interface DnsFields {
  readonly name: string;
  readonly qtype: string;
  readonly verdict: string;
  readonly reason: string;
  readonly rcode: string;
  readonly addresses?: readonly string[];
}

export type HubEvent = { readonly timeMs: number; readonly attachmentId: string } & ({ readonly kind: 'drop'; readonly drop: DropFields } | { readonly kind: 'dns'; readonly dns: DnsFields });

interface Subscriber {
  readonly attachmentId: string;
  readonly queue: HubEvent[];
  missed: number;
  wake?: () => void;
}

export function toFirewallEvent(e: HubEvent, missed: number): FirewallEvent {
  return create(FirewallEventSchema, {
    time: timestampFromMs(e.timeMs),
    attachmentId: e.attachmentId,
    missed: BigInt(missed),
    event:
      e.kind === 'drop'
        ? { case: 'drop', value: { ...e.drop, learnedFrom: e.drop.learnedFrom ?? '' } }
        : { case: 'dns', value: { ...e.dns, addresses: [...(e.dns.addresses ?? [])] } },
  });
}

export class EventHub {
  private readonly ring: HubEvent[] = [];
  private ringStart = 0;
  private readonly subscribers = new Set<Subscriber>();
  /** Events a subscriber missed because its queue was full (the metrics' counter). */
  droppedForSlowSubscribers = 0;

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  publish(e: HubEvent): void {
    if (this.ring.length < RING_SIZE) this.ring.push(e);
    else {
      this.ring[this.ringStart] = e;
      this.ringStart = (this.ringStart + 1) % RING_SIZE;
    }
    for (const s of this.subscribers) {
      if (s.attachmentId && s.attachmentId !== e.attachmentId) continue;
      if (s.queue.length >= SUBSCRIBER_QUEUE) {
        s.missed++;
        this.droppedForSlowSubscribers++;
        continue;
      }
      s.queue.push(e);
      s.wake?.();
    }
  }

  /** The most recent `n` events (oldest first) of one attachment, or of all with ''. */
  recent(attachmentId: string, n: number): HubEvent[] {
    const ordered = [...this.ring.slice(this.ringStart), ...this.ring.slice(0, this.ringStart)];
    const mine = attachmentId ? ordered.filter((e) => e.attachmentId === attachmentId) : ordered;
    return n > 0 ? mine.slice(-n) : [];
  }

  /**
   * The recent events, then (unless noFollow) every new one until `signal` aborts. Registered
   * before the recent ones are read, so nothing falls between them.
   */
  async *watch(opts: { attachmentId: string; recent: number; noFollow: boolean; signal: AbortSignal }): AsyncGenerator<FirewallEvent> {
    const sub: Subscriber = { attachmentId: opts.attachmentId, queue: [], missed: 0 };
    if (!opts.noFollow) this.subscribers.add(sub);
    try {
      for (const e of this.recent(opts.attachmentId, Math.min(opts.recent, RING_SIZE))) yield toFirewallEvent(e, 0);
      if (opts.noFollow) return;
      const aborted = new Promise<void>((resolve) => opts.signal.addEventListener('abort', () => resolve(), { once: true }));
      while (!opts.signal.aborted) {
        const e = sub.queue.shift();
        if (e) {
          const missed = sub.missed;
          sub.missed = 0;
          yield toFirewallEvent(e, missed);
          continue;
        }
        await Promise.race([new Promise<void>((resolve) => (sub.wake = resolve)), aborted]);
        sub.wake = undefined;
      }
    } finally {
      this.subscribers.delete(sub);
    }
  }
}
