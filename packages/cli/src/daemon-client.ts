import { connect as netConnect, type Socket } from 'node:net';
import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { DaemonService } from '@netfence/proto';

/** netfence.v1's CLI gives up connecting to the daemon's socket after 5 s. */
export const CONNECT_TIMEOUT_MS = 5_000;

/** A unix socket connection that fails with ETIMEDOUT when not connected within `timeoutMs`. */
function connectWithin(socketPath: string, timeoutMs: number): Socket {
  const s = netConnect(socketPath);
  const timer = setTimeout(() => s.destroy(Object.assign(new Error(`connect ETIMEDOUT ${socketPath}`), { code: 'ETIMEDOUT' })), timeoutMs);
  timer.unref();
  const clear = () => clearTimeout(timer);
  s.once('connect', clear);
  s.once('close', clear);
  return s;
}

/** A DaemonService client over the daemon's unix socket (gRPC over HTTP/2). */
export function createDaemonClient(socketPath: string, opts: { timeoutMs?: number | undefined; connectTimeoutMs?: number } = {}): Client<typeof DaemonService> {
  const transport = createGrpcTransport({
    baseUrl: 'http://localhost',
    nodeOptions: { createConnection: () => connectWithin(socketPath, opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS) },
    // An explicit `timeoutMs: undefined` means no deadline (a followed event stream).
    defaultTimeoutMs: 'timeoutMs' in opts ? opts.timeoutMs : 30_000,
    // One-shot commands: let the process end soon after the last call.
    idleConnectionTimeoutMs: 200,
  });
  return createClient(DaemonService, transport);
}
