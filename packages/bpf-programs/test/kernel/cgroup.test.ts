// Cgroup filter with real traffic: clients run in the workload netns AND a lab
// cgroup carrying connect4/6, sendmsg4/6, recvmsg4/6, getpeername4/6 and the
// cgroup_skb/egress backstop. Every mode, every bypass, DNS redirection with
// the source restored, severing with the iterators (the sever object, loaded
// against the attachment's pinned maps as the daemon does), dry-run.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { attachIter, loadCollectionAsync, readIterator, withNetns, type BpfLink } from '@netfence/bpf-loader';
import type { LabCgroup } from '@netfence/lab';
import {
  CGROUP_ONLY_MAPS,
  hostPinnedMaps,
  encodeSeverConfig,
  objectPath,
  OBJECTS,
  SEVER_PROGRAMS,
  SEVER_SHARED_MAPS,
  type SeverTarget,
} from '@netfence/bpf-programs';
import { assertKernelTestable, makePinDir, Policy, removePinDir, sleep, spawnIn, udpFlood, type Probe } from './helpers';
import { ADDR, configFor, createTopology, dnsFlood, DNS_FLOOD, oks, PORT, PROBES, runProbes, type Topology } from './topology';

jest.setTimeout(30_000);

const cfg = configFor(22);

const P = {
  ...PROBES,
  udpConnT: { kind: 'udp', addr: ADDR.t4, port: PORT.udp, connect: true },
  mappedS: { kind: 'tcp', addr: `::ffff:${ADDR.s4}`, port: PORT.tcp },
  mappedT: { kind: 'tcp', addr: `::ffff:${ADDR.t4}`, port: PORT.tcp },
  mappedUdpT: { kind: 'udp', addr: `::ffff:${ADDR.t4}`, port: PORT.udp },
  metadata: { kind: 'tcp', addr: '169.254.169.254', port: 80, timeout: 0.3 },
  dnsUdpConn: { kind: 'udp', addr: ADDR.r4, port: 53, connect: true },
  dnsMapped: { kind: 'udp', addr: `::ffff:${ADDR.r4}`, port: 53 },
} satisfies Record<string, Probe>;
type Name = keyof typeof P;

