// The DNS timings of one attachment's server: the upstream's share of an answer's latency is
// told apart from the map write (onResolved) of the same query. On loopback only, against a
// fake upstream.

import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { startFilterDnsServer } from './dns-filter-server';
import { createWorkloadLog } from './workload-log';

const MAP_WRITE_MS = 300;

function query(id: number, name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]); // A, IN
}

interface UpstreamReply {
  readonly delayMs: number;
  /** false: NOERROR without an answer (no data for the name). */
  readonly address: boolean;
}

/** A fake upstream answering each A query as `reply()` says, with 198.51.100.7 (TTL 1 s). */
async function fakeUpstream(reply: () => UpstreamReply): Promise<{ address: string; close: () => void }> {
  const s = createSocket('udp4');
  s.on('message', (q, rinfo) => {
    const r = reply();
    const a = Buffer.from(q);
    a.writeUInt16BE(0x8180, 2); // QR RD RA, NOERROR
    a.writeUInt16BE(r.address ? 1 : 0, 6); // ANCOUNT
    const rr = r.address ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 198, 51, 100, 7]) : Buffer.alloc(0);
    setTimeout(() => s.send(Buffer.concat([a, rr]), rinfo.port, rinfo.address), r.delayMs);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { address: `127.0.0.1:${s.address().port}`, close: () => s.close() };
}

function ask(server: string, id: number, name: string): Promise<Buffer> {
  const [host, port] = [server.slice(0, server.lastIndexOf(':')), Number(server.slice(server.lastIndexOf(':') + 1))];
  const c: Socket = createSocket('udp4');
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer for ${name}`)), 5000);
    c.on('message', (m) => {
      clearTimeout(timer);
      resolve(m);
    });
    c.send(query(id, name), port, host);
  }).finally(() => c.close());
}

interface Timed {
  readonly server: { address: string; close: () => Promise<void> };
  readonly seen: { upstream: number[]; mapWrite: number[] };
  close(): Promise<void>;
}

/** One attachment's server for `timed.test` on loopback, its map write taking `mapWriteMs()`, recording its timings. */
async function timedServer(reply: () => UpstreamReply, mapWriteMs: () => number): Promise<Timed> {
  const upstream = await fakeUpstream(reply);
  const workloadLog = createWorkloadLog(pino({ level: 'silent' }));
  const seen = { upstream: [] as number[], mapWrite: [] as number[] };
  const server = await startFilterDnsServer(
    {
      attachmentId: 'att-timing',
      host: '127.0.0.1',
      port: 0,
      policy: { mode: 'allowlist', allowDomains: [{ domain: 'timed.test', includeSubdomains: false }], denyDomains: [], upstreamServers: [upstream.address] },
      onResolved: () => new Promise((r) => setTimeout(r, mapWriteMs())),
      decide: () => Promise.resolve({ allow: false }),
    },
    {
      upstreams: [],
      minTtlSec: 1,
      maxTtlSec: 3600,
      blockedRcode: 'refused',
      queryTimeoutMs: 2000,
      logger: pino({ level: 'silent' }),
      workloadLog,
      timings: { upstream: (s) => seen.upstream.push(s), mapWrite: (s) => seen.mapWrite.push(s) },
    },
  );
  return {
    server,
    seen,
    async close() {
      await server.close();
      workloadLog.close();
      upstream.close();
    },
  };
}

test('the upstream histogram gets the answer latency less its own map write, also with queries for one name in flight together', async () => {
  const { server, seen, close } = await timedServer(() => ({ delayMs: 0, address: true }), () => MAP_WRITE_MS);
  try {
    const answers = await Promise.all([1, 2, 3].map((id) => ask(server.address, id, 'timed.test')));
    for (const a of answers) expect(a.readUInt16BE(6)).toBe(1); // answered, one address
    expect(seen.mapWrite).toHaveLength(3);
    for (const s of seen.mapWrite) expect(s).toBeGreaterThanOrEqual((MAP_WRITE_MS - 5) / 1000);
    // Each query's map write is taken out of its own latency: what is left is the loopback
    // upstream's share, far under the map write (with the map write left in, each would be over it).
    expect(seen.upstream).toHaveLength(3);
    for (const s of seen.upstream) expect(s).toBeLessThan(MAP_WRITE_MS / 2 / 1000);
  } finally {
    await close();
  }
});

test("a map write that outlived its query (the hook timed out: SERVFAIL) is not taken out of a later query's upstream time", async () => {
  const HOOK_TIMEOUT_MS = 2000; // dns-filter's default for onResolved
  // The first answer has an address whose map write outlives the hook timeout; the second, 100 ms
  // late, has none (no map write of its own).
  const replies: UpstreamReply[] = [{ delayMs: 0, address: true }, { delayMs: 100, address: false }];
  const { server, seen, close } = await timedServer(() => replies.shift()!, () => HOOK_TIMEOUT_MS + 500);
  try {
    const failed = await ask(server.address, 1, 'timed.test');
    expect(failed.readUInt16BE(2) & 0xf).toBe(2); // SERVFAIL: the map write took too long
    await new Promise((r) => setTimeout(r, 700)); // that map write ends meanwhile; the 1 s TTL is over too
    expect(seen.mapWrite).toHaveLength(1);
    const answered = await ask(server.address, 2, 'timed.test');
    expect(answered.readUInt16BE(2) & 0xf).toBe(0);
    expect(answered.readUInt16BE(6)).toBe(0);
    // All of the second query's time was its upstream's 100 ms; none of the first one's map write is its.
    expect(seen.upstream).toHaveLength(1);
    expect(seen.upstream[0]).toBeGreaterThanOrEqual(0.095);
  } finally {
    await close();
  }
});
