// The flood benchmark's lab and its flood rounds. On top of the traffic lab (netns w = the
// workload, 10.200.1.2; netns h = the host, SERVER, with iperf3 and nfbench servers; the filter
// on h's end of their veth), a sink netns s holds the blocked destination SINK behind h, which
// forwards: a packet the filter lets through reaches s (counted by s's IPv4 InReceives). No
// default route anywhere; only lab addresses.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type { Lab, LabNetns } from '@netfence/lab';
import { NOT_ALLOWED, SERVER } from './entries';
import { cpuWindow, sampleCpu, type CpuWindow } from './flood-cpu';
import { startTrafficLab, type TrafficLab } from './traffic';

/** The blocked destination: not on the bench policy's allowlist, routed via h to netns s. */
export const SINK = NOT_ALLOWED;
const SINK_NET = '198.51.100.0/24';
const H_TO_SINK = '198.51.100.1';
const W_NET = '10.200.1.0/24';
const SINK_PORT = 9;

export interface FloodLab extends TrafficLab {
  readonly s: LabNetns;
}

/** The traffic lab plus the sink netns, the routes to it and forwarding in h. */
export async function startFloodLab(lab: Lab, tool: string): Promise<FloodLab> {
  const t = await startTrafficLab(lab, tool);
  const s = lab.netns('s');
  lab.veth(t.h, s, { addrA: [`${H_TO_SINK}/24`], addrB: [`${SINK}/24`] });
  t.w.exec('ip', ['route', 'add', SINK_NET, 'via', SERVER]);
  s.exec('ip', ['route', 'add', W_NET, 'via', H_TO_SINK]);
  t.h.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  return { ...t, s };
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

export interface FloodSample {
  /** Datagrams sendmmsg accepted, and the sender's own flood time in seconds. */
  readonly sent: number;
  readonly seconds: number;
  /** STATS.BLOCKED of the slot over the window. */
  readonly dropped: number;
  /** IPv4 packets received in the sink netns, and forwarded by h. */
  readonly reachedSink: number;
  readonly forwarded: number;
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
  /** The slot's BLOCKED counter now. */
  readonly blocked: () => number;
  readonly signal: AbortSignal;
}

/**
 * One flood: the sender floods SINK from w for `seconds`; the CPU window runs from its start
 * signal to its DONE line; counters are read outside the window (the sink's after a short settle,
 * so packets still queued are counted).
 */
export async function floodOnce(fl: FloodLab, r: FloodRun): Promise<FloodSample> {
  const child = fl.w.spawn(r.flooder, [SINK, String(SINK_PORT), String(r.seconds), String(r.cpu)]);
  try {
    await lineFrom(child, 'READY', 5000, r.signal);
    const pid = child.pid as number;
    // nsenter execs the command (no PID namespace: no fork), so this pid is the sender itself
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (comm !== 'nfflood') throw new Error(`pid ${pid} is ${comm}, not the sender: its CPU time would be wrong`);
    const sink0 = ipCounter(fl.s, 'InReceives');
    const fwd0 = ipCounter(fl.h, 'ForwDatagrams');
    const blocked0 = r.blocked();
    const c0 = sampleCpu(r.cpu, pid, r.ksoftirqd);
    child.stdin?.write('go\n');
    const done = await lineFrom(child, 'DONE', (r.seconds + 10) * 1000, r.signal);
    const c1 = sampleCpu(r.cpu, pid, r.ksoftirqd);
    const blocked1 = r.blocked();
    const [, sent, secs] = done.trim().split(' ').map(Number);
    const exited = once(child, 'exit');
    child.stdin?.end();
    await exited;
    await new Promise((res) => setTimeout(res, 50));
    return {
      sent: sent ?? NaN,
      seconds: secs ?? NaN,
      dropped: blocked1 - blocked0,
      reachedSink: ipCounter(fl.s, 'InReceives') - sink0,
      forwarded: ipCounter(fl.h, 'ForwDatagrams') - fwd0,
      cpu: cpuWindow(c0, c1),
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
