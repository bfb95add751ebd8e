// The kernel-test lab: workload (w) -- host (h, forwards) -- server (s).
// TC filters go on h's end of the w-h veth at ingress (the workload's
// outbound direction); cgroup tests run their clients in w inside a cgroup.
import type { ChildProcess } from 'node:child_process';
import { createLab, type Lab, type LabCgroup, type LabNetns, type LabVeth } from '@netfence/lab';
import type { AttachmentConfig, NetfenceStats } from '@netfence/bpf-programs';
import { probe, sleep, startCountingServer, startServers, udpFlood, type Policy, type Probe, type ProbeResult, type ServerSpec } from './helpers';

export const ADDR = {
  w4: '10.200.1.2',
  w6: '2001:db8:1::2',
  h4: '10.200.1.1',
  h6: '2001:db8:1::1',
  /** allowed in most tests */
  s4: '10.200.2.2',
  s6: '2001:db8:2::2',
  /** not allowed in most tests */
  t4: '10.200.2.3',
  t6: '2001:db8:2::3',
  /** a rogue resolver */
  r4: '10.200.2.53',
  r6: '2001:db8:2::53',
} as const;

export const PORT = { tcp: 8080, udp: 9000, ownDns: 5353 } as const;
export const OWN_DNS = { v4: ADDR.h4, v6: ADDR.h6, port: PORT.ownDns } as const;

/** The traffic both the TC and the cgroup suites send: to the allowed server (S), the other (T), foreign resolvers (r), the own DNS server. */
export const PROBES = {
  tcpS: { kind: 'tcp', addr: ADDR.s4, port: PORT.tcp },
  tcpT: { kind: 'tcp', addr: ADDR.t4, port: PORT.tcp },
  udpS: { kind: 'udp', addr: ADDR.s4, port: PORT.udp },
  udpT: { kind: 'udp', addr: ADDR.t4, port: PORT.udp },
  pingS: { kind: 'ping', addr: ADDR.s4 },
  pingT: { kind: 'ping', addr: ADDR.t4 },
  tcp6S: { kind: 'tcp', addr: ADDR.s6, port: PORT.tcp },
  tcp6T: { kind: 'tcp', addr: ADDR.t6, port: PORT.tcp },
  udp6T: { kind: 'udp', addr: ADDR.t6, port: PORT.udp },
  ping6T: { kind: 'ping', addr: ADDR.t6 },
  dnsUdp: { kind: 'udp', addr: ADDR.r4, port: 53 },
  dnsTcp: { kind: 'tcp', addr: ADDR.r4, port: 53 },
  dot: { kind: 'tcp', addr: ADDR.r4, port: 853 },
  dns6: { kind: 'udp', addr: ADDR.r6, port: 53 },
  ownUdp: { kind: 'udp', addr: OWN_DNS.v4, port: OWN_DNS.port },
} satisfies Record<string, Probe>;

/** A config builder for one suite's attachment id, with the own DNS server set. */
export function configFor(attachmentId: number) {
  return (mode: AttachmentConfig['mode'], extra: Partial<AttachmentConfig> = {}): AttachmentConfig => ({ mode, attachmentId, dnsServer: OWN_DNS, ...extra });
}

/** The DNS flood tests' own server (a counting one, on its own port of h), limit and datagram count. */
export const DNS_FLOOD = { own: { v4: ADDR.h4, port: 5454 }, limit: { rateQps: 1000, burst: 200 }, count: 20_000 } as const;

export interface DnsFloodResult {
  readonly flood: Awaited<ReturnType<typeof udpFlood>>;
  /** datagrams the counting own server received */
  readonly received: number;
  /**
   * Seconds from the flood's start to the server's stop: every datagram it received was judged
   * in this window (a receive queue may still hold some after the sender is done, as at XDP on a
   * veth, where NAPI judges them on another CPU), so the bucket refilled for at most this long.
   */
  readonly windowS: number;
  readonly before: NetfenceStats;
  readonly after: NetfenceStats;
}

/**
 * Floods the own DNS server (DNS_FLOOD.own) under DNS_FLOOD.limit, in ALLOWLIST with DNS filtering
 * and s4 allowed: `send` sends DNS_FLOOD.count datagrams from w, then `others` probes traffic that
 * must still pass. Puts the limit back to unlimited and s4's allow entry as it was, also on failure.
 */
