// Behaviour against programmable upstreams (built on dns2's codec, independent
// of ours): TC=1 and TCP retry, failover, spoofed answers, injected records,
// proxy mode deadlines, cache, overload, garbage input. Loopback only.

import dgram from 'node:dgram';
import net from 'node:net';

import { type ResolvedInfo } from '@netfence/dns-filter';
import { domainRuleSetFromDns } from '@netfence/policy-engine';

import { Packet, answer, dig, filterStarter, freePort, loopbackAddress, sleep, startFakeUpstream, type FakeUpstream } from './helpers';

jest.setTimeout(30000);

const A = Packet.TYPE.A;
const AAAA = Packet.TYPE.AAAA;
const CNAME = Packet.TYPE.CNAME;

let up: FakeUpstream;
let slowGate: Promise<void> = Promise.resolve();

beforeAll(async () => {
  up = await startFakeUpstream(async (req, transport, rinfo) => {
    const q = req.questions[0]!;
    const name = String(q.name).toLowerCase();
    if (name === 'big.test') {
      if (transport === 'udp') return answer(req, [], { tc: true });
      return answer(
        req,
        Array.from({ length: 40 }, (_, i) => ({ name: q.name, type: A, address: `203.0.113.${i + 1}` })),
      );
    }
    if (name === 'bigedns.test') {
      // over 512 bytes, sent over UDP without TC (as if the upstream honoured a large EDNS size)
      return answer(req, Array.from({ length: 40 }, (_, i) => ({ name: q.name, type: A, address: `203.0.113.${i + 1}` })));
    }
    if (name === 'spoof.test') {
      const wrongId = answer(req, [{ name: q.name, type: A, address: '203.0.113.99' }]);
      wrongId.header.id = (req.header.id + 1) & 0xffff;
      up.udp.send(wrongId.toBuffer(), rinfo.port, rinfo.address);
      const wrongQ = answer(req, []);
      wrongQ.questions = [{ name: 'evil.test', type: A, class: 1 } as never];
      wrongQ.answers.push({ name: 'evil.test', type: A, class: 1, ttl: 300, address: '203.0.113.98' } as never);
      up.udp.send(wrongQ.toBuffer(), rinfo.port, rinfo.address);
      const other = dgram.createSocket('udp4');
      await new Promise<void>((r) => other.bind(0, up.address, () => r()));
      other.send(answer(req, [{ name: q.name, type: A, address: '203.0.113.97' }]).toBuffer(), rinfo.port, rinfo.address, () => other.close());
      await sleep(50);
      return answer(req, [{ name: q.name, type: A, address: '203.0.113.1' }]);
    }
    if (name === 'inject.test') {
      return answer(req, [
        { name: 'evil.test', type: A, address: '203.0.113.66' },
        { name: q.name, type: CNAME, domain: 'target.inject.test' },
        { name: 'target.inject.test', type: A, address: '203.0.113.2' },
        { name: 'unrelated.test', type: CNAME, domain: 'x.test' },
        { name: 'x.test', type: A, address: '203.0.113.67' },
      ]);
    }
    if (name === 'nx.test') {
      return answer(req, [], {
        rcode: 3,
        authorities: [{ name: 'test', type: Packet.TYPE.SOA, ttl: 600, primary: 'ns.test', admin: 'admin.test', serial: 1, refresh: 1, retry: 1, expiration: 1, minimum: 60 }],
      });
    }
    if (name === 'slow.test') {
      await slowGate;
    }
    if (q.type === AAAA) return answer(req, [{ name: q.name, type: AAAA, address: '2001:db8::1', ttl: 300 }]);
    return answer(req, [{ name: q.name, type: A, address: '203.0.113.1', ttl: 300 }]);
  });
});

afterAll(async () => {
  await up?.stop();
});

const start = filterStarter(() => ({ mode: 'allowlist', allow: ['*.test'], upstreams: [up.upstream], cacheSize: 0 }));

