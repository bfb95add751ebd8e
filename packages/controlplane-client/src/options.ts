// The client's options: their shape (public), validation (a clear NETFENCE_ERR_INVALID_ARGUMENT
// naming the option) and defaults. Everything else reads ResolvedOptions, never raw options.
import type { ControlCommand } from '@netfence/proto';
import type { Transport } from '@connectrpc/connect';
import { resolveBackoff } from './backoff';
import type { BackoffOptions, ResolvedBackoff } from './backoff';
import { ControlPlaneClientError } from './controlplane-client-error';
import type { AttachmentStatsInit, ControlPlaneClientLogger, StateChangeListener, SyncState } from './types';

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

export type BearerToken = string | (() => string | Promise<string>);

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
  readonly bearerToken?: BearerToken;
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

/** Options after validation, with every default filled in. */
export interface ResolvedOptions {
  readonly url: string;
  readonly daemonId: string;
  readonly hostname: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly syncState: () => SyncState | Promise<SyncState>;
  readonly onCommand: (cmd: ControlCommand) => Promise<void> | void;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatStats: (() => readonly AttachmentStatsInit[]) | undefined;
  readonly subscribeAckTimeoutMs: number;
  readonly backoff: ResolvedBackoff;
  readonly stableAfterMs: number;
  readonly keepalive: Required<KeepaliveOptions>;
  readonly tls: TlsOptions | undefined;
  readonly bearerToken: BearerToken | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly queue: Required<QueueOptions>;
  readonly dnsQueryDeadlineMs: number;
  readonly closeTimeoutMs: number;
  /** The logger with `component: 'controlplane-client'` bound (a no-op one without `logger`). */
  readonly log: ControlPlaneClientLogger;
  readonly onStateChange: StateChangeListener | undefined;
  readonly transport: Transport | undefined;
}

const noopLogger: ControlPlaneClientLogger = {
  info() {},
  warn() {},
  error() {},
  debug() {},
};

/** Validates `o` (throws NETFENCE_ERR_INVALID_ARGUMENT naming the option) and fills in the defaults. */
export function resolveOptions(o: ControlPlaneClientOptions): ResolvedOptions {
  validateOptions(o);
  const base = o.logger ?? noopLogger;
  return {
    url: o.url,
    daemonId: o.daemonId,
    hostname: o.hostname,
    metadata: o.metadata ?? {},
    syncState: o.syncState,
    onCommand: o.onCommand,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 30_000,
    heartbeatStats: o.heartbeatStats,
    subscribeAckTimeoutMs: o.subscribeAckTimeoutMs ?? 5_000,
    backoff: resolveBackoff(o.backoff),
    stableAfterMs: o.stableAfterMs ?? 10_000,
    keepalive: { pingIntervalMs: o.keepalive?.pingIntervalMs ?? 10_000, pingTimeoutMs: o.keepalive?.pingTimeoutMs ?? 5_000 },
    tls: o.tls,
    bearerToken: o.bearerToken,
    headers: o.headers ?? {},
    queue: {
      maxQueuedEvents: o.queue?.maxQueuedEvents ?? 10_000,
      maxPendingDenyEvents: o.queue?.maxPendingDenyEvents ?? 10_000,
      denyBatchSize: o.queue?.denyBatchSize ?? 500,
      denyFlushMs: o.queue?.denyFlushMs ?? 1_000,
    },
    dnsQueryDeadlineMs: o.dnsQueryDeadlineMs ?? 2_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 2_000,
    log: base.child ? base.child({ component: 'controlplane-client' }) : base,
    onStateChange: o.onStateChange,
    transport: o.transport,
  };
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
