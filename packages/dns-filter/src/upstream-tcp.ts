// One DNS query to an upstream over TCP (the retry after a truncated UDP answer):
// 2-byte length framing, the answer checked for ID and question like a UDP one.

import net from 'node:net';

import type { UpstreamServer } from './upstream-server';
import { parseResponse, type ParsedResponse } from './wire';

export interface TcpQuery {
  readonly server: UpstreamServer;
  /** The full message; its ID is `id`. */
  readonly query: Buffer;
  readonly id: number;
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly timeoutMs: number;
  /** Counts answers that do not match the query (dropped; the real one is still awaited). */
  readonly counters: { spoofedDropped: number };
  /** The first matching answer; the socket is already destroyed. */
  onAnswer(buf: Buffer, parsed: ParsedResponse): void;
  /** Timeout, error, or closed without an answer; called at most once, never after onAnswer. */
  onFail(): void;
}

/** Connects and sends; returns the socket (destroy it to cancel: onFail follows). */
export function queryOverTcp(t: TcpQuery): net.Socket {
  const sock = net.connect({ host: t.server.host, port: t.server.port });
  let settled = false;
  let acc: Buffer = Buffer.alloc(0);
  const fail = (): void => {
    if (settled) return;
    settled = true;
    sock.destroy();
    t.onFail();
  };
  sock.setTimeout(t.timeoutMs, fail);
  sock.on('error', fail);
  sock.on('close', fail);
  sock.on('connect', () => {
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(t.query.length, 0);
    sock.write(Buffer.concat([len, t.query]));
  });
  sock.on('data', (chunk: Buffer) => {
    if (settled) return;
    acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk]);
    while (acc.length >= 2) {
      const n = acc.readUInt16BE(0);
      if (acc.length < 2 + n) return;
      const msg = acc.subarray(2, 2 + n);
      acc = acc.subarray(2 + n);
      if (n < 12 || ((msg[0]! << 8) | msg[1]!) !== t.id) {
        t.counters.spoofedDropped++;
        continue;
      }
      const parsed = parseResponse(msg, t.name, t.qtype, t.qclass);
      if (parsed === null) {
        t.counters.spoofedDropped++;
        continue;
      }
      settled = true;
      sock.destroy();
      t.onAnswer(Buffer.from(msg), parsed);
      return;
    }
  });
  return sock;
}