test('upstream TC=1 over UDP: the filter retries over TCP; a large answer reaches a TCP client in full', async () => {
  const seen: ResolvedInfo[] = [];
  const f = await start({ onResolved: (i) => void seen.push(i) });
  const r = await dig(f.address.address, f.address.port, 'big.test', 'A', ['+tcp']);
  expect(r.status).toBe('NOERROR');
  expect(r.answers).toHaveLength(40);
  expect(seen[0]!.addresses).toHaveLength(40);
  expect(f.stats().tcpFallbacks).toBe(1);
  expect(up.seen.filter((s) => s.name === 'big.test').map((s) => s.transport)).toEqual(['udp', 'tcp']);
});

test('an answer too large for a UDP client without EDNS gets TC=1; dig retries over TCP and gets it all', async () => {
  const f = await start();
  const udpOnly = await dig(f.address.address, f.address.port, 'bigedns.test', 'A', ['+noedns', '+ignore']);
  expect(udpOnly.flags).toContain('tc');
  expect(udpOnly.answers).toHaveLength(0);
  const r = await dig(f.address.address, f.address.port, 'bigedns.test', 'A', ['+noedns']);
  expect(r.answers).toHaveLength(40);
});

test('failover: first upstream refuses (ICMP unreachable), marked down, answered by the second at once', async () => {
  const deadAddr = loopbackAddress();
  const deadPort = await freePort(deadAddr);
  const f = await start({ upstreams: [`${deadAddr}:${deadPort}`, up.upstream], upstreamTimeoutMs: 2000, upstreamBackoffMs: 10000 });
  const t0 = Date.now();
  const r = await dig(f.address.address, f.address.port, 'a.test');
  expect(r.answers[0]?.data).toBe('203.0.113.1');
  expect(Date.now() - t0).toBeLessThan(1500); // did not wait for the timeout
  const st = f.stats();
  expect(st.upstreamErrors).toBe(1);
  expect(st.upstreams[0]).toMatchObject({ address: `${deadAddr}:${deadPort}`, up: false, failures: 1 });
  expect(st.upstreams[1]).toMatchObject({ up: true });
});

test('failover: first upstream silent (timeout), marked down, later queries skip it', async () => {
  const silent = await startFakeUpstream(() => undefined);
  try {
    const f = await start({ upstreams: [silent.upstream, up.upstream], upstreamTimeoutMs: 300, upstreamBackoffMs: 10000 });
    const t0 = Date.now();
    expect((await dig(f.address.address, f.address.port, 'a.test')).answers[0]?.data).toBe('203.0.113.1');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(f.stats().upstreamTimeouts).toBe(1);
    expect(f.stats().upstreams[0]).toMatchObject({ up: false, failures: 1 });
    const t1 = Date.now();
    expect((await dig(f.address.address, f.address.port, 'b.test')).status).toBe('NOERROR');
    expect(Date.now() - t1).toBeLessThan(250);
    expect(silent.seen.map((s) => s.name)).toEqual(['a.test']);
  } finally {
    await silent.stop();
  }
});

test('all upstreams dead: SERVFAIL', async () => {
  const deadAddr = loopbackAddress();
  const f = await start({ upstreams: [`${deadAddr}:${await freePort(deadAddr)}`], upstreamTimeoutMs: 200 });
  expect((await dig(f.address.address, f.address.port, 'a.test')).status).toBe('SERVFAIL');
  expect(f.stats().failed).toBe(1);
});

test('spoofed answers (wrong ID, wrong question, wrong source port) are dropped', async () => {
  const f = await start();
  const r = await dig(f.address.address, f.address.port, 'spoof.test');
  expect(r.answers.map((a) => a.data)).toEqual(['203.0.113.1']);
  // the wrong-port answer is already dropped by the kernel (connected upstream socket)
  expect(f.stats().spoofedDropped).toBeGreaterThanOrEqual(2);
});

