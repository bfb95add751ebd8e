// The metrics listener (metrics.listen): Prometheus text at /metrics, and the probes /healthz
// (the process answers) and /readyz (see Readiness) for a supervisor or a load balancer.

import { createServer, type Server } from 'node:http';
import { splitHostPort } from './attachments';

export interface MetricsServer {
  readonly address: string;
  close(): Promise<void>;
}

export type Readiness = { ready: true } | { ready: false; reason: string };

export interface MetricsEndpoints {
  render(): Promise<string>;
  readonly contentType: string;
  readiness(): Readiness;
}

function json(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** Serves /metrics, /healthz and /readyz on host:port (GET only). */
export async function createMetricsServer(listen: string, ep: MetricsEndpoints): Promise<MetricsServer> {
  const [host, port] = splitHostPort(listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
    } else if (path === '/metrics') {
      ep.render().then(
        (text) => res.writeHead(200, { 'content-type': ep.contentType, 'content-length': Buffer.byteLength(text) }).end(text),
        (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${(e as Error).message}\n`),
      );
    } else if (path === '/healthz') {
      json(res, 200, { alive: true });
    } else if (path === '/readyz') {
      const r = ep.readiness();
      json(res, r.ready ? 200 : 503, r);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  const address = typeof a === 'object' && a ? `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : listen;
  return {
    address,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
