// CPU time readings for the flood benchmark: the whole machine and one CPU from /proc/stat, one
// process from /proc/<pid>/stat, in clock ticks (USER_HZ).
//
// Why three readings and not just "machine minus sender": this kernel accounts CPU time by the
// tick (CONFIG_TICK_CPU_ACCOUNTING, no CONFIG_IRQ_TIME_ACCOUNTING), so a tick that lands in a
// softirq is added both to /proc/stat's softirq column AND to whatever task was running. veth
// delivers a sent packet to the SENDING CPU (its backlog, or its NAPI ring when XDP is attached)
// and the receive softirq mostly runs inline when the sender's send call re-enables bottom
// halves: the filter's work is then charged to the sender's stime. The sender's own share
// (building and sending the datagram, its syscalls) is its time minus the softirq ticks charged
// to it; those are the softirq ticks of its CPU minus what ksoftirqd on that CPU ran.
//
// On a tap the writer (the VMM) does the host's receive path itself: its write() runs
// tun_get_user, which copies the frame in, runs a native XDP program, builds the skb and hands it
// to netif_receive_skb (TC, generic XDP, the stack) with bottom halves disabled but NOT inside a
// softirq: the writer's system time. A softirq raised meanwhile (the sink's veth backlog when h
// forwards) runs as bottom halves are re-enabled: softirq time, also charged to the writer. So
// for the tap the host's cost is the writer's whole time (plus ksoftirqd, which stays idle). Its
// user/system split is not used: on a VM whose system calls trap to the hypervisor (this one's do,
// pti=on) the tick charges part of each call's entry and exit to user time.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/stat and /proc/<pid>/stat. */
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
if (!Number.isInteger(CLK_TCK) || CLK_TCK <= 0) throw new Error(`getconf CLK_TCK gave ${CLK_TCK}`);

export interface CpuLine {
  /** user + nice + system + irq + softirq */
  readonly busy: number;
  readonly softirq: number;
  readonly steal: number;
}

/** The `cpu` (whole machine) and `cpu<k>` lines of /proc/stat. */
export function readProcStat(cpu: number): { machine: CpuLine; cpu: CpuLine } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const parse = (label: string): CpuLine => {
    const l = lines.find((x) => x.startsWith(`${label} `));
    if (!l) throw new Error(`/proc/stat has no ${label} line`);
    const [user, nice, system, , , irq, softirq, steal] = l.trim().split(/\s+/).slice(1).map(Number) as number[];
    const busy = (user ?? NaN) + (nice ?? NaN) + (system ?? NaN) + (irq ?? NaN) + (softirq ?? NaN);
    if (!Number.isFinite(busy)) throw new Error(`cannot parse /proc/stat line ${JSON.stringify(l)}`);
    return { busy, softirq: softirq ?? NaN, steal: steal ?? 0 };
  };
  return { machine: parse('cpu'), cpu: parse(`cpu${cpu}`) };
}

/** utime + stime + cutime + cstime of a process, in ticks (fields 14-17 of /proc/<pid>/stat). */
export function processTicks(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime = field 14 = f[11]
  const t = [11, 12, 13, 14].map((i) => Number(f[i]));
  if (t.some((x) => !Number.isFinite(x))) throw new Error(`cannot parse /proc/${pid}/stat: ${JSON.stringify(s)}`);
  return t.reduce((a, b) => a + b, 0);
}

/** The pid of ksoftirqd/<cpu> (a kernel thread: one per CPU). */
export function ksoftirqdPid(cpu: number): number {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === `ksoftirqd/${cpu}`) return Number(d);
    } catch {
      /* exited meanwhile */
    }
  }
  throw new Error(`no ksoftirqd/${cpu} thread found`);
}

export interface CpuSample {
  readonly stat: { machine: CpuLine; cpu: CpuLine };
  readonly sender: number;
  readonly ksoftirqd: number;
}

export function sampleCpu(cpu: number, senderPid: number, ksoftirqd: number): CpuSample {
  return { sender: processTicks(senderPid), ksoftirqd: processTicks(ksoftirqd), stat: readProcStat(cpu) };
}

/** CPU seconds over a window, split as the flood benchmark reports them. */
export interface CpuWindow {
  /** Whole machine busy time. */
  readonly machine: number;
  /** The sender process's utime + stime (children included). */
  readonly sender: number;
  /** Busy time of the sender's CPU. */
  readonly cpuBusy: number;
  /** Softirq time on the sender's CPU (the receive path of what it sent, inline in the sender or in ksoftirqd). */
  readonly softirq: number;
  /** ksoftirqd/<cpu>'s time (softirq work that did not run inline in the sender). */
  readonly ksoftirqd: number;
  /** Steal time of the whole machine (the hypervisor ran something else). */
  readonly steal: number;
  /** What the host spent beyond the sender's own sending: machine - sender + (softirq charged to the sender). */
  readonly host: number;
}

export function cpuWindow(a: CpuSample, b: CpuSample): CpuWindow {
  const s = (x: number): number => x / CLK_TCK;
  const machine = s(b.stat.machine.busy - a.stat.machine.busy);
  const sender = s(b.sender - a.sender);
  const softirq = s(b.stat.cpu.softirq - a.stat.cpu.softirq);
  const ksoftirqd = s(b.ksoftirqd - a.ksoftirqd);
  const chargedToSender = Math.max(0, softirq - ksoftirqd);
  const cpuBusy = s(b.stat.cpu.busy - a.stat.cpu.busy);
  return { machine, sender, cpuBusy, softirq, ksoftirqd, steal: s(b.stat.machine.steal - a.stat.machine.steal), host: machine - sender + chargedToSender };
}
