// The DNS answer path against the real kernel: a name whose addresses rotate cannot hold more
// than dns.max_addresses_per_name entries in the allow map, and an answer served from the DNS
// server's response cache learns its addresses again before it is released (the map entry may
// have gone meanwhile). The rotating name is served by a dnsmasq of this test's own (lab
// namespace, hosts file rewritten and re-read on SIGHUP).

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabCgroup } from '@netfence/lab';
import { createDaemonLab, eventually, pinnedAllowV4, SERVERS, sleep, startDaemon, writeDaemonConfig, type DaemonLab, type DaemonProcess } from './support/daemon-lab';

jest.setTimeout(120_000);

const POLICY = `version: 1
policies:
  - name: rot
    match: { tenant: rot }
    mode: allowlist
    dns:
      mode: allowlist
    rules:
      - ALLOW rot.test
      - ALLOW cache.test
`;
const ROT_UPSTREAM = { addr: '10.200.2.2', port: 5300 };
const METRICS = '127.0.0.1:19475';
const CAP = 2;

let dl: DaemonLab;
let up: ChildProcess;
let hostsFile: string;

async function upstreamSays(name: string): Promise<string> {
  const r = await dl.run(dl.net, 'dig', ['+time=1', '+tries=1', '+short', `@${ROT_UPSTREAM.addr}`, '-p', String(ROT_UPSTREAM.port), name, 'A']);
  return r.stdout.trim();
}

/** Points `name` at `address` in the rotating upstream and waits until it answers so. */
async function point(name: string, address: string): Promise<void> {
  writeFileSync(hostsFile, `${address} ${name}\n`);
  up.kill('SIGHUP'); // dnsmasq re-reads its hosts files
  await eventually(async () => (await upstreamSays(name)) === address || undefined, `upstream answers ${name} -> ${address}`);
}

/** dig through the attachment's DNS server from inside its cgroup; the A answers. */
async function dig(server: string, name: string, cg: LabCgroup, flags: readonly string[] = []): Promise<string[]> {
  const [host, port] = [server.slice(0, server.lastIndexOf(':')), server.slice(server.lastIndexOf(':') + 1)];
  const r = await dl.run(dl.host, 'dig', ['+time=2', '+tries=1', '+short', ...flags, `@${host}`, '-p', port, name, 'A'], { cgroup: cg });
  return r.stdout.trim().split('\n').filter(Boolean);
}

async function metric(name: string, attachment: string): Promise<number> {
  const fetch = `require('http').get('http://${METRICS}/metrics', (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => process.stdout.write(b)); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
  const r = await dl.run(dl.host, 'node', ['-e', fetch]);
  const m = new RegExp(`^${name}\\{attachment="${attachment}"\\} (\\d+)$`, 'm').exec(r.stdout);
  if (!m) throw new Error(`no ${name} for ${attachment} in:\n${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

async function withDaemon(name: string, dns: Record<string, unknown>, body: (d: DaemonProcess, id: string, server: string, cg: LabCgroup) => Promise<void>): Promise<void> {
  const policy = join(dl.tmp, `${name}.policy.yaml`);
  writeFileSync(policy, POLICY);
  const d = await startDaemon(dl, writeDaemonConfig(dl, name, { policy_file: policy, metrics: { listen: METRICS }, dns: { upstream: [`${ROT_UPSTREAM.addr}:${ROT_UPSTREAM.port}`], max_addresses_per_name: CAP, rate_limit_qps: 0, ...dns } }));
  try {
    const cg = dl.cgroup(name);
    const { id, dns_address: server } = await d.api.attach({ cgroup_path: cg.path, metadata: { tenant: 'rot' } });
    await body(d, id, server, cg);
  } finally {
    await d.stop();
  }
}

beforeAll(async () => {
  dl = await createDaemonLab();
  hostsFile = join(dl.tmp, 'rot.hosts');
  writeFileSync(hostsFile, `${SERVERS[0]} rot.test\n`);
  up = dl.net.spawn('dnsmasq', ['--no-daemon', '--user=root', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${ROT_UPSTREAM.addr}`, `--port=${ROT_UPSTREAM.port}`, '--pid-file=', '--log-facility=/dev/null', `--addn-hosts=${hostsFile}`, '--local=/rot.test/cache.test/'], { stdio: 'ignore' });
  // up (and its SIGHUP handler installed) once it answers from the hosts file
  await eventually(async () => (await upstreamSays('rot.test')) === SERVERS[0] || undefined, 'the rotating upstream answers');
});

afterAll(async () => {
  up?.kill('SIGTERM');
  await dl?.close();
});

test(`a name rotating through ${SERVERS.length} addresses keeps at most ${CAP} of them in the map: the least recently used go, counted in the metrics`, async () => {
  // TTLs of 1 s, so that each query after a rotation misses the response cache; a grace of a
  // minute keeps every address the workload connected to: without the cap all of them stay.
  await withDaemon('cap', { min_ttl: '1s', max_ttl: '1s', grace: '1m' }, async (_d, id, server, cg) => {
    for (const address of SERVERS) {
      await point('rot.test', address);
      await sleep(1100); // the previous answer's cache entry lapses
      expect(await dig(server, 'rot.test', cg)).toEqual([address]);
      expect(await dl.canConnect(address, { cgroup: cg })).toBe(true); // and the kernel saw it used
    }
    const held = pinnedAllowV4(dl, id).filter((c) => (SERVERS as readonly string[]).includes(c.replace(/\/32$/, '')));
    expect(held.sort()).toEqual(SERVERS.slice(-CAP).map((a) => `${a}/32`).sort()); // the most recently used
    expect(await dl.canConnect(SERVERS[0], { cgroup: cg })).toBe(false);
    expect(await metric('netfence_dns_learned_evicted_total', id)).toBe(SERVERS.length - CAP);
    expect(await metric('netfence_dns_learned_addresses', id)).toBe(CAP);
  });
});

test('an answer served from the response cache puts its address back into the map before it is released', async () => {
  // Long TTLs: the answers stay cached. Three cache keys for one name (no EDNS, EDNS, EDNS+DO)
  // get three different answers from the rotating upstream; with a cap of 2 the third pushes
  // the first out of the map while its answer is still cached.
  await withDaemon('cache', { min_ttl: '1m', max_ttl: '1m' }, async (_d, id, server, cg) => {
    const [a1, a2, a3] = SERVERS;
    await point('cache.test', a1);
    expect(await dig(server, 'cache.test', cg, ['+noedns'])).toEqual([a1]);
    await point('cache.test', a2);
    expect(await dig(server, 'cache.test', cg, ['+edns=0', '+nodnssec'])).toEqual([a2]);
    await point('cache.test', a3);
    expect(await dig(server, 'cache.test', cg, ['+edns=0', '+dnssec'])).toEqual([a3]);
    expect(pinnedAllowV4(dl, id)).not.toContain(`${a1}/32`);
    expect(await dl.canConnect(a1, { cgroup: cg })).toBe(false);
    // upstream now says a3: an a1 answer can only come from the cache
    expect(await dig(server, 'cache.test', cg, ['+noedns'])).toEqual([a1]);
    expect(pinnedAllowV4(dl, id)).toContain(`${a1}/32`);
    expect(await dl.canConnect(a1, { cgroup: cg })).toBe(true);
  });
});
