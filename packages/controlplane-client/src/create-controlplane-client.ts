import { readFileSync } from 'node:fs';
import type { ClientHttp2Session, ClientHttp2Stream, ClientSessionRequestOptions, OutgoingHttpHeaders, SecureClientSessionOptions } from 'node:http2';
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { ConnectError, createClient } from '@connectrpc/connect';
import type { Client, Transport } from '@connectrpc/connect';
import { Http2SessionManager, createGrpcTransport } from '@connectrpc/connect-node';
import type { GrpcTransportOptions } from '@connectrpc/connect-node';
import {
  AttachmentStatsSchema,
  CommandResultSchema,
  ControlPlane,
  DaemonEventSchema,
  DenyEventSchema,
  DnsQueryRequestSchema,
  HeartbeatSchema,
  SubscribedSchema,
  SyncRequestSchema,
  UnsubscribedSchema,
} from '@netfence/proto';
import type {
  AttachmentSchema,
  CommandResult,
  ControlCommand,
  DaemonEvent,
  DnsQueryResponse,
  UnsubscribeReason,
} from '@netfence/proto';
import { backoffDelay, resolveBackoff } from './backoff';
import type { BackoffOptions } from './backoff';
import { ControlPlaneClientError } from './controlplane-client-error';
import { SendQueue } from './send-queue';
import type { ReliableItem, SendQueueStats } from './send-queue';

type NodeHttp2ClientSessionManager = NonNullable<GrpcTransportOptions['sessionManager']>;

/** A pino-compatible logger (only these methods are used). */
export interface ControlPlaneClientLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child?(bindings: Record<string, unknown>): ControlPlaneClientLogger;
}

/** What the daemon reports in the SyncRequest that opens every stream. */
export interface SyncState {
  readonly attachments: readonly MessageInitShape<typeof AttachmentSchema>[];
  /** Merged over `options.metadata` for this SyncRequest. */
  readonly metadata?: Readonly<Record<string, string>>;
}

export type SubscribedInit = MessageInitShape<typeof SubscribedSchema>;
export type AttachmentStatsInit = MessageInitShape<typeof AttachmentStatsSchema>;
export type DenyEventInit = MessageInitShape<typeof DenyEventSchema>;
export type CommandResultInit = MessageInitShape<typeof CommandResultSchema>;
export type DnsQueryRequestInit = MessageInitShape<typeof DnsQueryRequestSchema>;

/** The link state, as DaemonStatus.control_plane_state reports it. */
export type ControlPlaneConnectionState = 'disconnected' | 'connecting' | 'connected';

export interface StateChangeInfo {
  /** Number of consecutive failed attempts so far (0 after a SyncAck or a stable connection). */
  readonly attempt: number;
  /** Why the previous stream ended (on 'disconnected'). */
  readonly error?: ControlPlaneClientError | undefined;
  /** Delay before the next attempt (on 'disconnected', unless closed). */
  readonly retryInMs?: number | undefined;
}

export type StateChangeListener = (state: ControlPlaneConnectionState, info: StateChangeInfo) => void;

export interface TlsOptions {
  /** PEM file of the CA(s) that sign the control plane's certificate (default: system CAs). */
  readonly caFile?: string;
  /** PEM file of the client certificate (mTLS). */
  readonly certFile?: string;
  /** PEM file of the client key (mTLS). */
  readonly keyFile?: string;
  /** PEM contents instead of files. */
  readonly ca?: string | Buffer;
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** TLS server name (SNI and certificate check) when it differs from the URL's host. */
  readonly serverName?: string;
}

export interface KeepaliveOptions {
  /** HTTP/2 PING interval while a stream is open. Default 10 000 ms. */
  readonly pingIntervalMs?: number;
  /** A PING unanswered for this long kills the connection. Default 5 000 ms. */
  readonly pingTimeoutMs?: number;
}

export interface QueueOptions {
  /** Bound on undelivered Subscribed/Unsubscribed (subscribe/unsubscribe throw QUEUE_FULL beyond). Default 10 000. */
  readonly maxQueuedEvents?: number;
  /** Bound on buffered deny events; more are dropped and counted. Default 10 000. */
  readonly maxPendingDenyEvents?: number;
  /** Events per DenyEvents message. Default 500. */
  readonly denyBatchSize?: number;
  /** A partial deny batch is sent this long after its first event. Default 1 000 ms. */
  readonly denyFlushMs?: number;
}