test('records off the CNAME chain are stripped and never reach onResolved', async () => {
  const seen: ResolvedInfo[] = [];
  const f = await start({ allow: ['inject.test'], onResolved: (i) => void seen.push(i) });
  const r = await dig(f.address.address, f.address.port, 'inject.test');
  expect(r.status).toBe('NOERROR');
  expect(r.answers.map((a) => `${a.name} ${a.type} ${a.data}`)).toEqual(['inject.test CNAME target.inject.test', 'target.inject.test A 203.0.113.2']);
  expect(seen[0]!.addresses).toEqual(['203.0.113.2']);
  expect(seen[0]!.cnames).toEqual(['target.inject.test']);
});

test('cache: a hit is answered with a decreasing TTL and no upstream query; negative answers cached by SOA minimum', async () => {
  const f = await start({ cacheSize: 100, minTtlSec: 10, maxTtlSec: 60 });
  const name = `c${Date.now()}.test`;
  const first = await dig(f.address.address, f.address.port, name);
  expect(first.answers[0]?.ttl).toBe(60);
  await sleep(1100);
  const second = await dig(f.address.address, f.address.port, name);
  expect(second.answers[0]?.data).toBe('203.0.113.1');
  expect(second.answers[0]?.ttl).toBeLessThan(60);
  expect(up.seen.filter((s) => s.name === name)).toHaveLength(1);
  expect((await dig(f.address.address, f.address.port, 'nx.test')).status).toBe('NXDOMAIN');
  expect((await dig(f.address.address, f.address.port, 'nx.test')).status).toBe('NXDOMAIN');
  expect(up.seen.filter((s) => s.name === 'nx.test')).toHaveLength(1);
  expect(f.stats().cacheHits).toBe(2);
});

describe('proxy mode', () => {
  test('a slow callback hits the deadline: SERVFAIL', async () => {
    const f = await start({
      mode: 'proxy',
      decideTimeoutMs: 200,
      decide: () => new Promise((r) => setTimeout(() => r({ allow: true }), 1500)),
    });
    const t0 = Date.now();
    expect((await dig(f.address.address, f.address.port, 'a.test')).status).toBe('SERVFAIL');
    expect(Date.now() - t0).toBeLessThan(1200);
  });

  test('deny, allow-and-forward, allow-with-ips (synthesised), errors', async () => {
    const seen: ResolvedInfo[] = [];
    const calls: string[] = [];
    const f = await start({
      mode: 'proxy',
      onResolved: (i) => void seen.push(i),
      decide: async (name, qtype) => {
        calls.push(`${name}/${qtype}`);
        if (name === 'no.test') return { allow: false };
        if (name === 'ips.test') return { allow: true, ips: ['198.51.100.7', '2001:db8::7'], ttlSec: 120, addToFilter: true };
        if (name === 'nolearn.test') return { allow: true, addToFilter: false };
        if (name === 'boom.test') throw new Error('control plane down');
        return { allow: true };
      },
    });
    const { address, port } = f.address;
    expect((await dig(address, port, 'no.test')).status).toBe('REFUSED');
    expect(up.seen.some((s) => s.name === 'no.test')).toBe(false);
    expect((await dig(address, port, 'yes.test')).answers[0]?.data).toBe('203.0.113.1');
    const ips = await dig(address, port, 'ips.test', 'A', ['+tcp']);
    expect(ips.answers.map((a) => [a.data, a.ttl])).toEqual([['198.51.100.7', 120]]);
    const ips6 = await dig(address, port, 'ips.test', 'AAAA');
    expect(ips6.answers.map((a) => a.data)).toEqual(['2001:db8::7']);
    expect(up.seen.some((s) => s.name === 'ips.test')).toBe(false);
    expect((await dig(address, port, 'nolearn.test')).status).toBe('NOERROR');
    expect((await dig(address, port, 'boom.test')).status).toBe('SERVFAIL');
    expect(calls).toEqual(['no.test/A', 'yes.test/A', 'ips.test/A', 'ips.test/AAAA', 'nolearn.test/A', 'boom.test/A']);
    expect(seen.map((s) => [s.name, s.addresses.join(',')])).toEqual([
      ['yes.test', '203.0.113.1'],
      ['ips.test', '198.51.100.7'],
      ['ips.test', '2001:db8::7'],
    ]);
  });
});

