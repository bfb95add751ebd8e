// "host:port", ":port", "[v6]:port", "unix:/path" or "/path".

import { ControlPlaneError } from './errors';

export type ListenTarget = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseListenAddress(addr: string): ListenTarget {
  const a = addr.trim();
  if (a.startsWith('unix:')) {
    const path = a.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new ControlPlaneError('NETFENCE_ERR_INVALID_ADDRESS', `empty unix socket path in "${addr}"`);
    return { kind: 'unix', path };
  }
  if (a.startsWith('/')) return { kind: 'unix', path: a };
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(a);
  if (!m) throw new ControlPlaneError('NETFENCE_ERR_INVALID_ADDRESS', `invalid listen address "${addr}" (want host:port, [v6]:port, :port or unix:/path)`);
  const port = Number(m[3]);
  if (port > 65535) throw new ControlPlaneError('NETFENCE_ERR_INVALID_ADDRESS', `port out of range in "${addr}"`);
  const host = m[1] ?? (m[2] === '' || m[2] === undefined ? '0.0.0.0' : m[2]);
  return { kind: 'tcp', host, port };
}
