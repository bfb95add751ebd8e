// The client: a thin composition. options.ts validates and fills in defaults; http2-transport.ts
// makes the RPCs; outbox.ts is the send side; command-sequencer.ts applies commands in order
// and matches SubscribedAcks; link.ts runs the stream and its reconnects.
import { create } from '@bufbuild/protobuf';
import { CommandResultSchema, DaemonEventSchema, SubscribedSchema, UnsubscribedSchema } from '@netfence/proto';
import type { ControlCommand, DnsQueryResponse, UnsubscribeReason } from '@netfence/proto';
import { CommandSequencer } from './command-sequencer';
import { closedError } from './controlplane-client-error';
import { createControlPlaneRpc } from './http2-transport';
import type { ControlPlaneRpc } from './http2-transport';
import { Link } from './link';
import { resolveOptions } from './options';
import type { ControlPlaneClientOptions, ResolvedOptions } from './options';
import { Outbox } from './outbox';
import type {
  CommandResultInit,
  ControlPlaneClient,
  ControlPlaneClientStats,
  ControlPlaneConnectionState,
  DenyEventInit,
  DnsQueryRequestInit,
  QueryDnsOptions,
  StateChangeListener,
  SubscribeOptions,
  SubscribedInit,
} from './types';

/**
 * Creates a client of ControlPlane.Connect (bidi stream) and ControlPlane.QueryDns and
 * starts connecting right away (on the next event-loop turn, so listeners registered
 * synchronously after creation see the first 'connecting').
 */
export function createControlPlaneClient(options: ControlPlaneClientOptions): ControlPlaneClient {
  return new ControlPlaneClientImpl(resolveOptions(options));
}

class ControlPlaneClientImpl implements ControlPlaneClient {
  private readonly rpc: ControlPlaneRpc;
  private readonly outbox: Outbox;
  private readonly sequencer: CommandSequencer;
  private readonly link: Link;
  /** Set by the first close(). */
  private closing: Promise<void> | undefined;

  constructor(private readonly o: ResolvedOptions) {
    // The transport first: it is the only part that can still throw (TLS files), before any timer starts.
    this.rpc = createControlPlaneRpc(o);
    this.outbox = new Outbox(o);
    this.sequencer = new CommandSequencer({
      onCommand: o.onCommand,
      subscribeAckTimeoutMs: o.subscribeAckTimeoutMs,
      outbox: this.outbox,
      log: o.log,
      linkState: () => this.link.state,
    });
    this.link = new Link(o, this.rpc, this.outbox, this.sequencer);
  }

  get state(): ControlPlaneConnectionState {
    return this.link.state;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  onStateChange(listener: StateChangeListener): () => void {
    return this.link.onStateChange(listener);
  }

  subscribe(subscribed: SubscribedInit, opts: SubscribeOptions = {}): Promise<ControlCommand> {
    if (this.closed) return Promise.reject(closedError('subscribe'));
    return this.sequencer.subscribe(create(SubscribedSchema, subscribed), opts.applyAck);
  }

  unsubscribe(id: string, reason: UnsubscribeReason, error?: string): void {
    if (this.closed) throw closedError('unsubscribe');
    this.sequencer.withdraw(id);
    const value = create(UnsubscribedSchema, { id, reason, error: error ?? '' });
    this.outbox.pushReliable({ kind: 'unsubscribed', event: create(DaemonEventSchema, { event: { case: 'unsubscribed', value } }) });
  }

  sendCommandResult(result: CommandResultInit): void {
    if (this.closed) throw closedError('sendCommandResult');
    this.outbox.pushCommandResult(create(CommandResultSchema, result));
  }

  sendHeartbeat(): void {
    if (this.closed) return;
    this.outbox.heartbeat();
  }

  sendDenyEvents(events: readonly DenyEventInit[]): number {
    if (this.closed || events.length === 0) return 0;
    return this.outbox.pushDenyEvents(events);
  }

  async queryDns(req: DnsQueryRequestInit, opts: QueryDnsOptions = {}): Promise<DnsQueryResponse> {
    if (this.closed) throw closedError('queryDns');
    return this.rpc.queryDns(req, opts.deadlineMs ?? this.o.dnsQueryDeadlineMs, opts.signal);
  }

  stats(): ControlPlaneClientStats {
    return {
      ...this.outbox.stats(),
      state: this.link.state,
      streamsStarted: this.link.streamsStarted,
      ...this.sequencer.stats(),
    };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Rejects pending subscribes and stops the timers at once; then flushes and ends the
   * stream, lets the command in progress finish and closes the session, all within
   * closeTimeoutMs; then reports 'disconnected'.
   */
  private async shutdown(): Promise<void> {
    this.outbox.close();
    this.sequencer.close();
    const deadline = Date.now() + this.o.closeTimeoutMs;
    await this.link.close(deadline);
    // Let the command in progress finish (bounded); drop the rest.
    await this.sequencer.stop(deadline);
    this.rpc.close();
    this.link.finish();
    this.o.log.info({}, 'control plane client closed');
  }
}
