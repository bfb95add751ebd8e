// The link to the control plane: one Connect stream at a time, reconnected with backoff, its
// state one tagged union, and the public connection state derived from it. Each stream opens
// with a fresh SyncRequest, then reads the Outbox; commands go to the CommandSequencer.
import { create } from '@bufbuild/protobuf';
import { ConnectError } from '@connectrpc/connect';
import { DaemonEventSchema, SyncRequestSchema } from '@netfence/proto';
import type { ControlCommand } from '@netfence/proto';
import { backoffDelay } from './backoff';
import type { CommandSequencer } from './command-sequencer';
import { ControlPlaneClientError, closedError } from './controlplane-client-error';
import { delay } from './delay';
import type { ControlPlaneRpc } from './http2-transport';
import type { ResolvedOptions } from './options';
import type { Outbox } from './outbox';
import type { ControlPlaneClientLogger, ControlPlaneConnectionState, StateChangeInfo, StateChangeListener } from './types';

/**
 * Where the link is. `stream` aborts the stream of the current attempt. `closing` keeps
 * reporting the state close() found until close() has finished (listeners see
 * 'disconnected' once everything is down).
 */
export type LinkState =
  /** Created; the first attempt starts on the next event-loop turn. */
  | { readonly kind: 'idle'; readonly start: NodeJS.Immediate }
  /** syncState(), call headers, stream open; no command and no settled headers yet. */
  | { readonly kind: 'connecting'; readonly stream: AbortController }
  /** The stream got a command, or headers and CONNECTED_SETTLE_MS without an error. */
  | { readonly kind: 'connected'; readonly stream: AbortController; readonly since: number }
  /** The last stream ended; the next attempt starts after `retryInMs` (or when woken). */
  | { readonly kind: 'backoff'; readonly retryInMs: number; readonly wake: () => void }
  | { readonly kind: 'closing'; readonly reported: ControlPlaneConnectionState }
  | { readonly kind: 'closed' };

/** The connection state a LinkState reports (DaemonStatus.control_plane_state). */
export function reportedState(s: LinkState): ControlPlaneConnectionState {
  switch (s.kind) {
    case 'connecting':
    case 'connected':
      return s.kind;
    case 'closing':
      return s.reported;
    default:
      return 'disconnected';
  }
}

/** Open stream with response headers but no command yet: counts as connected after this long. */
const CONNECTED_SETTLE_MS = 500;

export type LinkCommands = Pick<CommandSequencer, 'receive' | 'requeueUnacked' | 'markSent'>;

export class Link {
  private current: LinkState;
  private readonly listeners = new Set<StateChangeListener>();
  private readonly log: ControlPlaneClientLogger;
  /** The reconnect loop, once started. */
  private loop: Promise<void> | undefined;
  /** Consecutive failed attempts (the backoff exponent). */
  private failedAttempts = 0;
  private started = 0;

  constructor(
    private readonly o: ResolvedOptions,
    private readonly rpc: ControlPlaneRpc,
    private readonly outbox: Outbox,
    private readonly commands: LinkCommands,
  ) {
    this.log = o.log;
    if (o.onStateChange) this.listeners.add(o.onStateChange);
    this.current = {
      kind: 'idle',
      start: setImmediate(() => {
        this.loop = this.run();
      }),
    };
  }

  get state(): ControlPlaneConnectionState {
    return reportedState(this.current);
  }

  /** Streams opened so far. */
  get streamsStarted(): number {
    return this.started;
  }

