// End-to-end: dnsmasq as the upstream (its query log proves what was forwarded),
// dig as the client, over UDP and TCP, on loopback only.

import { type QueryEvent, type ResolvedInfo } from '@netfence/dns-filter';

import { dig, filterStarter, sleep, startDnsmasq, type Dnsmasq } from './helpers';

jest.setTimeout(30000);

let up: Dnsmasq;

beforeAll(async () => {
  up = await startDnsmasq([
    '--address=/pypi.org/203.0.113.10',
    '--address=/pypi.org/2001:db8::10',
    '--host-record=exact.test,203.0.113.20,2001:db8::20',
    '--host-record=sub.exact.test,203.0.113.21',
    '--host-record=target.test,203.0.113.30,2001:db8::30',
    '--cname=alias.test,target.test',
    '--cname=alias2.test,alias.test',
    '--host-record=ads.pypi.org,203.0.113.66',
    '--host-record=private.test,10.200.0.5',
    '--host-record=example.com,203.0.113.40',
    '--host-record=www.example.com,203.0.113.41',
    '--address=/other.test/203.0.113.50',
  ]);
});

afterAll(async () => {
  await up?.stop();
});

const start = filterStarter(() => ({ mode: 'allowlist', upstreams: [up.upstream], cacheSize: 0 }));

const both = [[], ['+tcp']] as const;

describe.each(both)('transport %p', (...transportFlags) => {
  const flags = transportFlags as string[];

  test('allowlist: wildcard covers subdomains and the apex; others REFUSED; deny wins', async () => {
    const f = await start({ allow: ['*.pypi.org', 'exact.test'], deny: ['ads.pypi.org'] });
    const { address, port } = f.address;
    const a = await dig(address, port, 'files.pypi.org', 'A', flags);
    expect(a.status).toBe('NOERROR');
    expect(a.answers.map((r) => r.data)).toEqual(['203.0.113.10']);
    expect((await dig(address, port, 'pypi.org', 'A', flags)).status).toBe('NOERROR');
    expect((await dig(address, port, 'ads.pypi.org', 'A', flags)).status).toBe('REFUSED');
    expect((await dig(address, port, 'exact.test', 'A', flags)).answers.map((r) => r.data)).toEqual(['203.0.113.20']);
    // exact rule does not cover subdomains
    expect((await dig(address, port, 'sub.exact.test', 'A', flags)).status).toBe('REFUSED');
    expect((await dig(address, port, 'other.test', 'A', flags)).status).toBe('REFUSED');
    // AAAA
    const aaaa = await dig(address, port, 'exact.test', 'AAAA', flags);
    expect(aaaa.answers.map((r) => r.data)).toEqual(['2001:db8::20']);
    const s = f.stats();
    expect(s.blocked).toBe(3);
    expect(s.allowed).toBe(4);
  });

  test('denylist: everything but denied names resolves', async () => {
    const f = await start({ mode: 'denylist', deny: ['*.example.com', 'ads.pypi.org'] });
    const { address, port } = f.address;
    expect((await dig(address, port, 'example.com', 'A', flags)).status).toBe('REFUSED'); // apex covered
    expect((await dig(address, port, 'www.example.com', 'A', flags)).status).toBe('REFUSED');
    expect((await dig(address, port, 'ads.pypi.org', 'A', flags)).status).toBe('REFUSED');
    expect((await dig(address, port, 'files.pypi.org', 'A', flags)).answers.map((r) => r.data)).toEqual(['203.0.113.10']);
  });

  test('disabled: forwards everything, rules ignored', async () => {
    const f = await start({ mode: 'disabled', deny: ['*.pypi.org'] });
    const r = await dig(f.address.address, f.address.port, 'files.pypi.org', 'A', flags);
    expect(r.answers.map((x) => x.data)).toEqual(['203.0.113.10']);
  });
});

test("netfence.v1's walk: at the same name a wildcard deny beats an exact allow", async () => {
  const f = await start({ allow: ['exact.test', 'sub.exact.test'], deny: ['*.exact.test'] });
  const { address, port } = f.address;
  expect((await dig(address, port, 'exact.test')).status).toBe('REFUSED');
  expect((await dig(address, port, 'other.exact.test')).status).toBe('REFUSED');
  expect((await dig(address, port, 'sub.exact.test')).status).toBe('NOERROR'); // a more specific name decides
});

test('more specific rule wins; an exact allow below a denied wildcard; blockResponse nxdomain', async () => {
  const f = await start({
    allow: ['*.pypi.org', 'www.example.com'],
    deny: ['*.example.com', 'ads.pypi.org'],
    blockResponse: 'nxdomain',
  });
  const { address, port } = f.address;
  expect((await dig(address, port, 'www.example.com')).status).toBe('NOERROR'); // exact allow under a denied wildcard
  expect((await dig(address, port, 'example.com')).status).toBe('NXDOMAIN');
  expect((await dig(address, port, 'ads.pypi.org')).status).toBe('NXDOMAIN');
});

test('blocked names never reach the upstream (dnsmasq query log)', async () => {
  const f = await start({ allow: ['exact.test'], deny: [] });
  const marker = `blocked-${Date.now()}.other.test`;
  expect((await dig(f.address.address, f.address.port, marker)).status).toBe('REFUSED');
  expect((await dig(f.address.address, f.address.port, marker, 'A', ['+tcp'])).status).toBe('REFUSED');
  expect((await dig(f.address.address, f.address.port, 'exact.test')).status).toBe('NOERROR');
  await sleep(200);
  const names = up.queriedNames();
  expect(names).toContain('exact.test');
  expect(names).not.toContain(marker);
});