export interface ControlPlaneClientOptions {
  /** `http://host:port` (h2c) or `https://host:port` (TLS). */
  readonly url: string;
  readonly daemonId: string;
  readonly hostname: string;
  /** SyncRequest metadata. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Called at the start of every stream; its result becomes the first message (SyncRequest). */
  readonly syncState: () => SyncState | Promise<SyncState>;
  /**
   * Receives every ControlCommand (in order, one at a time) except a SubscribedAck that a
   * pending subscribe() consumes. A rejection carrying a string `code` property reports that
   * code in CommandResult.error_code (NETFENCE_ERR_COMMAND_FAILED otherwise).
   */
  readonly onCommand: (cmd: ControlCommand) => Promise<void> | void;
  /** Heartbeat period; 0 disables the timer. Default 30 000 ms. */
  readonly heartbeatIntervalMs?: number;
  /** Cumulative counters for every attachment, read at each heartbeat. */
  readonly heartbeatStats?: () => readonly AttachmentStatsInit[];
  /** How long subscribe() waits for its SubscribedAck (connection wait included). Default 5 000 ms. */
  readonly subscribeAckTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
  /**
   * A SyncAck resets the backoff; a stream that never gets one resets it only after being
   * connected this long (anti-flap). Default 10 000 ms.
   */
  readonly stableAfterMs?: number;
  readonly keepalive?: KeepaliveOptions;
  /** TLS settings (only with an https:// url). */
  readonly tls?: TlsOptions;
  /** Sent as `authorization: Bearer <token>` on every call; a function is called per call (rotation). */
  readonly bearerToken?: string | (() => string | Promise<string>);
  /** Extra request headers on every call. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly queue?: QueueOptions;
  /** Default deadline of queryDns(). Default 2 000 ms. */
  readonly dnsQueryDeadlineMs?: number;
  /** close() waits at most this long to flush queued messages and for the command in progress. Default 2 000 ms. */
  readonly closeTimeoutMs?: number;
  readonly logger?: ControlPlaneClientLogger;
  /** Called on every state change (registered before the first attempt). */
  readonly onStateChange?: StateChangeListener;
  /** Use this transport instead of creating a gRPC/HTTP-2 one (tests: createRouterTransport). */
  readonly transport?: Transport;
}

export interface SubscribeOptions {
  /**
   * Applies the SubscribedAck in the command sequence: called at the ack's turn (after every
   * command received before it, before every command received after it); subscribe()
   * resolves once it has completed (rejects with its error). When the ack carries a nonce,
   * the CommandResult reports its outcome. Without applyAck subscribe() resolves at the
   * ack's turn and the caller reports a nonce's result itself (sendCommandResult).
   */
  readonly applyAck?: (cmd: ControlCommand) => Promise<void> | void;
}

export interface QueryDnsOptions {
  /** Overrides dnsQueryDeadlineMs. */
  readonly deadlineMs?: number;
  readonly signal?: AbortSignal;
}

export interface ControlPlaneClientStats extends SendQueueStats {
  readonly state: ControlPlaneConnectionState;
  /** Streams opened so far (the first included). */
  readonly streamsStarted: number;
  readonly commandsReceived: number;
  readonly commandsQueued: number;
  readonly subscribesPending: number;
}

