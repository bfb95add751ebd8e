// TCP connection caps: idle connections cannot lock later TCP queries out (issue 15).
// Loopback only: the clients bind 127.x source addresses to look like many clients.

import net from 'node:net';

import dns2 from 'dns2';

import { dig, forwardingFilterStarter, loopbackAddress, sleep } from './helpers';

const { Packet } = dns2;

jest.setTimeout(60000);

const start = forwardingFilterStarter('203.0.113.10');

const opened: net.Socket[] = [];
afterEach(() => {
  for (const s of opened.splice(0)) s.destroy();
});

/** Opens `n` idle connections from `from` (a loopback address); resolves when all are connected. */
async function openIdle(host: string, port: number, n: number, from: string): Promise<net.Socket[]> {
  const out = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host, port, localAddress: from });
          s.on('error', () => s.destroy());
          s.once('connect', () => resolve(s));
          s.once('close', () => reject(new Error('closed before connecting')));
          opened.push(s);
        }),
    ),
  );
  return out;
}

/** One DNS query over an already open TCP connection; resolves with the answer's rcode, or 'closed'. */
function queryOn(sock: net.Socket, name: string, id: number): Promise<string> {
  return new Promise((resolve) => {
    const q = new Packet();
    q.header.id = id;
    q.header.rd = 1;
    q.questions.push({ name, type: Packet.TYPE.A, class: Packet.CLASS.IN } as never);
    const body = q.toBuffer();
    const len = Buffer.alloc(2);
    len.writeUInt16BE(body.length);
    let acc = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      acc = Buffer.concat([acc, d]);
      if (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        const r = Packet.parse(acc.subarray(2, 2 + acc.readUInt16BE(0)));
        resolve(r.header.id === id ? `rcode ${r.header.rcode} ${r.answers.map((a) => (a as { address?: string }).address).join(',')}` : 'wrong id');
      }
    });
    sock.once('close', () => resolve('closed'));
    sock.write(Buffer.concat([len, body]));
  });
}

const openCount = (socks: net.Socket[]): number => socks.filter((s) => !s.destroyed && s.readyState === 'open').length;

test('600 idle TCP connections from many clients: a fresh TCP query is still answered (server cap evicts the idlest)', async () => {
  const f = await start();
  const { address, port } = f.address;
  // 12 source addresses x 50 connections: under the per-client cap (64), over the server cap (512)
  const base = loopbackAddress().split('.').slice(0, 3).join('.');
  const idle: net.Socket[] = [];
  for (let i = 0; i < 12; i++) idle.push(...(await openIdle(address, port, 50, `${base}.${i + 1}`)));
  await sleep(200);
  const r = await dig(address, port, 'fresh.test', 'A', ['+tcp', '+time=2']);
  expect(r.status).toBe('NOERROR');
  expect(r.answers.map((a) => a.data)).toEqual(['203.0.113.10']);
  expect(f.stats().tcpConnections).toBeLessThanOrEqual(512);
  expect(f.stats().tcpEvicted).toBeGreaterThanOrEqual(600 - 512 + 1);
  // the first ones opened are the ones idle longest: they were closed
  expect(openCount(idle.slice(0, 600 - 512 + 1))).toBe(0);
});

test('one client with 600 idle TCP connections keeps at most maxTcpConnectionsPerClient; its fresh query is answered', async () => {
  const f = await start({ maxTcpConnectionsPerClient: 32 });
  const { address, port } = f.address;
  const from = loopbackAddress();
  const idle = await openIdle(address, port, 600, from);
  await sleep(200);
  expect(f.stats().tcpConnections).toBeLessThanOrEqual(32);
  expect(openCount(idle)).toBeLessThanOrEqual(32);
  // another client is not affected by the first one's connections
  const other = await openIdle(address, port, 1, loopbackAddress());
  expect(await queryOn(other[0]!, 'other.test', 7)).toBe('rcode 0 203.0.113.10');
  // and the greedy client itself still gets a fresh connection answered
  const fresh = await openIdle(address, port, 1, from);
  expect(await queryOn(fresh[0]!, 'fresh.test', 8)).toBe('rcode 0 203.0.113.10');
});

test('a connection with a query in flight is not the first victim', async () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const f = await start({
    mode: 'proxy',
    decide: async (name) => {
      if (name === 'slow.test') await gate;
      return { allow: true };
    },
    decideTimeoutMs: 20000,
    maxTcpConnections: 4,
  });
  const { address, port } = f.address;
  const [busy] = await openIdle(address, port, 1, loopbackAddress());
  const answerOnBusy = queryOn(busy!, 'slow.test', 1);
  await sleep(50);
  const later = [];
  for (let i = 0; i < 3; i++) later.push(...(await openIdle(address, port, 1, loopbackAddress())));
  // the server is full (4); two more arrive: the idle ones opened after the busy one go first
  for (let i = 0; i < 2; i++) later.push(...(await openIdle(address, port, 1, loopbackAddress())));
  await sleep(100);
  expect(f.stats().tcpEvicted).toBe(2);
  expect(busy!.destroyed).toBe(false);
  expect(openCount(later.slice(0, 2))).toBe(0);
  release();
  expect(await answerOnBusy).toBe('rcode 0 203.0.113.10');
});
