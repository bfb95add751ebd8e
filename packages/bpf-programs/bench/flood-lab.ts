// The flood benchmark's lab and its flood rounds. On top of the traffic lab (netns w = the
// workload, 10.200.1.2; netns h = the host, SERVER, with iperf3 and nfbench servers; the filter
// on h's end of their veth), a sink netns s holds the blocked destination SINK behind h, which
// forwards: a packet the filter lets through reaches s (counted by s's IPv4 InReceives). s also
// holds ALLOWED_SINK, a destination the bench policy allows. A persistent tap lives in h (the
// microVM's NIC: TAP_HOST on h's side, the guest TAP_SRC behind it); a writer process in h
// attaches to it and writes the guest's frames, as a VMM does. No default route anywhere; only
// lab addresses.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type { Lab, LabNetns } from '@netfence/lab';
import { NOT_ALLOWED, SERVER } from './entries';
import { cpuWindow, sampleCpu, type CpuWindow } from './flood-cpu';
import { startTrafficLab, type TrafficLab } from './traffic';

/** The blocked destination: not on the bench policy's allowlist, routed via h to netns s. */
export const SINK = NOT_ALLOWED;
/** An allowed destination in s (203.0.113.0/24 is on the bench policy's allowlist). */
export const ALLOWED_SINK = '203.0.113.77';
const ALLOWED_NET = '203.0.113.0/24';
const SINK_NET = '198.51.100.0/24';
const H_TO_SINK = '198.51.100.1';
const W_NET = '10.200.1.0/24';
export const SINK_PORT = 9;
/** The tap's network: h's address on the tap, and the guest's (the source of the frames the writer writes). */
const TAP_HOST = '10.200.2.1';
export const TAP_SRC = '10.200.2.2';
const TAP_NET = '10.200.2.0/24';

export interface FloodLab extends TrafficLab {
  readonly s: LabNetns;
  /** The tap in h and its ifindex. */
  readonly tap: string;
  readonly tapIfindex: number;
}

/**
 * The tap in h: persistent (it outlives each writer, so filters stay attached between rounds),
 * vnet_hdr like a VMM's, IPv6 off (no router solicitations queued to a writer that never
 * reads), rp_filter 0 on it, TAP_HOST/24 on it so h forwards the guest's frames. Removed before
 * h is (deleting h would remove it too).
 */
function createTap(lab: Lab, h: LabNetns): string {
  const tap = `nf${lab.id}t`;
  h.exec('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr']);
  lab.defer(() => void h.tryExec('ip', ['tuntap', 'del', 'dev', tap, 'mode', 'tap']));
  h.tryExec('sysctl', ['-qw', `net.ipv6.conf.${tap}.disable_ipv6=1`]);
  h.exec('sysctl', ['-qw', `net.ipv4.conf.${tap}.rp_filter=0`]);
  h.exec('ip', ['addr', 'add', `${TAP_HOST}/24`, 'dev', tap]);
  h.exec('ip', ['link', 'set', tap, 'up']);
  return tap;
}

/** The traffic lab plus the sink netns, the tap, the routes and forwarding in h. */
export async function startFloodLab(lab: Lab, tool: string): Promise<FloodLab> {
  const t = await startTrafficLab(lab, tool);
  const s = lab.netns('s');
  const v = lab.veth(t.h, s, { addrA: [`${H_TO_SINK}/24`], addrB: [`${SINK}/24`, `${ALLOWED_SINK}/24`] });
  t.w.exec('ip', ['route', 'add', SINK_NET, 'via', SERVER]);
  s.exec('ip', ['route', 'add', W_NET, 'via', H_TO_SINK]);
  s.exec('ip', ['route', 'add', TAP_NET, 'via', H_TO_SINK]);
  t.h.exec('ip', ['route', 'add', ALLOWED_NET, 'via', SINK, 'dev', v.a]);
  t.h.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  const tap = createTap(lab, t.h);
  return { ...t, s, tap, tapIfindex: t.h.ifindex(tap) };
}

/** One field of the `Ip:` lines of /proc/net/snmp as seen in `ns` (/proc/net is the reader's netns). */
function ipCounter(ns: LabNetns, field: 'InReceives' | 'ForwDatagrams'): number {
  const lines = ns.exec('cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Ip: '));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const v = Number(values[names.indexOf(field)]);
  if (names.indexOf(field) < 0 || !Number.isFinite(v)) throw new Error(`no Ip ${field} in /proc/net/snmp of ${ns.name}`);
  return v;
}

/** The XDP mode the kernel reports for `dev` in `ns` (ip link): native, generic, or none. */
export function xdpModeOf(ns: LabNetns, dev: string): 'native' | 'generic' | 'none' | string {
  const j = JSON.parse(ns.exec('ip', ['-j', '-d', 'link', 'show', 'dev', dev])) as { xdp?: { mode?: number } }[];
  const m = j[0]?.xdp?.mode;
  return m === undefined ? 'none' : m === 1 ? 'native' : m === 2 ? 'generic' : `mode ${m}`;
}

