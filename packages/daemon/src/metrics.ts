import { createServer, type Server } from 'node:http';
import { splitHostPort } from './attachments';

export interface MetricsServer {
  readonly address: string;
  close(): Promise<void>;
}

/** Serves Prometheus text at /metrics on host:port. */
export async function createMetricsServer(listen: string, render: () => string): Promise<MetricsServer> {
  const [host, port] = splitHostPort(listen);
  const server: Server = createServer((req, res) => {
    if (req.url === '/metrics' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(render());
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
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