  onStateChange(listener: StateChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Stops reconnecting. A connected stream first sends what is queued and half-closes, and
   * the server gets until `deadline` to end it; then the stream is cancelled. Resolves when
   * the loop has ended; the reported state stays until finish().
   */
  async close(deadline: number): Promise<void> {
    const was = this.current;
    if (was.kind === 'closing' || was.kind === 'closed') return;
    this.transition({ kind: 'closing', reported: reportedState(was) }, { attempt: this.failedAttempts });
    if (was.kind === 'idle') clearImmediate(was.start);
    if (was.kind === 'backoff') was.wake();
    const stream = was.kind === 'connecting' || was.kind === 'connected' ? was.stream : undefined;
    if (was.kind === 'connected' && !was.stream.signal.aborted) {
      await this.outbox.drain(deadline);
      // The request side is half-closed; give the server the rest of the budget to end the
      // response (so nothing written is cut off by a reset), then cancel.
      await Promise.race([this.loop, delay(Math.max(0, deadline - Date.now()))]);
    }
    stream?.abort();
    this.outbox.wake();
    await this.loop;
  }

  /** After close() and everything else is down: reports 'disconnected'. */
  finish(): void {
    this.transition({ kind: 'closed' }, { attempt: this.failedAttempts });
  }

  private get stopping(): boolean {
    return this.current.kind === 'closing' || this.current.kind === 'closed';
  }

  private transition(next: LinkState, info: StateChangeInfo): void {
    const before = reportedState(this.current);
    this.current = next;
    const after = reportedState(next);
    if (after === before) return;
    for (const l of [...this.listeners]) {
      try {
        l(after, info);
      } catch (err) {
        this.log.error({ err }, 'state listener threw');
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const { connectedMs, error } = await this.attempt();
      if (this.stopping) break;
      if (connectedMs >= this.o.stableAfterMs) this.failedAttempts = 0;
      const retryInMs = backoffDelay(this.o.backoff, this.failedAttempts);
      this.failedAttempts++;
      const err = ControlPlaneClientError.from(error);
      this.log.warn({ err, retryInMs, attempt: this.failedAttempts }, 'control plane stream ended; reconnecting');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, retryInMs);
        const wake = (): void => {
          clearTimeout(t);
          resolve();
        };
        this.transition({ kind: 'backoff', retryInMs, wake }, { attempt: this.failedAttempts, error: err, retryInMs });
      });
    }
  }

  /** One stream: SyncRequest, then the queue; commands in. Returns how long it was connected. */
  private async attempt(): Promise<{ connectedMs: number; error: unknown }> {
    const stream = new AbortController();
    this.transition({ kind: 'connecting', stream }, { attempt: this.failedAttempts });
    let settle: NodeJS.Timeout | undefined;
    // Response headers alone do not prove the server accepted the stream (it may send
    // headers and then fail it, e.g. Unauthenticated): the first command (normally the
    // SyncAck) does, or headers followed by CONNECTED_SETTLE_MS without an error.
    const onHeader = (h: Headers): void => {
      if (h.has('grpc-status') || settle !== undefined) return;
      settle = setTimeout(() => this.markConnected(stream), CONNECTED_SETTLE_MS);
      settle.unref();
    };
    let error: unknown;
    try {
      const responses = await this.open(stream, onHeader);
      if (responses === undefined) return { connectedMs: 0, error: closedError('connect') };
      for await (const cmd of responses) {
        this.markConnected(stream);
        // The control plane has taken our state: this link is good, whatever happens next.
        // (A link that never gets its SyncAck resets the backoff only after stableAfterMs.)
        if (cmd.command.case === 'syncAck') this.failedAttempts = 0;
        this.commands.receive(cmd);
      }
      error = this.outbox.draining
        ? closedError('connect')
        : new ControlPlaneClientError('NETFENCE_ERR_UNAVAILABLE', 'the control plane ended the stream');
    } catch (err) {
      error = err instanceof ConnectError || err instanceof ControlPlaneClientError ? err : ControlPlaneClientError.from(err);
    } finally {
      if (settle !== undefined) clearTimeout(settle);
      stream.abort();
      this.outbox.wake();
    }
    const s = this.current;
    return { connectedMs: s.kind === 'connected' && s.stream === stream ? Date.now() - s.since : 0, error };
  }

  /** Builds the SyncRequest and opens the stream; undefined when close() came meanwhile. */
  private async open(stream: AbortController, onHeader: (h: Headers) => void): Promise<AsyncIterable<ControlCommand> | undefined> {
    const state = await this.o.syncState();
    const sync = create(SyncRequestSchema, {
      daemonId: this.o.daemonId,
      hostname: this.o.hostname,
      attachments: [...state.attachments],
      metadata: { ...this.o.metadata, ...(state.metadata ?? {}) },
    });
    const headers = await this.rpc.callHeaders();
    if (this.stopping) return undefined;
    this.commands.requeueUnacked();
    this.started++;
    const first = create(DaemonEventSchema, { event: { case: 'sync', value: sync } });
    const outbound = this.outbox.stream(first, stream.signal, (item) => this.commands.markSent(item));
    return this.rpc.connect(outbound, { signal: stream.signal, headers, onHeader });
  }

  private markConnected(stream: AbortController): void {
    const s = this.current;
    if (s.kind !== 'connecting' || s.stream !== stream || stream.signal.aborted) return;
    const since = Date.now();
    this.log.info({ url: this.o.url }, 'control plane connected');
    this.transition({ kind: 'connected', stream, since }, { attempt: this.failedAttempts });
  }
}