export interface ControlPlaneClient extends AsyncDisposable {
  readonly state: ControlPlaneConnectionState;
  readonly closed: boolean;
  /** Registers a state listener; returns a function that removes it. */
  onStateChange(listener: StateChangeListener): () => void;
  /**
   * Sends Subscribed and resolves with the ControlCommand carrying the SubscribedAck of the
   * same id. Rejects NETFENCE_ERR_ACK_TIMEOUT after subscribeAckTimeoutMs (waiting for a
   * connection included), NETFENCE_ERR_CLOSED on close(), NETFENCE_ERR_ALREADY_PENDING if a
   * subscribe for that id is pending, NETFENCE_ERR_QUEUE_FULL when the queue is full.
   */
  subscribe(subscribed: SubscribedInit, opts?: SubscribeOptions): Promise<ControlCommand>;
  /** Queues Unsubscribed (never dropped). Throws NETFENCE_ERR_CLOSED / NETFENCE_ERR_QUEUE_FULL. */
  unsubscribe(id: string, reason: UnsubscribeReason, error?: string): void;
  /** Queues a CommandResult (never dropped), e.g. for an ack consumed by subscribe() without applyAck. */
  sendCommandResult(result: CommandResultInit): void;
  /** Queues a heartbeat now (replacing a queued one). */
  sendHeartbeat(): void;
  /** Buffers deny events for batched sending; returns how many were accepted (the rest dropped). */
  sendDenyEvents(events: readonly DenyEventInit[]): number;
  /** ControlPlane.QueryDns with a deadline (NETFENCE_ERR_DEADLINE when it passes). */
  queryDns(req: DnsQueryRequestInit, opts?: QueryDnsOptions): Promise<DnsQueryResponse>;
  stats(): ControlPlaneClientStats;
  /** Flushes what it can within closeTimeoutMs, ends the stream, rejects pending subscribes. Idempotent. */
  close(): Promise<void>;
}

interface PendingSubscribe {
  readonly id: string;
  readonly event: DaemonEvent;
  readonly applyAck: ((cmd: ControlCommand) => Promise<void> | void) | undefined;
  readonly resolve: (cmd: ControlCommand) => void;
  readonly reject: (err: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  /** Handed to a stream at least once (so it is re-sent after a reconnect). */
  sent: boolean;
}

interface CommandItem {
  readonly cmd: ControlCommand;
  readonly waiter?: PendingSubscribe | undefined;
}

/** Open stream with response headers but no command yet: counts as connected after this long. */
const CONNECTED_SETTLE_MS = 500;

const noopLogger: ControlPlaneClientLogger = {
  info() {},
  warn() {},
  error() {},
  debug() {},
};

/**
 * Creates a client of ControlPlane.Connect (bidi stream) and ControlPlane.QueryDns and
 * starts connecting right away (on the next event-loop turn, so listeners registered
 * synchronously after creation see the first 'connecting').
 */
export function createControlPlaneClient(options: ControlPlaneClientOptions): ControlPlaneClient {
  return new ControlPlaneClientImpl(options);
}

class ControlPlaneClientImpl implements ControlPlaneClient {
  private readonly log: ControlPlaneClientLogger;
  private readonly client: Client<typeof ControlPlane>;
  private readonly sessionManager: Http2SessionManager | undefined;
  private readonly queue: SendQueue;
  private readonly backoff: ReturnType<typeof resolveBackoff>;
  private readonly listeners = new Set<StateChangeListener>();
  private readonly pending = new Map<string, PendingSubscribe>();
  private readonly commands: CommandItem[] = [];

  private currentState: ControlPlaneConnectionState = 'disconnected';
  private isClosed = false;
  private draining = false;
  private closePromise: Promise<void> | undefined;
  private loopPromise: Promise<void> | undefined;
  private commandLoop: Promise<void> | undefined;
  private attemptAbort: AbortController | undefined;
  private wakeWriter: (() => void) | undefined;
  private wakeSleep: (() => void) | undefined;
  private drainedWaiter: (() => void) | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private denyTimer: NodeJS.Timeout | undefined;
  private denyFlushDue = false;
  private startTimer: NodeJS.Immediate | undefined;
  private failedAttempts = 0;
  private streamsStarted = 0;
  private commandsReceived = 0;

  private readonly subscribeAckTimeoutMs: number;
  private readonly stableAfterMs: number;
  private readonly dnsQueryDeadlineMs: number;
  private readonly closeTimeoutMs: number;
  private readonly denyFlushMs: number;