/** The rx_dropped counter of `dev` in `ns` (ip -s link): the tun driver counts an XDP_DROP of its native path there. */
function rxDropped(ns: LabNetns, dev: string): number {
  const j = JSON.parse(ns.exec('ip', ['-j', '-s', 'link', 'show', 'dev', dev])) as { stats64?: { rx?: { dropped?: number } } }[];
  const v = j[0]?.stats64?.rx?.dropped;
  if (typeof v !== 'number') throw new Error(`no rx dropped counter for ${dev} in ${ns.name}`);
  return v;
}

export interface FloodSample {
  /** Datagrams sendmmsg accepted (veth) or frames write() accepted (tap), and the sender's own flood time in seconds. */
  readonly sent: number;
  readonly seconds: number;
  /** STATS.BLOCKED and STATS.ALLOWED of the slot over the window. */
  readonly dropped: number;
  readonly allowed: number;
  /** IPv4 packets received in the sink netns, and forwarded by h. */
  readonly reachedSink: number;
  readonly forwarded: number;
  /** rx_dropped of the filtered device over the round. */
  readonly devDropped: number;
  readonly cpu: CpuWindow;
}

/** Resolves with the first stdout line of `child` starting with `prefix`; rejects on exit, timeout or abort. */
function lineFrom(child: ChildProcess, prefix: string, timeoutMs: number, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err?: Error, line?: string): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(line as string);
    };
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.startsWith(prefix));
      if (line !== undefined) done(undefined, line);
    };
    const onExit = (code: number | null): void => done(new Error(`nfflood exited (${code}) before printing ${prefix}: ${buf}`));
    const onAbort = (): void => done(new Error(`interrupted by ${String(signal.reason)}`));
    const timer = setTimeout(() => done(new Error(`nfflood did not print ${prefix} in ${timeoutMs} ms`)), timeoutMs);
    if (signal.aborted) return onAbort();
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
    signal.addEventListener('abort', onAbort);
  });
}

export interface FloodRun {
  readonly flooder: string;
  readonly seconds: number;
  /** The CPU the sender is pinned to, and that CPU's ksoftirqd. */
  readonly cpu: number;
  readonly ksoftirqd: number;
  /** The slot's BLOCKED and ALLOWED counters now. */
  readonly counts: () => { blocked: number; allowed: number };
  readonly signal: AbortSignal;
}

/**
 * Who floods: the workload in w through its veth (to SINK), or a VMM in h writing the guest's
 * frames into the tap (to `dst`; `floor`: 4-byte writes the driver refuses at once, the cost of
 * the write() system call alone).
 */
export type FloodSource = { readonly kind: 'veth' } | { readonly kind: 'tap'; readonly dst: string; readonly floor?: boolean };

function spawnFlooder(fl: FloodLab, r: FloodRun, src: FloodSource): ChildProcess {
  const common = [String(SINK_PORT), String(r.seconds), String(r.cpu)];
  return src.kind === 'veth' ? fl.w.spawn(r.flooder, [SINK, ...common]) : fl.h.spawn(r.flooder, [src.floor ? 'tap-floor' : 'tap', fl.tap, TAP_SRC, src.dst, ...common]);
}

/**
 * One flood: the sender floods for `seconds`; the CPU window runs from its start signal to its
 * DONE line; counters are read outside the window (the sink's after a short settle, so packets
 * still queued are counted).
 */
export async function floodOnce(fl: FloodLab, r: FloodRun, src: FloodSource = { kind: 'veth' }): Promise<FloodSample> {
  const dev = src.kind === 'veth' ? fl.dev : fl.tap;
  const child = spawnFlooder(fl, r, src);
  try {
    await lineFrom(child, 'READY', 5000, r.signal);
    const pid = child.pid as number;
    // nsenter execs the command (no PID namespace: no fork), so this pid is the sender itself
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (comm !== 'nfflood') throw new Error(`pid ${pid} is ${comm}, not the sender: its CPU time would be wrong`);
    const sink0 = ipCounter(fl.s, 'InReceives');
    const fwd0 = ipCounter(fl.h, 'ForwDatagrams');
    const dev0 = rxDropped(fl.h, dev);
    const n0 = r.counts();
    const c0 = sampleCpu(r.cpu, pid, r.ksoftirqd);
    child.stdin?.write('go\n');
    const done = await lineFrom(child, 'DONE', (r.seconds + 10) * 1000, r.signal);
    const c1 = sampleCpu(r.cpu, pid, r.ksoftirqd);
    const n1 = r.counts();
    const [, sent, secs] = done.trim().split(' ').map(Number);
    const exited = once(child, 'exit');
    child.stdin?.end();
    await exited;
    await new Promise((res) => setTimeout(res, 50));
    return {
      sent: sent ?? NaN,
      seconds: secs ?? NaN,
      dropped: n1.blocked - n0.blocked,
      allowed: n1.allowed - n0.allowed,
      reachedSink: ipCounter(fl.s, 'InReceives') - sink0,
      forwarded: ipCounter(fl.h, 'ForwDatagrams') - fwd0,
      devDropped: rxDropped(fl.h, dev) - dev0,
      cpu: cpuWindow(c0, c1),
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
