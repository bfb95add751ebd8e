// The control plane's public shapes: options, the ControlPlane handle, the views the admin API
// serves, and the PolicyStore a shared policy lives in. Types only, so every module can import
// them without importing the factory (no import cycles).

import type { EventEmitter } from 'node:events';
import type * as http from 'node:http';
import type { ConnectRouter } from '@connectrpc/connect';
import type { Registry } from 'prom-client';
import type { DnsQueryResponse } from '@netfence/proto';
import type { PolicyConfig } from '@netfence/policy-engine';
import type { ControlPlaneError } from './errors';
import type { Logger } from './logger';
import type { PolicyDocument, PolicySet } from './policy-file';

export interface TlsOptions {
  /** PEM server certificate chain. */
  readonly cert: string | Buffer;
  /** PEM private key. */
  readonly key: string | Buffer;
  /** PEM CA bundle: when set, clients must present a certificate signed by it (mTLS). */
  readonly ca?: string | Buffer;
}

export interface ControlPlaneOptions {
  /**
   * Path of the YAML policy file (watched and editable), a policy document object (in memory),
   * or a PolicyStore holding the YAML text elsewhere (createPostgresPolicyStore: several
   * replicas serving one policy). A store belongs to the caller: close() leaves it open.
   */
  readonly policy: string | PolicyDocument | PolicyStore;
  readonly logger?: Logger;
  /** Bearer tokens accepted on both APIs (`authorization: Bearer <token>`). Empty/absent = no auth. */
  readonly auth?: { readonly tokens: readonly string[] };
  /** TLS for the servers started by listen() and listenAdmin(). */
  readonly tls?: TlsOptions;
  /** Watch the policy file (default true when `policy` is a path). */
  readonly watch?: boolean;
  /** Debounce of file change events (default 50 ms). */
  readonly debounceMs?: number;
  /** Use fs.watch on the file's directory (default true); the stat poller runs either way. */
  readonly fsWatch?: boolean;
  /** Poll interval of the fallback stat poller (default 1000 ms; 0 = off). */
  readonly pollIntervalMs?: number;
  /** Put a nonce on every command (default true); results are recorded, never required. */
  readonly nonces?: boolean;
  /** Injected clock (ms). */
  readonly now?: () => number;
  /**
   * prom-client's process and Node.js metrics (process_*, nodejs_*) in this control plane's
   * registry (default true). An embedding process that exports its own turns them off here.
   */
  readonly processMetrics?: boolean;
}

/** GET /readyz: ready once a gRPC listener is bound (a valid policy is in force from creation on). */
export interface Readiness {
  readonly ready: boolean;
  /** Why not, when not ready. */
  readonly reason?: string;
}

export interface ListeningAddress {
  /** `http://127.0.0.1:PORT`, `https://...` or `unix:/path`. */
  readonly url: string;
  readonly host?: string;
  readonly port?: number;
  readonly path?: string;
}

export interface AttachmentStatsView {
  readonly at: string;
  readonly packetsAllowed: number;
  readonly packetsBlocked: number;
  readonly dnsQueriesAllowed: number;
  readonly dnsQueriesBlocked: number;
}

export interface CommandResultView {
  readonly nonce: string;
  readonly command: string;
  readonly ok: boolean;
  readonly errorCode?: string;
  readonly errorMessage?: string;
  readonly at: string;
}

export interface AttachmentView {
  readonly id: string;
  readonly daemonId: string;
  readonly target: string;
  readonly type: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** Name of the policy that selected it; undefined = none (block_all). */
  readonly policy: string | undefined;
  readonly config: PolicyConfig;
  readonly commandsSent: number;
  readonly acks: number;
  readonly nacks: number;
  readonly lastResult?: CommandResultView;
  /** The last rejected command (ok=false). */
  readonly lastNack?: CommandResultView;
  readonly lastHeartbeat?: AttachmentStatsView;
}

export interface DaemonView {
  readonly session: number;
  readonly daemonId: string;
  readonly hostname: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly peer: string;
  readonly connectedAt: string;
  readonly synced: boolean;
  readonly lastHeartbeatAt?: string;
  readonly attachments: number;
  readonly commandsSent: number;
  readonly pendingResults: number;
}

export interface ReloadResult {
  /** True when a new policy set was applied. */
  readonly changed: boolean;
  /** Commands pushed because of it. */
  readonly commands: number;
  readonly error?: ControlPlaneError;
}

export interface DenyEventView {
  readonly daemonId: string;
  readonly attachmentId: string;
  readonly destination: string;
  readonly port: number;
  readonly protocol: number;
  readonly reason: string;
  readonly domain: string;
  readonly dryRun: boolean;
  readonly count: number;
}

/** Events: 'reload' (ReloadResult), 'reloadError' (ControlPlaneError), 'pushed' ({commands, ms}). */
export interface ControlPlane {
  /** Registers ControlPlane.Connect/QueryDns on a Connect router (for connectNodeAdapter or createRouterTransport). */
  readonly routes: (router: ConnectRouter) => void;
  /** Serves gRPC (h2c, or TLS when `tls` is set) on `host:port`, `:port`, `[v6]:port` or `unix:/path`. */
  listen(addr: string): Promise<ListeningAddress>;
  /** Serves the admin JSON API and /metrics (HTTP/1.1; HTTPS when `tls` is set). */
  listenAdmin(addr: string): Promise<ListeningAddress>;
  /** The admin API as a plain node request handler, to mount elsewhere. */
  readonly adminHandler: http.RequestListener;
  /** Re-reads the policy file now (also called by the watcher). */
  reload(): Promise<ReloadResult>;
  /** Replaces the policy set with a document (inline mode) or YAML text (file mode: written to the file). */
  addRule(policy: string, rule: string): Promise<ReloadResult>;
  removeRule(policy: string, rule: string): Promise<ReloadResult>;
  policySet(): PolicySet;
  /** The last reload error, cleared by a successful reload. */
  lastError(): ControlPlaneError | undefined;
  daemons(): DaemonView[];
  attachments(): AttachmentView[];
  denyEvents(): DenyEventView[];
  /** Prometheus text exposition of `registry`. */
  metrics(): Promise<string>;
  /** This control plane's own prom-client registry (never the global one). */
  readonly registry: Registry;
  /** What GET /readyz answers. */
  readiness(): Readiness;
  /** Decide a DNS name for an attachment, as QueryDns does. */
  queryDns(req: { id: string; domain: string; queryType?: string }): DnsQueryResponse;
  readonly events: EventEmitter;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Where a control plane's policy document lives when it is not a local file. */
export interface PolicyStore {
  /** For errors and logs, e.g. `postgres:netfence_policy/default`. */
  readonly source: string;
  /** The text read last (loaded before the store is handed out). */
  current(): StoredPolicy;
  /** Reads the stored text now. */
  read(): Promise<StoredPolicy>;
  /**
   * Replaces the text if it is still at `version` (compare and swap) and tells every replica.
   * Resolves with the new version; rejects with NETFENCE_ERR_POLICY_CONFLICT when another
   * writer came first (read again and retry), NETFENCE_ERR_POLICY_WRITE when the database
   * cannot be reached.
   */
  write(text: string, version: number): Promise<StoredPolicy>;
  /** `cb` runs on every change by any replica, and after the change feed reconnects (changes may have been missed). */
  onChange(cb: () => void): void;
  close(): Promise<void>;
}

export interface StoredPolicy {
  readonly text: string;
  readonly version: number;
}
