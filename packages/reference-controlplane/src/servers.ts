// The listeners: gRPC over HTTP/2 (h2c, or TLS/mTLS) and the admin API over HTTP/1.1 (or
// HTTPS), on host:port or a unix socket; and closing them all.

import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { createContextValues } from '@connectrpc/connect';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { ControlPlaneError } from './errors';
import { parseListenAddress } from './listen-address';
import type { Logger } from './logger';
import { PEER_KEY } from './rpc';
import type { ListeningAddress, TlsOptions } from './types';

export interface ServersOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly adminHandler: () => http.RequestListener;
  readonly tls: TlsOptions | undefined;
  /** Only for the start-up log line. */
  readonly auth: boolean;
  readonly log: Logger;
  readonly isClosed: () => boolean;
}

export interface Servers {
  listen(addr: string): Promise<ListeningAddress>;
  listenAdmin(addr: string): Promise<ListeningAddress>;
  /** gRPC listeners bound and not closed. */
  grpcListeners(): number;
  /** Closes every listener started so far, cutting open connections. */
  close(): Promise<void>;
}

type AnyServer = http.Server | http2.Http2Server | https.Server | http2.Http2SecureServer;

function listenOn(server: AnyServer, addr: string, scheme: string): Promise<ListeningAddress> {
  const target = parseListenAddress(addr);
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(new ControlPlaneError('NETFENCE_ERR_LISTEN', `cannot listen on ${addr}: ${e.message}`, { cause: e }));
    server.once('error', onError);
    const done = (): void => {
      server.off('error', onError);
      if (target.kind === 'unix') return resolve({ url: `unix:${target.path}`, path: target.path });
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve({ url: `${scheme}://${host}:${a.port}`, host: a.address, port: a.port });
    };
    if (target.kind === 'unix') {
      fsp
        .rm(target.path, { force: true })
        .catch(() => undefined)
        .then(() => server.listen(target.path, done));
    } else server.listen(target.port, target.host, done);
  });
}

function tlsServerOptions(tls: TlsOptions | undefined) {
  if (!tls) return undefined;
  return { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}), requestCert: !!tls.ca, rejectUnauthorized: !!tls.ca };
}

function invalidTls(e: unknown): ControlPlaneError {
  return new ControlPlaneError('NETFENCE_ERR_TLS', `invalid TLS material: ${(e as Error).message}`, { cause: e });
}

export function createServers(opts: ServersOptions): Servers {
  const { log } = opts;
  const open: { close: () => Promise<void> }[] = [];
  let grpcListeners = 0;
  const checkOpen = (): void => {
    if (opts.isClosed()) throw new ControlPlaneError('NETFENCE_ERR_CLOSED', 'control plane is closed');
  };

  async function listen(addr: string): Promise<ListeningAddress> {
    checkOpen();
    const handler = connectNodeAdapter({
      routes: opts.routes,
      contextValues: (req) => createContextValues().set(PEER_KEY, `${req.socket?.remoteAddress ?? 'unix'}:${req.socket?.remotePort ?? ''}`),
    });
    const settings = { maxConcurrentStreams: 100_000 };
    const tls = tlsServerOptions(opts.tls);
    let server: http2.Http2Server | http2.Http2SecureServer;
    try {
      server = tls ? http2.createSecureServer({ ...tls, settings }, handler) : http2.createServer({ settings }, handler);
    } catch (e) {
      throw invalidTls(e);
    }
    const h2sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (sess: http2.ServerHttp2Session) => {
      h2sessions.add(sess);
      sess.on('close', () => h2sessions.delete(sess));
    });
    const bound = await listenOn(server, addr, tls ? 'https' : 'http');
    grpcListeners++;
    open.push({
      close: () =>
        new Promise<void>((resolve) => {
          grpcListeners--;
          server.close(() => resolve());
          for (const sess of h2sessions) sess.destroy();
        }),
    });
    log.info({ url: bound.url, tls: !!tls, mtls: !!opts.tls?.ca, auth: opts.auth }, 'control plane listening');
    return bound;
  }

  async function listenAdmin(addr: string): Promise<ListeningAddress> {
    checkOpen();
    const tls = tlsServerOptions(opts.tls);
    let server: http.Server | https.Server;
    try {
      server = tls ? https.createServer(tls, opts.adminHandler()) : http.createServer(opts.adminHandler());
    } catch (e) {
      throw invalidTls(e);
    }
    const bound = await listenOn(server, addr, tls ? 'https' : 'http');
    open.push({
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    });
    log.info({ url: bound.url }, 'admin API listening');
    return bound;
  }

  return {
    listen,
    listenAdmin,
    grpcListeners: () => grpcListeners,
    async close() {
      await Promise.all(open.splice(0).map((s) => s.close()));
    },
  };
}
