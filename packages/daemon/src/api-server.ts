import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import http2 from 'node:http2';
import { create } from '@bufbuild/protobuf';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { ConnectError, type ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { AttachResponseSchema, DaemonService, ListResponseSchema, type AttachmentInfo, type AutoAttachRules, type DaemonStatus, type FirewallEvent } from '@netfence/proto';
import type { Logger } from 'pino';
import { DaemonError } from './daemon-error';
import { checkAttachRequest, checkId, checkPageToken, MAX_REQUEST_BYTES, quoteInput } from './request-limits';
import type { TcDirection } from './state-store';

function grpcError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  return DaemonError.from(e).toConnectError();
}

async function guard<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw grpcError(e);
  }
}

export interface AttachInput {
  readonly interfaceName?: string;
  readonly cgroupPath?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly tcDirection?: TcDirection;
  /** Judge at XDP on the interface (falls back to TC where the kernel refuses native XDP). */
  readonly xdp?: boolean;
}

export interface ListPage {
  readonly attachments: AttachmentInfo[];
  readonly nextPageToken: string;
  readonly totalCount: number;
}

/** What the DaemonService API needs of a daemon (declared here, so the server depends on no daemon module). */
export interface DaemonApi {
  attach(input: AttachInput): Promise<{ id: string; dnsAddress: string }>;
  detach(id: string): Promise<void>;
  list(pageSize: number, pageToken: string): ListPage;
  status(): DaemonStatus;
  /** WatchEvents: recent drop events and DNS decisions, then live ones (see event-hub.ts). */
  watchEvents(opts: { attachmentId: string; recent: number; noFollow: boolean; signal: AbortSignal }): AsyncIterable<FirewallEvent>;
  /** The auto-attach rules in force (config `auto_attach`, then SetAutoAttachRules). */
  getAutoAttachRules(): AutoAttachRules;
  /** Replaces them, validated whole (INVALID_ARGUMENT naming the bad rule); returns those in force. */
  setAutoAttachRules(rules: AutoAttachRules): AutoAttachRules;
}

export function daemonRoutes(daemon: DaemonApi) {
  return (router: ConnectRouter) =>
    router.service(DaemonService, {
      attach: (req) =>
        guard(async () => {
          const dir = req.tcDirection;
          const interfaceName = req.target.case === 'interfaceName' ? req.target.value : undefined;
          const cgroupPath = req.target.case === 'cgroupPath' ? req.target.value : undefined;
          checkAttachRequest({ interfaceName, cgroupPath, tcDirection: dir, metadata: req.metadata });
          if (dir && dir !== 'ingress' && dir !== 'egress') throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `tc_direction ${quoteInput(dir)} must be ingress or egress`);
          const r = await daemon.attach({ interfaceName, cgroupPath, metadata: req.metadata, tcDirection: (dir || undefined) as TcDirection | undefined, xdp: req.xdp || undefined });
          return create(AttachResponseSchema, r);
        }),
      detach: (req) =>
        guard(async () => {
          checkId(req.id);
          await daemon.detach(req.id);
          return create(EmptySchema, {});
        }),
      list: (req) =>
        guard(() => {
          checkPageToken(req.pageToken);
          return create(ListResponseSchema, daemon.list(req.pageSize, req.pageToken));
        }),
      getStatus: () => guard(() => daemon.status()),
      getAutoAttachRules: () => guard(() => daemon.getAutoAttachRules()),
      setAutoAttachRules: (req) => guard(() => daemon.setAutoAttachRules(req)),
      async *watchEvents(req, ctx) {
        try {
          if (req.attachmentId) checkId(req.attachmentId);
        } catch (e) {
          throw grpcError(e);
        }
        yield* daemon.watchEvents({ attachmentId: req.attachmentId, recent: req.recent, noFollow: req.noFollow, signal: ctx.signal });
      },
    });
}

/** Is something answering on this unix socket? */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Serves DaemonService (gRPC, HTTP/2 cleartext) on a unix socket with the given mode. */
export async function startApiServer(path: string, mode: number, daemon: DaemonApi, logger: Logger): Promise<{ close(): Promise<void> }> {
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new DaemonError('NETFENCE_ERR_CONFIG', `socket path ${path} exists and is not a socket`);
    if (await socketInUse(path)) throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', `another daemon is serving ${path}`);
    unlinkSync(path); // stale socket of a daemon that died
  }
  const server = http2.createServer(connectNodeAdapter({ routes: daemonRoutes(daemon), readMaxBytes: MAX_REQUEST_BYTES }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  const oldUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(oldUmask);
  }
  chmodSync(path, mode);
  logger.info({ socket: path, mode: mode.toString(8) }, 'DaemonService listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.close();
        server.close(() => {
          try {
            unlinkSync(path);
          } catch {
            /* already gone */
          }
          resolve();
        });
        setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, 1000).unref();
      }),
  };
}