test('CNAME chain: addresses at the end of the chain go to onResolved, TTLs clamped and rewritten', async () => {
  const seen: ResolvedInfo[] = [];
  const f = await start({
    allow: ['alias2.test'],
    minTtlSec: 42,
    maxTtlSec: 50,
    onResolved: async (info) => {
      seen.push(info);
    },
  });
  const r = await dig(f.address.address, f.address.port, 'alias2.test', 'A');
  expect(r.status).toBe('NOERROR');
  expect(r.answers.map((a) => [a.type, a.data])).toEqual([
    ['CNAME', 'alias.test'],
    ['CNAME', 'target.test'],
    ['A', '203.0.113.30'],
  ]);
  // dnsmasq gives TTL 0 for local records: clamped up to minTtl on every record sent
  expect(r.answers.every((a) => a.ttl === 42)).toBe(true);
  expect(seen).toHaveLength(1);
  expect(seen[0]).toMatchObject({ name: 'alias2.test', qtype: 'A', addresses: ['203.0.113.30'], ttlSec: 42, cnames: ['alias.test', 'target.test'] });
  const r6 = await dig(f.address.address, f.address.port, 'alias2.test', 'AAAA', ['+tcp']);
  expect(r6.answers.at(-1)?.data).toBe('2001:db8::30');
  expect(seen[1]?.addresses).toEqual(['2001:db8::30']);
});

test('hook failure gives SERVFAIL, never the answer', async () => {
  const f = await start({
    allow: ['exact.test'],
    onResolved: async () => {
      throw new Error('map full');
    },
  });
  const r = await dig(f.address.address, f.address.port, 'exact.test');
  expect(r.status).toBe('SERVFAIL');
  expect(r.answers).toEqual([]);
  expect((await dig(f.address.address, f.address.port, 'exact.test', 'A', ['+tcp'])).status).toBe('SERVFAIL');
  expect(f.stats().hookFailures).toBe(2);
});

test('the hook is awaited before the answer is released', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let answered = false;
  const f = await start({ allow: ['exact.test'], onResolved: () => gate });
  const p = dig(f.address.address, f.address.port, 'exact.test').then((r) => {
    answered = true;
    return r;
  });
  await sleep(300);
  expect(answered).toBe(false);
  release();
  expect((await p).status).toBe('NOERROR');
});

test('live update of mode and rules, no restart', async () => {
  const f = await start({ allow: ['exact.test'] });
  const { address, port } = f.address;
  expect((await dig(address, port, 'files.pypi.org')).status).toBe('REFUSED');
  f.update({ allow: ['*.pypi.org'] });
  expect((await dig(address, port, 'files.pypi.org')).status).toBe('NOERROR');
  expect((await dig(address, port, 'exact.test')).status).toBe('REFUSED');
  f.update({ mode: 'denylist', deny: ['*.pypi.org'] });
  expect((await dig(address, port, 'files.pypi.org')).status).toBe('REFUSED');
  expect((await dig(address, port, 'exact.test')).status).toBe('NOERROR');
  expect(() => f.update({ mode: 'bogus' as never })).toThrow(/NETFENCE_ERR_DNS_INVALID_OPTIONS/);
  expect(() => f.update({ allow: ['bad..name'] })).toThrow(/NETFENCE_ERR_DNS_INVALID_OPTIONS/);
  expect(f.mode).toBe('denylist'); // a failed update changed nothing
});

test('rebinding protection refuses private answers unless exact or listed', async () => {
  const f = await start({ allow: ['*.test', 'private.test'], rebindingProtection: true });
  const { address, port } = f.address;
  expect((await dig(address, port, 'private.test')).status).toBe('NOERROR'); // exact rule
  f.update({ allow: ['*.test'] });
  expect((await dig(address, port, 'private.test')).status).toBe('REFUSED');
  expect((await dig(address, port, 'exact.test')).status).toBe('NOERROR'); // public lab address is fine
  f.update({ rebindingAllowedNames: ['private.test'] });
  expect((await dig(address, port, 'private.test')).status).toBe('NOERROR');
  expect(f.stats().rebindingBlocked).toBe(1);
});

test('query events carry name, qtype, verdict, rule, rcode, latency, client', async () => {
  const events: QueryEvent[] = [];
  const f = await start({ allow: ['*.pypi.org'], deny: ['ads.pypi.org'], onQuery: (e) => events.push(e) });
  await dig(f.address.address, f.address.port, 'files.pypi.org');
  await dig(f.address.address, f.address.port, 'ads.pypi.org', 'AAAA', ['+tcp']);
  expect(events[0]).toMatchObject({
    name: 'files.pypi.org',
    qtype: 'A',
    verdict: 'allowed',
    rule: { domain: 'pypi.org', includeSubdomains: true, action: 'allow' },
    rcode: 'NOERROR',
    client: { address: '127.0.0.1', transport: 'udp' },
  });
  expect(events[0]!.latencyMs).toBeGreaterThanOrEqual(0);
  expect(events[1]).toMatchObject({ name: 'ads.pypi.org', qtype: 'AAAA', verdict: 'blocked', rcode: 'REFUSED', rule: { action: 'deny' } });
  expect(events[1]!.client.transport).toBe('tcp');
});

test('non-IN class is REFUSED; close() is idempotent', async () => {
  const f = await start({ mode: 'disabled' });
  const r = await dig(f.address.address, f.address.port, 'version.bind', 'TXT', ['-c', 'CH']);
  expect(r.status).toBe('REFUSED');
  await f.close();
  await f.close();
  expect(() => f.update({ mode: 'allowlist' })).toThrow(/NETFENCE_ERR_DNS_CLOSED/);
});