describe('cgroup filter with real traffic', () => {
  let topo: Topology;
  let pol: Policy;
  let cg: LabCgroup;
  let cgroupId: bigint;
  let pinDir: string | undefined;
  const links: BpfLink[] = [];

  beforeAll(async () => {
    assertKernelTestable();
    topo = await createTopology();
    cg = topo.lab.cgroup('wl');
    cgroupId = statSync(cg.path, { bigint: true }).ino;
    // the host maps are pinned (as the daemon does): the sever object reuses them
    pinDir = makePinDir('cg');
    // slot 5: the program reads it from the cgroup's storage, nothing assumes slot 1
    pol = Policy.load('cgroup', { pinMaps: { dir: pinDir, maps: hostPinnedMaps('cgroup') }, slot: 5 });
    pol.watch();
    links.push(...pol.attachCgroup(cg.path));
  });
  afterAll(async () => {
    for (const l of links) l.close();
    pol?.close();
    if (pinDir) removePinDir(pinDir);
    await topo?.lab.close();
  });

  const run = (names: Name[], inCgroup = true) => runProbes(topo, P, names, inCgroup ? cg : undefined);

  it('disabled: everything passes and is counted', async () => {
    pol.setConfig(cfg('DISABLED'));
    const before = pol.stats();
    const r = await run(['tcpS', 'tcpT', 'udpT', 'pingT', 'tcp6T', 'dnsUdp']);
    expect(oks(r)).toEqual({ tcpS: true, tcpT: true, udpT: true, pingT: true, tcp6T: true, dnsUdp: true });
    expect(r.dnsUdp.data).toBe('ROGUE:hello');
    expect(pol.stats().allowed).toBeGreaterThan(before.allowed);
  });

  it('allowlist: allowed destinations pass, every bypass fails with EPERM and is counted', async () => {
    pol.allow(`${ADDR.s4}/32`, `${ADDR.s6}/128`);
    pol.setConfig(cfg('ALLOWLIST'));
    pol.drain();
    const before = pol.stats();
    const r = await run(['tcpS', 'udpS', 'pingS', 'tcp6S', 'mappedS', 'tcpT', 'udpT', 'udpConnT', 'pingT', 'tcp6T', 'udp6T', 'ping6T', 'mappedT', 'mappedUdpT', 'metadata', 'ownUdp']);
    expect(oks(r)).toEqual({
      tcpS: true,
      udpS: true,
      pingS: true,
      tcp6S: true,
      mappedS: true,
      tcpT: false,
      udpT: false,
      udpConnT: false,
      pingT: false,
      tcp6T: false,
      udp6T: false,
      ping6T: false,
      mappedT: false,
      mappedUdpT: false,
      metadata: false,
      ownUdp: true,
    });
    // decided at the socket or by the backstop: the caller sees EPERM, nothing times out
    for (const n of ['tcpT', 'udpT', 'udpConnT', 'pingT', 'tcp6T', 'udp6T', 'ping6T', 'mappedT', 'mappedUdpT', 'metadata'] as const) {
      expect([n, r[n].err]).toEqual([n, 'EPERM']);
    }
    const after = pol.stats();
    expect(after.blocked - before.blocked).toBeGreaterThanOrEqual(10n);
    await sleep(30);
    const ev = pol.drain();
    const seen = new Set(ev.map((e) => `${e.hook} ${e.reason} ${e.family} ${e.dstAddr} ${e.dstPort}`));
    for (const s of [
      `CONNECT NOT_ALLOWED 4 ${ADDR.t4} ${PORT.tcp}`,
      `SENDMSG NOT_ALLOWED 4 ${ADDR.t4} ${PORT.udp}`,
      `CONNECT NOT_ALLOWED 4 ${ADDR.t4} ${PORT.udp}`,
      `SKB NOT_ALLOWED 4 ${ADDR.t4} 0`,
      `CONNECT NOT_ALLOWED 6 ${ADDR.t6} ${PORT.tcp}`,
      `SKB NOT_ALLOWED 6 ${ADDR.t6} 0`,
      `CONNECT NOT_ALLOWED 4 ${ADDR.t4} ${PORT.tcp}`,
      `SENDMSG NOT_ALLOWED 4 ${ADDR.t4} ${PORT.udp}`,
      `CONNECT LINK_LOCAL 4 169.254.169.254 80`,
    ]) {
      expect(seen).toContain(s);
    }
    expect(ev.every((e) => e.attachmentId === 22 && e.cgroupId === cgroupId)).toBe(true);
    expect(ev.filter((e) => e.hook === 'CONNECT').every((e) => e.pid > 0)).toBe(true);
  });

  it('the filter is scoped to the cgroup: the same netns outside it is not filtered', async () => {
    const r = await run(['tcpT', 'pingT'], false);
    expect(oks(r)).toEqual({ tcpT: true, pingT: true });
  });

  it('DNS to another resolver is redirected to the attachment DNS server, and the answer appears to come from the resolver asked', async () => {
    pol.setConfig(cfg('ALLOWLIST', { dnsFilter: true }));
    const before = pol.stats();
    const r = await run(['dnsUdp', 'dnsUdpConn', 'dnsTcp', 'dot', 'dns6', 'dnsMapped']);
    expect(r.dnsUdp).toEqual({ ok: true, data: 'OWN:hello', from: [ADDR.r4, 53] });
    expect(r.dnsUdpConn).toEqual({ ok: true, data: 'OWN:hello', from: [ADDR.r4, 53] });
    expect(r.dnsTcp).toEqual({ ok: true, data: 'OWN:hello' });
    expect(r.dns6).toEqual({ ok: true, data: 'OWN6:hello', from: [ADDR.r6, 53] });
    expect(r.dnsMapped).toEqual({ ok: true, data: 'OWN:hello', from: [`::ffff:${ADDR.r4}`, 53] });
    expect(r.dot).toMatchObject({ ok: false, err: 'EPERM' });
    const after = pol.stats();
    expect(after.dnsRedirected - before.dnsRedirected).toBeGreaterThanOrEqual(5n);
    expect(after.byReason.DNS_BYPASS - before.byReason.DNS_BYPASS).toBeGreaterThanOrEqual(1n);
  });

  it('a UDP flood to a resolver, redirected to the own DNS server: the backstop lets rate * time + burst through, the rest fails with EPERM and is counted', async () => {
    const { limit, count } = DNS_FLOOD;
    const { flood: f, received, windowS, before, after } = await dnsFlood(
      topo,
      pol,
      cfg,
      () => udpFlood(topo.lab, topo.w, ADDR.r4, 53, count, cg),
      async () => expect(oks(await run(['tcpS']))).toEqual({ tcpS: true }),
    );
    const limited = after.dnsRateLimited - before.dnsRateLimited;
    expect(f.sent + f.errors).toBe(count);
    expect(after.dnsRedirected - before.dnsRedirected).toBe(BigInt(count)); // every datagram went to the own server...
    expect(BigInt(f.errors)).toBe(limited); // ... and each one over the limit failed with EPERM
    expect(received).toBeGreaterThanOrEqual(limit.burst);
    expect(received).toBeLessThanOrEqual(limit.burst + Math.ceil(limit.rateQps * windowS) + 1);
    expect(after.blocked).toBe(before.blocked);
  });

  it('a raw-socket DNS query to another resolver is dropped by the backstop', async () => {
    pol.setConfig(cfg('DENYLIST', { dnsFilter: true }));
    pol.drain();
    const child = spawnIn(topo.lab, topo.w, 'python3', ['-c', RAW_DNS, ADDR.r4], cg);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.on('exit', r));
    expect(err).toBe('');
    expect(out.trim()).toBe('EPERM');
    await sleep(30);
    expect(pol.drain().some((e) => e.hook === 'SKB' && e.reason === 'DNS_BYPASS' && e.dstAddr === ADDR.r4 && e.dstPort === 53)).toBe(true);
  });

  it('denylist and block_all', async () => {
    pol.deny(`${ADDR.t4}/32`);
    pol.setConfig(cfg('DENYLIST'));
    let r = await run(['tcpS', 'tcpT', 'pingT', 'mappedT', 'tcp6T']);
    expect(oks(r)).toEqual({ tcpS: true, tcpT: false, pingT: false, mappedT: false, tcp6T: true });
    pol.setConfig(cfg('BLOCK_ALL'));
    r = await run(['tcpS', 'pingS', 'tcp6S', 'ownUdp']);
    expect(oks(r)).toEqual({ tcpS: false, pingS: false, tcp6S: false, ownUdp: true });
    pol.remove('deny', `${ADDR.t4}/32`);
  });

  it('dry-run drops nothing and reports each would-be drop', async () => {
    pol.setConfig(cfg('BLOCK_ALL', { dryRun: true, dnsFilter: true }));
    pol.drain();
    const before = pol.stats();
    const r = await run(['tcpT', 'udpT', 'pingT', 'dnsUdp']);
    expect(oks(r)).toEqual({ tcpT: true, udpT: true, pingT: true, dnsUdp: true });
    // dry-run changes nothing, not even the DNS redirect
    expect(r.dnsUdp.data).toBe('ROGUE:hello');
    const after = pol.stats();
    expect(after.blocked).toBe(before.blocked);
    expect(after.dryRunWouldBlock - before.dryRunWouldBlock).toBeGreaterThanOrEqual(4n);
    await sleep(30);
    const ev = pol.drain();
    expect(ev.every((e) => e.dryRun)).toBe(true);
    const seen = new Set(ev.map((e) => `${e.hook} ${e.reason} ${e.dstAddr}`));
    expect(seen).toContain(`CONNECT BLOCK_ALL ${ADDR.t4}`);
    expect(seen).toContain(`SENDMSG BLOCK_ALL ${ADDR.t4}`);
    expect(seen).toContain(`SKB BLOCK_ALL ${ADDR.t4}`);
    expect(seen).toContain(`SENDMSG DNS_BYPASS ${ADDR.r4}`);
  });

  function hold(addr: string, inCgroup: boolean, udp = false): { out: () => string; kill: () => void; connected: () => Promise<void> } {
    const args = ['-u', join(__dirname, 'probe.py'), 'hold', addr, String(udp ? PORT.udp : PORT.tcp), ...(udp ? ['udp'] : [])];
    const child = spawnIn(topo.lab, topo.w, 'python3', args, inCgroup ? cg : undefined);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    return {
      out: () => out,
      kill: () => child.kill('SIGKILL'),
      async connected() {
        const deadline = Date.now() + 5000;
        while (!out.includes('CONNECTED') && Date.now() < deadline) await sleep(10);
        if (!out.includes('CONNECTED')) throw new Error(`hold did not connect: ${out}`);
      },
    };
  }

  it.each([
    ['TCP', false],
    ['connected UDP', true],
  ])('removing an allow entry aborts established %s sockets of the cgroup within one second (iterator + bpf_sock_destroy)', async (_proto, udp) => {
    pol.allow(`${ADDR.t4}/32`);
    pol.setConfig(cfg('ALLOWLIST'));
    const victim = hold(ADDR.t4, true, udp);
    const keeper = hold(ADDR.s4, true, udp); // still allowed: must survive
    const outsider = hold(ADDR.t4, false, udp); // not in the cgroup: must survive
    await Promise.all([victim.connected(), keeper.connected(), outsider.connected()]);
    // the daemon's way: the sever object, loaded lazily against the host's pinned maps
    const sever = await loadCollectionAsync(objectPath('sever'), { pinMaps: { dir: pinDir as string, maps: SEVER_SHARED_MAPS } });
    const [iterTcp, iterUdp] = SEVER_PROGRAMS.map((k) => attachIter(sever.program(OBJECTS.sever.programs[k].name))) as [BpfLink, BpfLink];
    try {
      // the very same kernel maps, not copies
      for (const name of SEVER_SHARED_MAPS) expect([name, sever.map(name).info().id]).toEqual([name, pol.map(name).info().id]);
      const before = pol.stats();
      const t0 = Date.now();
      pol.remove('allow', `${ADDR.t4}/32`);
      const target: SeverTarget = { slot: pol.slot, cgroupId, prefix: `${ADDR.t4}/32` };
      pol.map(CGROUP_ONLY_MAPS.severConfig.name).update(Buffer.alloc(4), encodeSeverConfig(target));
      // the iterator sees the netns it is created in: run it from the workload's
      withNetns(topo.w.path, () => {
        readIterator(iterTcp);
        readIterator(iterUdp);
      });
      while (!victim.out().includes('ERR') && Date.now() - t0 < 3000) await sleep(10);
      expect(Date.now() - t0).toBeLessThan(1000);
      // TCP: reset, the next call fails with ECONNABORTED. UDP: the socket is aborted and
      // disconnected, so the next send fails for want of a peer, or a recv reports the abort
      // (the probe keeps a UDP socket whose datagram was dropped, and waits for the abort).
      expect(victim.out()).toMatch(udp ? /ERR (ECONNABORTED|EDESTADDRREQ)/ : /ERR ECONNABORTED/);
      expect(pol.stats().severed - before.severed).toBe(1n);
      await sleep(400);
      expect(keeper.out()).not.toContain('ERR');
      expect(outsider.out()).not.toContain('ERR');
    } finally {
      iterTcp.close();
      iterUdp.close();
      sever.close();
      victim.kill();
      keeper.kill();
      outsider.kill();
    }
  });
});

// Sends a DNS-looking UDP datagram to argv[1]:53 through a raw socket (no
// sendmsg hook runs for raw sockets); prints OK or the errno name.
const RAW_DNS = `
import errno, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
payload = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'
udp = struct.pack('!HHHH', 40000, 53, 8 + len(payload), 0) + payload
try:
    s.sendto(udp, (sys.argv[1], 0))
    print('OK')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
`;