test('over the in-flight bound: SERVFAIL and counted', async () => {
  let release!: () => void;
  slowGate = new Promise((r) => (release = r));
  const f = await start({ maxInFlight: 1 });
  const first = dig(f.address.address, f.address.port, 'slow.test');
  await sleep(150);
  expect((await dig(f.address.address, f.address.port, 'other.test')).status).toBe('SERVFAIL');
  release();
  expect((await first).status).toBe('NOERROR');
  expect(f.stats().overloaded).toBe(1);
});

test('garbage over UDP and TCP never takes the server down', async () => {
  const f = await start();
  const { address, port } = f.address;
  const sock = dgram.createSocket('udp4');
  let seed = 12345;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(rnd() * 700);
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
    if (len > 2 && i % 3 === 0) b[2] = b[2]! & 0x7f; // looks like a query
    sock.send(b, port, address);
    if (i % 200 === 0) await sleep(5);
  }
  // TCP: a bogus length prefix, a short frame, then hang up
  await new Promise<void>((resolve) => {
    const c = net.connect(port, address, () => {
      c.write(Buffer.from([0x00, 0x05, 1, 2, 3, 4, 5, 0xff, 0xff, 9, 9]));
      setTimeout(() => {
        c.destroy();
        resolve();
      }, 50);
    });
    c.on('error', () => resolve());
  });
  await sleep(100);
  sock.close();
  expect((await dig(address, port, 'after.test')).answers[0]?.data).toBe('203.0.113.1');
  expect((await dig(address, port, 'after.test', 'A', ['+tcp'])).status).toBe('NOERROR');
  expect(f.stats().invalid).toBeGreaterThan(0);
});

test('FORMERR for two questions, NOTIMP for another opcode, responses are never answered', async () => {
  const f = await start();
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const two = new Packet();
  two.header.id = 0x1111;
  two.questions.push({ name: 'a.test', type: A, class: 1 } as never, { name: 'b.test', type: A, class: 1 } as never);
  sock.send(two.toBuffer(), f.address.port, f.address.address);
  const notify = new Packet();
  notify.header.id = 0x2222;
  notify.header.opcode = 4;
  notify.questions.push({ name: 'a.test', type: Packet.TYPE.SOA, class: 1 } as never);
  sock.send(notify.toBuffer(), f.address.port, f.address.address);
  const resp = new Packet();
  resp.header.id = 0x3333;
  resp.header.qr = 1;
  resp.questions.push({ name: 'a.test', type: A, class: 1 } as never);
  sock.send(resp.toBuffer(), f.address.port, f.address.address);
  await sleep(300);
  sock.close();
  const byId = new Map(got.map((m) => [m.readUInt16BE(0), Packet.parse(m)]));
  expect(byId.get(0x1111)?.header.rcode).toBe(1);
  expect(byId.get(0x2222)?.header.rcode).toBe(4);
  expect(byId.has(0x3333)).toBe(false);
});

test('IPv6 listener; a rule set from policy-engine state (daemon style); upstreams changed live', async () => {
  const f = await start({
    address: '::1',
    rules: domainRuleSetFromDns({ mode: 'allowlist', allowDomains: [{ domain: 'v6.test', includeSubdomains: true }], denyDomains: [], upstreamServers: [] }),
    upstreams: [],
  });
  expect(f.address).toMatchObject({ address: '::1', family: 6 });
  expect((await dig('::1', f.address.port, 'x.v6.test')).status).toBe('SERVFAIL'); // no upstream yet
  f.update({ upstreams: [up.upstream] });
  expect((await dig('::1', f.address.port, 'x.v6.test')).answers[0]?.data).toBe('203.0.113.1');
  expect((await dig('::1', f.address.port, 'x.other.test', 'A', ['+tcp'])).status).toBe('REFUSED');
});
