import { create } from '@bufbuild/protobuf';
import { DaemonEventSchema, DenyEventsSchema } from '@netfence/proto';
import type { DaemonEvent, DenyEvent, Heartbeat } from '@netfence/proto';
import { ControlPlaneClientError } from './controlplane-client-error';

/** Kinds of message that are never dropped. */
export type ReliableKind = 'subscribed' | 'unsubscribed' | 'command_result';

export interface ReliableItem {
  readonly kind: ReliableKind;
  readonly event: DaemonEvent;
  /** For kind 'subscribed': the attachment id (lets a timed-out subscribe be withdrawn). */
  readonly subscribeId?: string | undefined;
}

export interface SendQueueOptions {
  /** Bound on queued Subscribed/Unsubscribed pushed without `force`. */
  readonly maxReliable: number;
  /** Bound on buffered deny events; beyond it new events are dropped (counted). */
  readonly maxPendingDenyEvents: number;
  /** Largest number of deny events in one DenyEvents message. */
  readonly denyBatchSize: number;
}

export interface SendQueueStats {
  readonly reliable: number;
  readonly heartbeatPending: boolean;
  readonly denyEventsPending: number;
  readonly denyEventsDropped: number;
  readonly heartbeatsCoalesced: number;
}

/**
 * The client's outbound queue. Three lanes, drained in this order:
 * 1. reliable (Subscribed, Unsubscribed, CommandResult): FIFO, never dropped. Pushes
 *    without `force` fail with NETFENCE_ERR_QUEUE_FULL once `maxReliable` are queued (the
 *    caller learns it, nothing is silently lost); forced pushes always get in.
 * 2. heartbeat: one slot, a newer heartbeat replaces the queued one.
 * 3. deny events: a bounded buffer, sent in batches of at most `denyBatchSize`; events
 *    beyond `maxPendingDenyEvents` are dropped and counted.
 */
export class SendQueue {
  private reliable: ReliableItem[] = [];
  private heartbeat: Heartbeat | undefined;
  private deny: DenyEvent[] = [];
  private denyDropped = 0;
  private coalesced = 0;

  constructor(private readonly opts: SendQueueOptions) {}

  pushReliable(item: ReliableItem, force = false): void {
    if (!force && this.reliable.length >= this.opts.maxReliable) {
      throw new ControlPlaneClientError(
        'NETFENCE_ERR_QUEUE_FULL',
        `send queue holds ${this.reliable.length} undelivered messages (limit ${this.opts.maxReliable}); ${item.kind} not queued`,
      );
    }
    this.reliable.push(item);
  }

  /** Puts items at the front of the reliable lane, keeping their order. */
  unshiftReliable(items: readonly ReliableItem[]): void {
    if (items.length > 0) this.reliable.unshift(...items);
  }

  /** Withdraws a not-yet-sent Subscribed for `id`; true if one was removed. */
  removeSubscribed(id: string): boolean {
    const i = this.reliable.findIndex((r) => r.kind === 'subscribed' && r.subscribeId === id);
    if (i < 0) return false;
    this.reliable.splice(i, 1);
    return true;
  }

  /** True if a Subscribed for `id` waits in the queue (not yet handed to a stream). */
  hasSubscribed(id: string): boolean {
    return this.reliable.some((r) => r.kind === 'subscribed' && r.subscribeId === id);
  }

  setHeartbeat(hb: Heartbeat): void {
    if (this.heartbeat !== undefined) this.coalesced++;
    this.heartbeat = hb;
  }

  /** Buffers deny events; returns how many were accepted (the rest were dropped). */
  pushDenyEvents(events: readonly DenyEvent[]): number {
    const room = Math.max(0, this.opts.maxPendingDenyEvents - this.deny.length);
    const accepted = Math.min(room, events.length);
    for (let i = 0; i < accepted; i++) this.deny.push(events[i] as DenyEvent);
    this.denyDropped += events.length - accepted;
    return accepted;
  }

  get denyPending(): number {
    return this.deny.length;
  }

  get denyBatchFull(): boolean {
    return this.deny.length >= this.opts.denyBatchSize;
  }

  /**
   * Takes the next message to send, or undefined. Deny events are taken only when a full
   * batch is buffered or `flushDeny` is true.
   */
  take(flushDeny: boolean): { event: DaemonEvent; item?: ReliableItem } | undefined {
    const item = this.reliable.shift();
    if (item !== undefined) return { event: item.event, item };
    if (this.heartbeat !== undefined) {
      const value = this.heartbeat;
      this.heartbeat = undefined;
      return { event: create(DaemonEventSchema, { event: { case: 'heartbeat', value } }) };
    }
    if (this.deny.length > 0 && (flushDeny || this.denyBatchFull)) {
      const events = this.deny.splice(0, this.opts.denyBatchSize);
      return {
        event: create(DaemonEventSchema, { event: { case: 'denyEvents', value: create(DenyEventsSchema, { events }) } }),
      };
    }
    return undefined;
  }

  /** True when `take(flushDeny)` would return something. */
  hasWork(flushDeny: boolean): boolean {
    return (
      this.reliable.length > 0 ||
      this.heartbeat !== undefined ||
      (this.deny.length > 0 && (flushDeny || this.denyBatchFull))
    );
  }

  get reliableLength(): number {
    return this.reliable.length;
  }

  stats(): SendQueueStats {
    return {
      reliable: this.reliable.length,
      heartbeatPending: this.heartbeat !== undefined,
      denyEventsPending: this.deny.length,
      denyEventsDropped: this.denyDropped,
      heartbeatsCoalesced: this.coalesced,
    };
  }
}