  constructor(private readonly opts: ControlPlaneClientOptions) {
    validateOptions(opts);
    const base = opts.logger ?? noopLogger;
    this.log = base.child ? base.child({ component: 'controlplane-client' }) : base;
    this.subscribeAckTimeoutMs = opts.subscribeAckTimeoutMs ?? 5_000;
    this.stableAfterMs = opts.stableAfterMs ?? 10_000;
    this.dnsQueryDeadlineMs = opts.dnsQueryDeadlineMs ?? 2_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 2_000;
    this.denyFlushMs = opts.queue?.denyFlushMs ?? 1_000;
    this.backoff = resolveBackoff(opts.backoff);
    this.queue = new SendQueue({
      maxReliable: opts.queue?.maxQueuedEvents ?? 10_000,
      maxPendingDenyEvents: opts.queue?.maxPendingDenyEvents ?? 10_000,
      denyBatchSize: opts.queue?.denyBatchSize ?? 500,
    });
    if (opts.onStateChange) this.listeners.add(opts.onStateChange);

    let transport = opts.transport;
    if (transport === undefined) {
      const nodeOptions = tlsNodeOptions(opts);
      this.sessionManager = new Http2SessionManager(
        opts.url,
        {
          pingIntervalMs: opts.keepalive?.pingIntervalMs ?? 10_000,
          pingTimeoutMs: opts.keepalive?.pingTimeoutMs ?? 5_000,
        },
        nodeOptions,
      );
      transport = createGrpcTransport({ baseUrl: opts.url, sessionManager: guardSessions(this.sessionManager, this.log) });
    }
    this.client = createClient(ControlPlane, transport);

    const hbMs = opts.heartbeatIntervalMs ?? 30_000;
    if (hbMs > 0) {
      this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), hbMs);
      this.heartbeatTimer.unref();
    }
    this.startTimer = setImmediate(() => {
      this.startTimer = undefined;
      this.loopPromise = this.runLoop();
    });
  }

  get state(): ControlPlaneConnectionState {
    return this.currentState;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  onStateChange(listener: StateChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  subscribe(subscribed: SubscribedInit, subOpts: SubscribeOptions = {}): Promise<ControlCommand> {
    if (this.isClosed) return Promise.reject(closedError('subscribe'));
    const msg = create(SubscribedSchema, subscribed);
    if (msg.id === '') {
      return Promise.reject(new ControlPlaneClientError('NETFENCE_ERR_INVALID_ARGUMENT', 'Subscribed.id is empty'));
    }
    if (this.pending.has(msg.id)) {
      return Promise.reject(
        new ControlPlaneClientError('NETFENCE_ERR_ALREADY_PENDING', `a subscribe for attachment ${msg.id} is already waiting for its ack`),
      );
    }
    const event = create(DaemonEventSchema, { event: { case: 'subscribed', value: msg } });
    return new Promise<ControlCommand>((resolve, reject) => {
      const p: PendingSubscribe = {
        id: msg.id,
        event,
        applyAck: subOpts.applyAck,
        resolve,
        reject,
        timer: undefined,
        sent: false,
      };
      try {
        this.queue.pushReliable({ kind: 'subscribed', event, subscribeId: msg.id });
      } catch (err) {
        reject(err);
        return;
      }
      p.timer = setTimeout(() => {
        p.timer = undefined;
        if (this.pending.get(p.id) !== p) return;
        this.pending.delete(p.id);
        this.queue.removeSubscribed(p.id);
        this.log.warn({ attachmentId: p.id, timeoutMs: this.subscribeAckTimeoutMs }, 'no SubscribedAck in time');
        reject(
          new ControlPlaneClientError(
            'NETFENCE_ERR_ACK_TIMEOUT',
            `no SubscribedAck for attachment ${p.id} within ${this.subscribeAckTimeoutMs} ms (link ${this.currentState})`,
          ),
        );
      }, this.subscribeAckTimeoutMs);
      this.pending.set(msg.id, p);
      this.wake();
    });
  }

  unsubscribe(id: string, reason: UnsubscribeReason, error?: string): void {
    if (this.isClosed) throw closedError('unsubscribe');
    const value = create(UnsubscribedSchema, { id, reason, error: error ?? '' });
    this.queue.pushReliable({ kind: 'unsubscribed', event: create(DaemonEventSchema, { event: { case: 'unsubscribed', value } }) });
    this.wake();
  }

  sendCommandResult(result: CommandResultInit): void {
    if (this.isClosed) throw closedError('sendCommandResult');
    this.pushCommandResult(create(CommandResultSchema, result));
  }

  sendHeartbeat(): void {
    if (this.isClosed) return;
    let stats: readonly AttachmentStatsInit[] = [];
    if (this.opts.heartbeatStats) {
      try {
        stats = this.opts.heartbeatStats();
      } catch (err) {
        this.log.warn({ err }, 'heartbeatStats() threw; heartbeat skipped');
        return;
      }
    }
    this.queue.setHeartbeat(create(HeartbeatSchema, { stats: stats.map((s) => create(AttachmentStatsSchema, s)) }));
    this.wake();
  }

  sendDenyEvents(events: readonly DenyEventInit[]): number {
    if (this.isClosed || events.length === 0) return 0;
    const accepted = this.queue.pushDenyEvents(events.map((e) => create(DenyEventSchema, e)));
    if (accepted < events.length) {
      this.log.debug({ dropped: events.length - accepted }, 'deny event buffer full; events dropped');
    }
    if (this.queue.denyBatchFull) this.wake();
    this.ensureDenyTimer();
    return accepted;
  }

  /** A partial deny batch goes out at most denyFlushMs after it started to fill. */
  private ensureDenyTimer(): void {
    if (this.denyTimer !== undefined || this.denyFlushDue || this.queue.denyPending === 0 || this.isClosed) return;
    this.denyTimer = setTimeout(() => {
      this.denyTimer = undefined;
      this.denyFlushDue = this.queue.denyPending > 0;
      this.wake();
    }, this.denyFlushMs);
    this.denyTimer.unref();
  }

  async queryDns(req: DnsQueryRequestInit, qOpts: QueryDnsOptions = {}): Promise<DnsQueryResponse> {
    if (this.isClosed) throw closedError('queryDns');
    const deadlineMs = qOpts.deadlineMs ?? this.dnsQueryDeadlineMs;
    try {
      const callOpts: { timeoutMs: number; headers: Record<string, string>; signal?: AbortSignal } = {
        timeoutMs: deadlineMs,
        headers: await this.callHeaders(),
      };
      if (qOpts.signal) callOpts.signal = qOpts.signal;
      return await this.client.queryDns(create(DnsQueryRequestSchema, req), callOpts);
    } catch (err) {
      const e = ControlPlaneClientError.from(err);
      if (e.code === 'NETFENCE_ERR_DEADLINE') {
        throw new ControlPlaneClientError('NETFENCE_ERR_DEADLINE', `QueryDns exceeded its ${deadlineMs} ms deadline`, {
          cause: err,
          rpcCode: e.rpcCode,
        });
      }
      throw e;
    }
  }

  stats(): ControlPlaneClientStats {
    return {
      ...this.queue.stats(),
      state: this.currentState,
      streamsStarted: this.streamsStarted,
      commandsReceived: this.commandsReceived,
      commandsQueued: this.commands.length,
      subscribesPending: this.pending.size,
    };
  }

  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------------------------------

  private async doClose(): Promise<void> {
    this.isClosed = true;
    if (this.startTimer) clearImmediate(this.startTimer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.denyTimer) clearTimeout(this.denyTimer);
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(closedError('subscribe'));
    }
    this.pending.clear();
    const deadline = Date.now() + this.closeTimeoutMs;

    // Flush what is queued if a stream is up, then half-close it.
    if (this.currentState === 'connected' && this.attemptAbort) {
      this.draining = true;
      this.denyFlushDue = true;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.drainedWaiter = () => {
          clearTimeout(t);
          resolve();
        };
        this.wake();
      });
      this.drainedWaiter = undefined;
      // The request side is half-closed; give the server the rest of the budget to end the
      // response (so nothing written is cut off by a reset), then cancel.
      await Promise.race([this.loopPromise, delay(Math.max(0, deadline - Date.now()))]);
    }
    this.attemptAbort?.abort();
    this.wakeSleep?.();
    this.wake();
    await this.loopPromise;
    // Let the command in progress finish (bounded); drop the rest.
    for (const item of this.commands.splice(0)) item.waiter?.reject(closedError('subscribe'));
    if (this.commandLoop) {
      await Promise.race([this.commandLoop, delay(Math.max(0, deadline - Date.now()))]);
    }
    this.sessionManager?.abort();
    this.setState('disconnected', { attempt: this.failedAttempts });
    this.log.info({}, 'control plane client closed');
  }

  private wake(): void {
    const w = this.wakeWriter;
    this.wakeWriter = undefined;
    w?.();
  }

  private setState(state: ControlPlaneConnectionState, info: StateChangeInfo): void {
    if (state === this.currentState) return;
    this.currentState = state;
    for (const l of [...this.listeners]) {
      try {
        l(state, info);
      } catch (err) {
        this.log.error({ err }, 'state listener threw');
      }
    }
  }

  private async callHeaders(): Promise<Record<string, string>> {
    const h: Record<string, string> = { ...(this.opts.headers ?? {}) };
    const t = this.opts.bearerToken;
    if (t !== undefined) {
      const token = typeof t === 'function' ? await t() : t;
      h['authorization'] = `Bearer ${token}`;
    }
    return h;
  }

  private async runLoop(): Promise<void> {
    while (!this.isClosed) {
      this.setState('connecting', { attempt: this.failedAttempts });
      const { connectedMs, error } = await this.runAttempt();
      if (this.isClosed) break;
      if (connectedMs >= this.stableAfterMs) this.failedAttempts = 0;
      const retryInMs = backoffDelay(this.backoff, this.failedAttempts);
      this.failedAttempts++;
      const err = ControlPlaneClientError.from(error);
      this.log.warn({ err, retryInMs, attempt: this.failedAttempts }, 'control plane stream ended; reconnecting');
      this.setState('disconnected', { attempt: this.failedAttempts, error: err, retryInMs });
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.wakeSleep = undefined;
          resolve();
        }, retryInMs);
        this.wakeSleep = () => {
          clearTimeout(t);
          this.wakeSleep = undefined;
          resolve();
        };
      });
    }
  }

  /** One stream: SyncRequest, then the queue; commands in. Returns how long it was connected. */
  private async runAttempt(): Promise<{ connectedMs: number; error: unknown }> {
    const ac = new AbortController();
    this.attemptAbort = ac;
    let connectedAt: number | undefined;
    let settle: NodeJS.Timeout | undefined;
    const markConnected = (): void => {
      if (connectedAt !== undefined || ac.signal.aborted) return;
      connectedAt = Date.now();
      this.log.info({ url: this.opts.url }, 'control plane connected');
      this.setState('connected', { attempt: this.failedAttempts });
    };
    let error: unknown;
    try {
      const state = await this.opts.syncState();
      const sync = create(SyncRequestSchema, {
        daemonId: this.opts.daemonId,
        hostname: this.opts.hostname,
        attachments: [...state.attachments],
        metadata: { ...(this.opts.metadata ?? {}), ...(state.metadata ?? {}) },
      });
      const headers = await this.callHeaders();
      if (this.isClosed) return { connectedMs: 0, error: closedError('connect') };
      // Subscribed messages handed to the previous stream are unacknowledged: re-send them
      // right after the SyncRequest, ahead of everything queued meanwhile.
      const resend: ReliableItem[] = [];
      for (const p of this.pending.values()) {
        if (p.sent && !this.queue.hasSubscribed(p.id)) resend.push({ kind: 'subscribed', event: p.event, subscribeId: p.id });
      }
      this.queue.unshiftReliable(resend);
      this.streamsStarted++;
      const responses = this.client.connect(this.outbound(create(DaemonEventSchema, { event: { case: 'sync', value: sync } }), ac.signal), {
        signal: ac.signal,
        headers,
        // Response headers alone do not prove the server accepted the stream (it may send
        // headers and then fail it, e.g. Unauthenticated): the first command (normally the
        // SyncAck) does, or headers followed by CONNECTED_SETTLE_MS without an error.
        onHeader: (h: Headers) => {
          if (h.has('grpc-status') || settle !== undefined) return;
          settle = setTimeout(markConnected, CONNECTED_SETTLE_MS);
          settle.unref();
        },
      });
      for await (const cmd of responses) {
        markConnected();
        // The control plane has taken our state: this link is good, whatever happens next.
        // (A link that never gets its SyncAck resets the backoff only after stableAfterMs.)
        if (cmd.command.case === 'syncAck') this.failedAttempts = 0;
        this.receive(cmd);
      }
      error = this.draining
        ? closedError('connect')
        : new ControlPlaneClientError('NETFENCE_ERR_UNAVAILABLE', 'the control plane ended the stream');
    } catch (err) {
      error = err instanceof ConnectError || err instanceof ControlPlaneClientError ? err : ControlPlaneClientError.from(err);
    } finally {
      if (settle !== undefined) clearTimeout(settle);
      ac.abort();
      if (this.attemptAbort === ac) this.attemptAbort = undefined;
      this.wake();
    }
    return { connectedMs: connectedAt === undefined ? 0 : Date.now() - connectedAt, error };
  }

  private async *outbound(sync: DaemonEvent, signal: AbortSignal): AsyncGenerator<DaemonEvent> {
    yield sync;
    while (!signal.aborted) {
      const next = this.queue.take(this.denyFlushDue);
      if (next !== undefined) {
        if (this.queue.denyPending === 0) this.denyFlushDue = false;
        this.ensureDenyTimer();
        if (next.item?.kind === 'subscribed' && next.item.subscribeId !== undefined) {
          const p = this.pending.get(next.item.subscribeId);
          if (p) p.sent = true;
        }
        yield next.event;
        continue;
      }
      if (this.draining) {
        this.drainedWaiter?.();
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

  private receive(cmd: ControlCommand): void {
    this.commandsReceived++;
    let waiter: PendingSubscribe | undefined;
    if (cmd.command.case === 'subscribedAck') {
      const p = this.pending.get(cmd.id);
      if (p) {
        // Claimed at receipt: the timeout no longer applies and no re-send happens.
        this.pending.delete(cmd.id);
        if (p.timer) clearTimeout(p.timer);
        p.timer = undefined;
        this.queue.removeSubscribed(cmd.id);
        waiter = p;
      }
    }
    this.commands.push({ cmd, waiter });
    this.commandLoop ??= this.runCommands().finally(() => {
      this.commandLoop = undefined;
    });
  }

  private async runCommands(): Promise<void> {
    for (;;) {
      const item = this.commands.shift();
      if (item === undefined) return;
      const { cmd, waiter } = item;
      let failure: unknown;
      let failed = false;
      try {
        if (waiter) {
          if (waiter.applyAck) await waiter.applyAck(cmd);
        } else {
          await this.opts.onCommand(cmd);
        }
      } catch (err) {
        failed = true;
        failure = err;
      }
      if (waiter) {
        if (failed) waiter.reject(failure);
        else waiter.resolve(cmd);
      }
      if (failed) {
        this.log.warn({ err: failure, attachmentId: cmd.id, command: cmd.command.case, nonce: cmd.nonce }, 'command failed');
      }
      const reportResult = cmd.nonce !== '' && (!waiter || waiter.applyAck !== undefined);
      if (reportResult && !this.isClosed) {
        this.pushCommandResult(
          create(CommandResultSchema, {
            nonce: cmd.nonce,
            attachmentId: cmd.id,
            ok: !failed,
            errorCode: failed ? errorCodeOf(failure) : '',
            errorMessage: failed ? errorMessageOf(failure) : '',
          }),
        );
      }
    }
  }

  private pushCommandResult(value: CommandResult): void {
    this.queue.pushReliable({ kind: 'command_result', event: create(DaemonEventSchema, { event: { case: 'commandResult', value } }) }, true);
    this.wake();
  }
}

function errorCodeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'NETFENCE_ERR_COMMAND_FAILED';
}

function errorMessageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function closedError(what: string): ControlPlaneClientError {
  return new ControlPlaneClientError('NETFENCE_ERR_CLOSED', `${what}: the control plane client is closed`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function validateOptions(o: ControlPlaneClientOptions): void {
  const bad = (msg: string): never => {
    throw new ControlPlaneClientError('NETFENCE_ERR_INVALID_ARGUMENT', msg);
  };
  let url: URL;
  try {
    url = new URL(o.url);
  } catch (err) {
    throw new ControlPlaneClientError('NETFENCE_ERR_INVALID_ARGUMENT', `url ${JSON.stringify(o.url)} is not a URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') bad(`url must be http:// or https://, got ${url.protocol}`);
  if (o.tls !== undefined && url.protocol !== 'https:') bad('tls options need an https:// url');
  if (typeof o.syncState !== 'function') bad('syncState must be a function');
  if (typeof o.onCommand !== 'function') bad('onCommand must be a function');
  const nonNeg: [string, number | undefined][] = [
    ['heartbeatIntervalMs', o.heartbeatIntervalMs],
    ['subscribeAckTimeoutMs', o.subscribeAckTimeoutMs],
    ['stableAfterMs', o.stableAfterMs],
    ['dnsQueryDeadlineMs', o.dnsQueryDeadlineMs],
    ['closeTimeoutMs', o.closeTimeoutMs],
    ['backoff.initialMs', o.backoff?.initialMs],
    ['backoff.maxMs', o.backoff?.maxMs],
    ['queue.denyFlushMs', o.queue?.denyFlushMs],
  ];
  for (const [k, v] of nonNeg) if (v !== undefined && !(Number.isFinite(v) && v >= 0)) bad(`${k} must be a number >= 0`);
  const pos: [string, number | undefined][] = [
    ['keepalive.pingIntervalMs', o.keepalive?.pingIntervalMs],
    ['keepalive.pingTimeoutMs', o.keepalive?.pingTimeoutMs],
    ['queue.maxQueuedEvents', o.queue?.maxQueuedEvents],
    ['queue.maxPendingDenyEvents', o.queue?.maxPendingDenyEvents],
    ['queue.denyBatchSize', o.queue?.denyBatchSize],
    ['backoff.multiplier', o.backoff?.multiplier],
  ];
  for (const [k, v] of pos) if (v !== undefined && !(Number.isFinite(v) && v > 0)) bad(`${k} must be a number > 0`);
}

function tlsNodeOptions(o: ControlPlaneClientOptions): SecureClientSessionOptions | undefined {
  const t = o.tls;
  if (t === undefined) return undefined;
  const read = (file: string | undefined, inline: string | Buffer | undefined, what: string): string | Buffer | undefined => {
    if (inline !== undefined) return inline;
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ControlPlaneClientError('NETFENCE_ERR_TLS', `cannot read TLS ${what} file ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const ca = read(t.caFile, t.ca, 'CA');
  const cert = read(t.certFile, t.cert, 'certificate');
  const key = read(t.keyFile, t.key, 'key');
  if ((cert === undefined) !== (key === undefined)) {
    throw new ControlPlaneClientError('NETFENCE_ERR_TLS', 'a client certificate needs its key and vice versa (mTLS)');
  }
  const out: SecureClientSessionOptions = {};
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (key !== undefined) out.key = key;
  if (t.serverName !== undefined) out.servername = t.serverName;
  return out;
}

/**
 * Wraps the session manager so that every HTTP/2 session and stream it hands out has an
 * 'error' listener. The manager detaches its own listener when it leaves a connection's state,
 * and a session destroyed by a keepalive timeout emits 'error' on a later tick: under load
 * that error could find no listener and become an uncaught exception in the daemon. The
 * errors themselves still reach the call through connect-node's own listeners.
 */
function guardSessions(inner: Http2SessionManager, log: ControlPlaneClientLogger): NodeHttp2ClientSessionManager {
  const guarded = new WeakSet<ClientHttp2Session>();
  const onSessionError = (err: unknown): void => log.debug({ err }, 'http/2 session error');
  const ignore = (): void => {};
  return {
    authority: inner.authority,
    async request(
      method: string,
      path: string,
      headers: OutgoingHttpHeaders,
      options: Omit<ClientSessionRequestOptions, 'signal'>,
    ): Promise<ClientHttp2Stream> {
      const stream = await inner.request(method, path, headers, options);
      stream.on('error', ignore);
      const session = stream.session as ClientHttp2Session | undefined;
      if (session && !guarded.has(session)) {
        guarded.add(session);
        session.on('error', onSessionError);
      }
      return stream;
    },
    notifyResponseByteRead(stream: ClientHttp2Stream): void {
      inner.notifyResponseByteRead(stream);
    },
  };
}
