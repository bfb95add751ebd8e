// The client's public shapes (what createControlPlaneClient returns and hands to callbacks).
// Options live in options.ts. No behaviour here.
import type { MessageInitShape } from '@bufbuild/protobuf';
import type {
  AttachmentSchema,
  AttachmentStatsSchema,
  CommandResultSchema,
  ControlCommand,
  DenyEventSchema,
  DnsQueryRequestSchema,
  DnsQueryResponse,
  SubscribedSchema,
  UnsubscribeReason,
} from '@netfence/proto';
import type { ControlPlaneClientError } from './controlplane-client-error';
import type { SendQueueStats } from './send-queue';

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

/** Applies a SubscribedAck at its turn in the command order (see SubscribeOptions.applyAck). */
export type ApplyAck = (cmd: ControlCommand) => Promise<void> | void;

export interface SubscribeOptions {
  /**
   * Applies the SubscribedAck in the command sequence: called at the ack's turn (after every
   * command received before it, before every command received after it); subscribe()
   * resolves once it has completed (rejects with its error). When the ack carries a nonce,
   * the CommandResult reports its outcome. Without applyAck subscribe() resolves at the
   * ack's turn and the caller reports a nonce's result itself (sendCommandResult).
   */
  readonly applyAck?: ApplyAck;
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

