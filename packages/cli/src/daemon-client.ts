import { connect as netConnect } from 'node:net';
import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { DaemonService } from '@netfence/proto';

/** A DaemonService client over the daemon's unix socket (gRPC over HTTP/2). */
export function createDaemonClient(socketPath: string, opts: { timeoutMs?: number } = {}): Client<typeof DaemonService> {
  const transport = createGrpcTransport({
    baseUrl: 'http://localhost',
    nodeOptions: { createConnection: () => netConnect(socketPath) },
    defaultTimeoutMs: opts.timeoutMs ?? 30_000,
    // One-shot commands: let the process end soon after the last call.
    idleConnectionTimeoutMs: 200,
  });
  return createClient(DaemonService, transport);
}
