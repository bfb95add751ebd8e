// The send side of the stream: the bounded SendQueue, the heartbeat timer, the deny-batch
// flush timer, and the request stream a Connect stream reads from (SyncRequest first, then
// the queue, waiting when it is empty). close() stops the timers; drain() lets the current
// stream send what is queued and half-close.
import { create } from '@bufbuild/protobuf';
import { AttachmentStatsSchema, DaemonEventSchema, DenyEventSchema, HeartbeatSchema } from '@netfence/proto';
import type { CommandResult, DaemonEvent } from '@netfence/proto';
import { SendQueue } from './send-queue';
import type { ReliableItem, SendQueueStats } from './send-queue';
import type { ResolvedOptions } from './options';
import type { AttachmentStatsInit, ControlPlaneClientLogger, DenyEventInit } from './types';

/**
 * When the buffered deny events (fewer than a batch) go out: not yet (`idle`), when the
 * timer fires (`scheduled`), at the next take (`due`), or at every take once closed (the
 * timers are stopped and close() flushes what is left).
 */
type DenyFlush =
  | { readonly kind: 'idle' }
  | { readonly kind: 'scheduled'; readonly timer: NodeJS.Timeout }
  | { readonly kind: 'due' }
  | { readonly kind: 'closed' };

export class Outbox {
  private readonly queue: SendQueue;
  private readonly log: ControlPlaneClientLogger;
  private readonly heartbeatTimer: NodeJS.Timeout | undefined;
  private denyFlush: DenyFlush = { kind: 'idle' };
  /** The request stream waiting for work, if any. */
  private wakeWriter: (() => void) | undefined;
  /** Set by drain(): the request stream half-closes once the queue is empty. */
  private drainRequest: { readonly done: () => void } | undefined;

  constructor(private readonly o: ResolvedOptions) {
    this.log = o.log;
    this.queue = new SendQueue({
      maxReliable: o.queue.maxQueuedEvents,
      maxPendingDenyEvents: o.queue.maxPendingDenyEvents,
      denyBatchSize: o.queue.denyBatchSize,
    });
    if (o.heartbeatIntervalMs > 0) {
      this.heartbeatTimer = setInterval(() => this.heartbeat(), o.heartbeatIntervalMs);
      this.heartbeatTimer.unref();
    }
  }

  /** Queues a reliable message (NETFENCE_ERR_QUEUE_FULL beyond the bound unless `force`). */
  pushReliable(item: ReliableItem, force = false): void {
    this.queue.pushReliable(item, force);
    this.wake();
  }

  pushCommandResult(value: CommandResult): void {
    this.pushReliable({ kind: 'command_result', event: create(DaemonEventSchema, { event: { case: 'commandResult', value } }) }, true);
  }

  /** Puts items at the front of the reliable lane (re-sent Subscribed after a reconnect). */
  unshiftReliable(items: readonly ReliableItem[]): void {
    this.queue.unshiftReliable(items);
  }

  removeSubscribed(id: string): boolean {
    return this.queue.removeSubscribed(id);
  }

  hasSubscribed(id: string): boolean {
    return this.queue.hasSubscribed(id);
  }

  /** Queues a heartbeat with heartbeatStats() (replacing a queued one); skipped if that throws. */
  heartbeat(): void {
    let stats: readonly AttachmentStatsInit[] = [];
    if (this.o.heartbeatStats) {
      try {
        stats = this.o.heartbeatStats();
      } catch (err) {
        this.log.warn({ err }, 'heartbeatStats() threw; heartbeat skipped');
        return;
      }
    }
    this.queue.setHeartbeat(create(HeartbeatSchema, { stats: stats.map((s) => create(AttachmentStatsSchema, s)) }));
    this.wake();
  }

  /** Buffers deny events; returns how many were accepted. */
  pushDenyEvents(events: readonly DenyEventInit[]): number {
    const accepted = this.queue.pushDenyEvents(events.map((e) => create(DenyEventSchema, e)));
    if (accepted < events.length) {
      this.log.debug({ dropped: events.length - accepted }, 'deny event buffer full; events dropped');
    }
    if (this.queue.denyBatchFull) this.wake();
    this.ensureDenyTimer();
    return accepted;
  }

  get reliableLength(): number {
    return this.queue.reliableLength;
  }

  stats(): SendQueueStats {
    return this.queue.stats();
  }

  /** True once drain() was called: a stream that ends now ends because the client closes. */
  get draining(): boolean {
    return this.drainRequest !== undefined;
  }

  /**
   * The request side of one Connect stream: `first`, then queued messages until `signal`
   * aborts (or, once draining, until the queue is empty: then it half-closes). `sent` sees
   * every reliable item handed to the stream.
   */
  async *stream(first: DaemonEvent, signal: AbortSignal, sent: (item: ReliableItem) => void): AsyncGenerator<DaemonEvent> {
    yield first;
    while (!signal.aborted) {
      const next = this.queue.take(this.denyFlush.kind === 'due' || this.denyFlush.kind === 'closed');
      if (next !== undefined) {
        if (this.queue.denyPending === 0 && this.denyFlush.kind === 'due') this.denyFlush = { kind: 'idle' };
        this.ensureDenyTimer();
        if (next.item) sent(next.item);
        yield next.event;
        continue;
      }
      if (this.drainRequest) {
        this.drainRequest.done();
        return;
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.wakeWriter = done;
        signal.addEventListener('abort', done);
      });
    }
  }

  /** Wakes a request stream waiting for work. */
  wake(): void {
    const w = this.wakeWriter;
    this.wakeWriter = undefined;
    w?.();
  }

  /** Stops the timers; from now on partial deny batches are sent at once. */
  close(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.denyFlush.kind === 'scheduled') clearTimeout(this.denyFlush.timer);
    this.denyFlush = { kind: 'closed' };
  }

  /**
   * Lets the open stream send everything queued (deny events included) and half-close;
   * resolves when it has, or at `deadline` (ms since epoch).
   */
  async drain(deadline: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      this.drainRequest = {
        done: () => {
          clearTimeout(t);
          resolve();
        },
      };
      this.wake();
    });
  }

  /** A partial deny batch goes out at most denyFlushMs after it started to fill. */
  private ensureDenyTimer(): void {
    if (this.denyFlush.kind !== 'idle' || this.queue.denyPending === 0) return;
    const timer = setTimeout(() => {
      if (this.denyFlush.kind !== 'scheduled') return;
      this.denyFlush = this.queue.denyPending > 0 ? { kind: 'due' } : { kind: 'idle' };
      this.wake();
    }, this.o.queue.denyFlushMs);
    timer.unref();
    this.denyFlush = { kind: 'scheduled', timer };
  }
}