export async function dnsFlood(
  topo: Topology,
  pol: Policy,
  cfg: ReturnType<typeof configFor>,
  send: () => ReturnType<typeof udpFlood>,
  others: () => Promise<void>,
): Promise<DnsFloodResult> {
  const { own, limit } = DNS_FLOOD;
  const server = await startCountingServer(topo.h, own.v4, own.port);
  const hadS4 = pol.lastSeen(`${ADDR.s4}/32`) !== undefined; // earlier tests' entries stay as they were
  try {
    pol.allow(`${ADDR.s4}/32`);
    pol.setConfig(cfg('ALLOWLIST', { dnsFilter: true, dnsServer: own }));
    pol.setDnsLimit(limit);
    const before = pol.stats();
    const t0 = process.hrtime.bigint();
    const flood = await send();
    await others();
    await sleep(200);
    const received = await server.stop();
    const windowS = Number(process.hrtime.bigint() - t0) / 1e9;
    return { flood, received, windowS, before, after: pol.stats() };
  } finally {
    pol.setDnsLimit({ rateQps: 0, burst: 0 });
    if (!hadS4) pol.remove('allow', `${ADDR.s4}/32`);
  }
}

export interface Topology {
  readonly lab: Lab;
  readonly w: LabNetns;
  readonly h: LabNetns;
  readonly s: LabNetns;
  /** a in w, b in h */
  readonly wh: LabVeth;
  readonly servers: ChildProcess;
}

/** Runs the named probes of `table` from the workload namespace (inside `cgroup` when given); results by name. */
export async function runProbes<N extends string>(topo: Topology, table: Readonly<Record<N, Probe>>, names: N[], cgroup?: LabCgroup): Promise<Record<N, ProbeResult>> {
  const res = await probe(topo.lab, topo.w, names.map((n) => table[n]), cgroup);
  return Object.fromEntries(names.map((n, i) => [n, res[i]])) as Record<N, ProbeResult>;
}

/** Which probes got through, by name. */
export function oks(r: Partial<Record<string, ProbeResult>>): Record<string, boolean> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v?.ok ?? false]));
}

export async function createTopology(): Promise<Topology> {
  const lab = createLab();
  try {
    const w = lab.netns('w');
    const h = lab.netns('h');
    const s = lab.netns('s');
    const wh = lab.veth(w, h, { addrA: [`${ADDR.w4}/24`, `${ADDR.w6}/64`], addrB: [`${ADDR.h4}/24`, `${ADDR.h6}/64`] });
    lab.veth(h, s, {
      addrA: ['10.200.2.1/24', '2001:db8:2::1/64'],
      addrB: [`${ADDR.s4}/24`, `${ADDR.t4}/24`, `${ADDR.r4}/24`, `${ADDR.s6}/64`, `${ADDR.t6}/64`, `${ADDR.r6}/64`],
    });
    h.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    w.exec('ip', ['route', 'add', '10.200.0.0/16', 'via', ADDR.h4]);
    w.exec('ip', ['-6', 'route', 'add', '2001:db8::/32', 'via', ADDR.h6]);
    s.exec('ip', ['route', 'add', '10.200.1.0/24', 'via', '10.200.2.1']);
    s.exec('ip', ['-6', 'route', 'add', '2001:db8:1::/64', 'via', '2001:db8:2::1']);
    const specs: ServerSpec[] = [];
    for (const [a, tag] of [
      [ADDR.s4, 'S'],
      [ADDR.t4, 'T'],
      [ADDR.s6, 'S6'],
      [ADDR.t6, 'T6'],
    ] as const) {
      specs.push({ proto: 'tcp', addr: a, port: PORT.tcp, tag }, { proto: 'udp', addr: a, port: PORT.udp, tag });
    }
    specs.push(
      { proto: 'udp', addr: ADDR.r4, port: 53, tag: 'ROGUE' },
      { proto: 'tcp', addr: ADDR.r4, port: 53, tag: 'ROGUE' },
      { proto: 'tcp', addr: ADDR.r4, port: 853, tag: 'ROGUE' },
      { proto: 'udp', addr: ADDR.r6, port: 53, tag: 'ROGUE6' },
    );
    const servers = await startServers(s, specs);
    // the attachment's own DNS server lives on the host side
    await startServers(h, [
      { proto: 'udp', addr: ADDR.h4, port: PORT.ownDns, tag: 'OWN' },
      { proto: 'tcp', addr: ADDR.h4, port: PORT.ownDns, tag: 'OWN' },
      { proto: 'udp', addr: ADDR.h6, port: PORT.ownDns, tag: 'OWN6' },
    ]);
    // warm up neighbour tables (IPv6 routers need a moment after forwarding is switched on)
    for (const a of [ADDR.s4, ADDR.t4, ADDR.r4, ADDR.s6, ADDR.t6, ADDR.r6]) {
      for (let i = 0; i < 30 && w.tryExec('ping', ['-c1', '-W1', '-q', a]).status !== 0; i++) await sleep(100);
    }
    return { lab, w, h, s, wh, servers };
  } catch (e) {
    await lab.close();
    throw e;
  }
}
