// The filter's listeners: UDP and TCP bound on one address and port, messages handed
// to the query pipeline. TCP framing and the connection caps are tcp-server.ts and
// tcp-connections.ts.

import dgram from 'node:dgram';
import net from 'node:net';

import { DnsFilterError } from './dns-filter-error';
import type { LimitedLogger } from './limited-logger';
import type { Send } from './query-context';
import type { FilterLimits } from './settings';
import { createTcpConnectionTable, type TcpConnectionTable } from './tcp-connections';
import { serveTcpConnection } from './tcp-server';
import type { ClientInfo, DnsFilterAddress } from './types';

/** The pipeline's entry (see QueryPipeline.handle). */
export type HandleMessage = (msg: Buffer, client: ClientInfo, send: Send, tcp: boolean) => boolean;

export interface Listeners {
  /** The bound address (UDP and TCP). */
  readonly address: DnsFilterAddress;
  /** Open TCP connections and evictions. */
  readonly tcpConnections: Pick<TcpConnectionTable<net.Socket>, 'size' | 'evicted'>;
  /** Stops taking messages at once; resolves when both sockets are closed. Call once. */
  close(): Promise<void>;
}

/** Replies go to IP literals only: skip dns.lookup's nextTick per send. */
function literalLookup(address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, net.isIPv6(address) ? 6 : 4);
}

async function bindUdp(family: 4 | 6, address: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: literalLookup as never });
  await new Promise<void>((resolve, reject) => {
    const onErr = (e: Error): void => reject(e);
    sock.once('error', onErr);
    sock.bind(port, address, () => {
      sock.off('error', onErr);
      resolve();
    });
  });
  return sock;
}

async function listenTcp(server: net.Server, address: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onErr = (e: Error): void => reject(e);
    server.once('error', onErr);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', onErr);
      resolve();
    });
  });
}

/**
 * Binds UDP, then TCP on the port UDP got. With port 0 a port taken on TCP is retried
 * (up to 8 times) with a new one.
 */
async function bindBoth(limits: FilterLimits): Promise<{ udp: dgram.Socket; tcp: net.Server | undefined; port: number }> {
  const { address, family, port: wantPort } = limits;
  for (let attempt = 0; ; attempt++) {
    let udp: dgram.Socket | undefined;
    let tcp: net.Server | undefined;
    try {
      udp = await bindUdp(family, address, wantPort);
      const port = udp.address().port;
      if (limits.tcp) {
        // no tcp.maxConnections: it refuses new connections; the table evicts idle ones instead
        tcp = net.createServer({ allowHalfOpen: false, pauseOnConnect: false });
        await listenTcp(tcp, address, port);
      }
      return { udp, tcp, port };
    } catch (e) {
      udp?.close();
      tcp?.close();
      const inUse = (e as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (wantPort === 0 && attempt < 8 && inUse) continue;
      throw new DnsFilterError(inUse ? 'NETFENCE_ERR_DNS_ADDRESS_IN_USE' : 'NETFENCE_ERR_DNS_LISTEN_FAILED', `cannot listen on ${address}:${wantPort}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }
}

/** Binds UDP and TCP on one port and feeds their messages to `handle`. */
export async function startListeners(limits: FilterLimits, handle: HandleMessage, log: LimitedLogger): Promise<Listeners> {
  const { udp, tcp, port } = await bindBoth(limits);
  let closed = false;

  udp.on('message', (msg, rinfo) => {
    if (closed) return;
    const client: ClientInfo = { address: rinfo.address, port: rinfo.port, transport: 'udp' };
    try {
      handle(msg, client, (b) => udp.send(b, rinfo.port, rinfo.address), false);
    } catch (e) {
      // a bug must never take the server down
      log.log('error', 'udp-handler', { err: e }, 'udp handler failed');
    }
  });
  udp.on('error', (e) => log.log('warn', 'udp-socket', { err: e }, 'udp socket error'));
  try {
    udp.setRecvBufferSize(4 * 1024 * 1024);
    udp.setSendBufferSize(4 * 1024 * 1024);
  } catch {
    // best effort
  }

  const table = createTcpConnectionTable<net.Socket>(
    { maxTotal: limits.maxTcpConnections, maxPerClient: limits.maxTcpConnectionsPerClient },
    (sock) => sock.destroy(),
  );
  const tcpDeps = {
    handle: (msg: Buffer, client: ClientInfo, send: Send) => handle(msg, client, send, true),
    table,
    idleTimeoutMs: limits.tcpIdleTimeoutMs,
    log,
  };
  tcp?.on('connection', (sock) => {
    if (closed) {
      sock.destroy();
      return;
    }
    serveTcpConnection(sock, tcpDeps);
  });
  tcp?.on('error', (e) => log.log('warn', 'tcp-server', { err: e }, 'tcp server error'));

  return {
    address: { address: limits.address, port, family: limits.family },
    tcpConnections: table,
    close() {
      closed = true;
      return Promise.all([
        new Promise<void>((resolve) => {
          try {
            udp.close(() => resolve());
          } catch {
            resolve();
          }
        }),
        new Promise<void>((resolve) => {
          if (!tcp) return resolve();
          for (const s of [...table.sockets()]) s.destroy();
          tcp.close(() => resolve());
        }),
      ]).then(() => undefined);
    },
  };
}
