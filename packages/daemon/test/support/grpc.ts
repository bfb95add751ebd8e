// gRPC peers of the daemon written with @grpc/grpc-js + @grpc/proto-loader straight from
// proto/netfence/v1/*.proto (keepCase): a DaemonService client, and a control plane that is
// not our code, as a user of netfence.v1 would write them.

import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_ROOT = join(__dirname, '../../../../proto');

const definition = protoLoader.loadSync(['netfence/v1/control.proto', 'netfence/v1/daemon.proto'], {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = grpc.loadPackageDefinition(definition) as any;
const v1 = pkg.netfence.v1;

// ---------------------------------------------------------------------------------------------
// DaemonService client

export interface AttachmentInfoMsg {
  id: string;
  target: string;
  type: string;
  mode: string;
  dns_mode: string;
  dns_address: string;
  metadata: Record<string, string>;
  packets_allowed: string;
  packets_blocked: string;
  tc_direction: string;
  dry_run: boolean;
}

export interface ListResponseMsg {
  attachments: AttachmentInfoMsg[];
  next_page_token: string;
  total_count: number;
}

export interface DaemonStatusMsg {
  version: string;
  daemon_id: string;
  hostname: string;
  control_plane_state: string;
  control_plane_address: string;
  attachment_count: number;
}

export interface AttachRequestMsg {
  interface_name?: string;
  cgroup_path?: string;
  metadata?: Record<string, string>;
  tc_direction?: string;
}

export interface DaemonApi {
  attach(req: AttachRequestMsg, deadlineMs?: number): Promise<{ id: string; dns_address: string }>;
  detach(id: string): Promise<void>;
  list(page_size?: number, page_token?: string): Promise<ListResponseMsg>;
  listAll(): Promise<AttachmentInfoMsg[]>;
  status(): Promise<DaemonStatusMsg>;
  close(): void;
}

/** A gRPC error as grpc-js reports it: `code` is the numeric status. */
export type GrpcError = Error & { code: grpc.status; details: string };

export { grpc };

export function createDaemonApi(socketPath: string): DaemonApi {
  const client = new v1.DaemonService(`unix:${socketPath}`, grpc.credentials.createInsecure());
  const call = <T>(method: string, req: unknown, deadlineMs = 30_000): Promise<T> =>
    new Promise((resolve, reject) => {
      client[method](req, { deadline: Date.now() + deadlineMs }, (err: GrpcError | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  const api: DaemonApi = {
    attach: (req, deadlineMs) => call('Attach', req, deadlineMs),
    detach: async (id) => {
      await call('Detach', { id });
    },
    list: (page_size = 0, page_token = '') => call('List', { page_size, page_token }),
    async listAll() {
      const out: AttachmentInfoMsg[] = [];
      let token = '';
      do {
        const r = await api.list(1000, token);
        out.push(...r.attachments);
        token = r.next_page_token;
      } while (token);
      return out;
    },
    status: () => call('GetStatus', {}),
    close: () => client.close(),
  };
  return api;
}

// ---------------------------------------------------------------------------------------------
// A netfence.v1 control plane on grpc-js

/** A DaemonEvent as proto-loader decodes it (`event` names the oneof member). */
export interface DaemonEventMsg {
  event: 'sync' | 'subscribed' | 'unsubscribed' | 'heartbeat' | 'command_result' | 'deny_events';
  sync?: { daemon_id: string; hostname: string; attachments: { id: string; target: string; type: string; mode: string; dns_mode: string; metadata: Record<string, string> }[] };
  subscribed?: { id: string; target: string; type: string; mode: string; dns_mode: string; dns_address: string; metadata: Record<string, string> };
  unsubscribed?: { id: string; reason: string; error: string };
  heartbeat?: { stats: { id: string }[] };
  command_result?: { nonce: string; attachment_id: string; ok: boolean; error_code: string; error_message: string };
}

export interface CidrEntryMsg {
  cidr: string;
  ttl?: { seconds: number; nanos: number };
}
export interface DomainEntryMsg {
  domain: string;
  include_subdomains?: boolean;
}
export interface DnsConfigMsg {
  mode: string;
  allow_domains?: DomainEntryMsg[];
  deny_domains?: DomainEntryMsg[];
  upstream_servers?: string[];
}
export interface PolicyMsg {
  mode: string;
  allow_cidrs?: CidrEntryMsg[];
  deny_cidrs?: CidrEntryMsg[];
  dns?: DnsConfigMsg;
}

/** A ControlCommand in proto-loader's object form: `{ id, <oneof member>: value, nonce? }`. */
export type ControlCommandMsg = { id: string; nonce?: string } & Record<string, unknown>;

export interface RecordedEvent {
  readonly at: number;
  /** Which stream (1, 2, ...) it arrived on: a reconnect opens a new one. */
  readonly stream: number;
  readonly msg: DaemonEventMsg;
}

export interface TestControlPlaneOptions {
  /** Unix socket to serve on (the tests: reached through a forwarder in the lab). */
  readonly socketPath?: string;
  /** Or a TCP address, e.g. '127.0.0.1:0' (the benchmark, which runs inside the lab namespace). */
  readonly listen?: string;
  /** The SubscribedAck config for a new attachment (default: allowlist, no rules). */
  readonly ackPolicy?: (sub: NonNullable<DaemonEventMsg['subscribed']>) => PolicyMsg;
}

export interface TestControlPlane {
  readonly events: RecordedEvent[];
  /** 'auto': ack every Subscribed with ackPolicy; 'never': never ack. */
  ackMode: 'auto' | 'never';
  /** BulkUpdate sent after SyncAck for each listed attachment (when set for its id). */
  readonly bulkOnSync: Map<string, PolicyMsg>;
  /** Sends a command on every open stream. */
  send(cmd: ControlCommandMsg): void;
  /** Resolves with the first recorded event (from index `from`) matching `pred`. */
  waitFor(pred: (e: RecordedEvent) => boolean, timeoutMs?: number, what?: string, from?: number): Promise<RecordedEvent>;
  openStreams(): number;
  /** Starts serving; resolves with the TCP port when `listen` was given (0 for a unix socket). */
  start(): Promise<number>;
  /** Drops every stream and stops serving. */
  stop(): Promise<void>;
}

export function createTestControlPlane(opts: TestControlPlaneOptions): TestControlPlane {
  let server: grpc.Server | undefined;
  const streams = new Set<grpc.ServerDuplexStream<DaemonEventMsg, ControlCommandMsg>>();
  let streamSeq = 0;
  const waiters = new Set<() => void>();
  const ackPolicy = opts.ackPolicy ?? (() => ({ mode: 'POLICY_MODE_ALLOWLIST' }));

  const cp: TestControlPlane = {
    events: [],
    ackMode: 'auto',
    bulkOnSync: new Map(),
    send(cmd) {
      for (const s of streams) s.write(cmd);
    },
    waitFor(pred, timeoutMs = 10_000, what = 'an event', from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = cp.events.slice(from).find(pred);
          if (hit) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(hit);
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`control plane: no ${what} within ${timeoutMs} ms; saw ${JSON.stringify(cp.events.slice(from).map((e) => e.msg.event))}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    openStreams: () => streams.size,
    async start() {
      if (opts.socketPath && existsSync(opts.socketPath)) unlinkSync(opts.socketPath);
      const s = new grpc.Server();
      s.addService(v1.ControlPlane.service, {
        Connect: (call: grpc.ServerDuplexStream<DaemonEventMsg, ControlCommandMsg>) => {
          const n = ++streamSeq;
          streams.add(call);
          call.on('data', (msg: DaemonEventMsg) => {
            cp.events.push({ at: performance.now(), stream: n, msg });
            if (msg.event === 'sync') {
              call.write({ id: '', sync_ack: {} });
              for (const a of msg.sync?.attachments ?? []) {
                const p = cp.bulkOnSync.get(a.id);
                if (p) call.write({ id: a.id, bulk_update: p });
              }
            } else if (msg.event === 'subscribed' && cp.ackMode === 'auto') {
              call.write({ id: msg.subscribed!.id, subscribed_ack: ackPolicy(msg.subscribed!) });
            }
            for (const w of [...waiters]) w();
          });
          const done = () => {
            streams.delete(call);
          };
          call.on('end', () => {
            done();
            call.end();
          });
          call.on('error', done);
          call.on('close', done);
        },
        QueryDns: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { allow: false }),
      });
      const where = opts.listen ?? `unix:${opts.socketPath}`;
      const port = await new Promise<number>((resolve, reject) => s.bindAsync(where, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
      server = s;
      return opts.listen ? port : 0;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      for (const st of streams) st.destroy();
      streams.clear();
      s.forceShutdown();
      if (opts.socketPath && existsSync(opts.socketPath)) unlinkSync(opts.socketPath);
    },
  };
  return cp;
}

/** Every event of one kind, as the control plane saw them. */
export function eventsOf<K extends DaemonEventMsg['event']>(cp: TestControlPlane, kind: K): RecordedEvent[] {
  return cp.events.filter((e) => e.msg.event === kind);
}
