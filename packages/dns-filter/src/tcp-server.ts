import type net from 'node:net';

import type { LimitedLogger } from './limited-logger';
import type { TcpConnectionTable } from './tcp-connections';

/** What one TCP connection of the filter needs from it. */
export interface TcpConnectionDeps {
  /** Handles one message; `send` answers it. Returns false when the message is dropped without an answer. */
  handle(msg: Buffer, client: { address: string; port: number; transport: 'tcp' }, send: (b: Buffer) => void): boolean;
  readonly table: TcpConnectionTable<net.Socket>;
  readonly idleTimeoutMs: number;
  readonly log: LimitedLogger;
}

/** A client pipelining more unanswered queries than this is cut off. */
const MAX_PIPELINED = 64;

/**
 * Serves DNS over one TCP connection (2-byte length prefix per message, RFC 1035 4.2.2).
 * The connection is tracked in `deps.table`, which may close it to make room for a newer
 * one; the number of queries in flight is kept there so that busy connections go last.
 */
export function serveTcpConnection(sock: net.Socket, deps: TcpConnectionDeps): void {
  const client = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0, transport: 'tcp' as const };
  const conn = deps.table.admit(sock, client.address);
  sock.setNoDelay(true);
  if (deps.idleTimeoutMs > 0) sock.setTimeout(deps.idleTimeoutMs, () => sock.destroy());
  let acc: Buffer = Buffer.alloc(0);
  let pending = 0;
  const done = (): void => {
    pending--;
    deps.table.busy(conn, -1);
  };
  const send = (b: Buffer): void => {
    done();
    if (sock.destroyed || !sock.writable) return;
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(b.length, 0);
    sock.write(Buffer.concat([len, b]));
  };
  sock.on('data', (chunk: Buffer) => {
    acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk]);
    while (acc.length >= 2) {
      const n = acc.readUInt16BE(0);
      if (acc.length < 2 + n) break;
      const msg = Buffer.from(acc.subarray(2, 2 + n));
      acc = acc.subarray(2 + n);
      if (pending >= MAX_PIPELINED) {
        sock.destroy(); // a client pipelining without reading: cut it off
        return;
      }
      pending++;
      deps.table.busy(conn, 1);
      let answered = true;
      try {
        answered = deps.handle(msg, client, send);
      } catch (e) {
        deps.log.log('error', 'tcp-handler', { err: e }, 'tcp handler failed');
      }
      if (!answered) done();
    }
  });
  sock.on('error', () => sock.destroy());
  sock.on('close', () => deps.table.remove(conn));
}
