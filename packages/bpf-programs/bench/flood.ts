// XDP flood benchmark (npm run bench:flood -w @netfence/bpf-programs): what a hostile
// workload's flood of blocked destinations costs the host with the filter at TC and at XDP on
// the host end of its veth and on a microVM's tap, and what each costs allowed traffic. Prints,
// measured in one run:
//  1. veth flood rounds (interleaved, medians): no filter (the flood is forwarded to the sink),
//     the TC filter, XDP native and XDP generic, each in allowlist mode with the destination not
//     allowed: sent/s, dropped/s (the slot's BLOCKED counter), packets that reached the sink
//     (must be 0 with a filter: the run fails otherwise) and host CPU per dropped packet;
//  2. allowed traffic (iperf3 TCP throughput, 1-byte RR) through no filter, TC and XDP;
//  3. the same flood from a microVM: a writer in h plays the VMM and writes the guest's frames
//     into a tap (the same filters on the tap), then frames to an allowed destination;
//  4. the XDP/TC ratios of host CPU per dropped packet on the veth and on the tap, whatever they are.
// Root; bounded to about 100 s; everything it creates (netns, veths, the tap, pins, temp files)
// is removed at the end, also on failure or Ctrl-C.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, hostname, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachTcx, attachXdp, loadCollection, type BpfLink, type Collection } from '@netfence/bpf-loader';
import { createLab, ensureBpffs, type LabNetns } from '@netfence/lab';
import { encodeSlot, HOST_MAPS, hostPinnedMaps, objectPath, OBJECTS, STATS, sumPerCpuStats } from '@netfence/bpf-programs';
import { smallPolicy } from './entries';
import { ksoftirqdPid } from './flood-cpu';
import { ALLOWED_SINK, floodOnce, SINK, startFloodLab, xdpModeOf, type FloodLab, type FloodSample, type FloodSource } from './flood-lab';
import { floodReport, FILTERS, type Filter, type TrafficSample } from './flood-report';
import { createRulesTrie, MEASURED_SLOT, useSlot } from './host-sets';
import { bindDevice } from '../test/kernel/helpers';
import { measureTraffic } from './traffic';

const num = (name: string, dflt: number, max: number): number => {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isFinite(v) || v <= 0 || v > max) throw new Error(`${name} must be a number in (0, ${max}], got ${JSON.stringify(process.env[name])}`);
  return v;
};
const FLOOD_SECONDS = num('NF_FLOOD_SECONDS', 3, 30);
const FLOOD_ROUNDS = Math.round(num('NF_FLOOD_ROUNDS', 3, 20));
const TRAFFIC_ROUNDS = Math.round(num('NF_FLOOD_TRAFFIC_ROUNDS', 3, 20));
const IPERF_SECONDS = num('NF_FLOOD_IPERF_SECONDS', 1, 30);
const RR_SECONDS = num('NF_FLOOD_RR_SECONDS', 1, 30);
const TAP_SECONDS = num('NF_FLOOD_TAP_SECONDS', 1.5, 30);
const TAP_ALLOWED_SECONDS = num('NF_FLOOD_TAP_ALLOWED_SECONDS', 1, 30);
const TAP_FLOOR_SECONDS = num('NF_FLOOD_TAP_FLOOR_SECONDS', 0.5, 30);
/** The sender's CPU: the last one (everything its packets make the kernel do runs there too). */
const SENDER_CPU = cpus().length - 1;

const aborter = new AbortController();
/** Lets the event loop run once (signal handlers run then) and stops the run when SIGINT/SIGTERM came. */
const checkpoint = async (): Promise<void> => {
  await new Promise((r) => setImmediate(r));
  if (aborter.signal.aborted) throw new Error(`interrupted by ${String(aborter.signal.reason)}`);
};

/** Cleanups, run in reverse order at the end (also on failure); one failing does not stop the rest. */
class Cleanup {
  readonly #fns: (() => unknown)[] = [];
  add<T extends { close(): unknown }>(x: T): T {
    this.#fns.push(() => x.close());
    return x;
  }
  defer(fn: () => unknown): void {
    this.#fns.push(fn);
  }
  async run(): Promise<void> {
    while (this.#fns.length) {
      try {
        await this.#fns.pop()?.();
      } catch (e) {
        process.stderr.write(`cleanup: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  }
}

interface HostSet {
  readonly tc: Collection;
  readonly xdp: Collection;
}

/** Attaches one filter to `dev` in h (the veth's host end or the tap; device bindings are made once, in hostSet); checks the XDP mode the kernel reports. */
function attachFilter(set: HostSet, h: LabNetns, dev: string, f: Filter): BpfLink | undefined {
  if (f === 'none') return undefined;
  const where = { ifname: dev, netnsPath: h.path };
  if (f === 'tc') return attachTcx(set.tc.program(OBJECTS.tc.programs.ingress.name), { ...where, direction: 'ingress', mode: 'tcx' });
  const mode = f === 'xdp-native' ? 'native' : 'generic';
  const link = attachXdp(set.xdp.program(OBJECTS.xdp.programs.filter.name), { ...where, mode });
  const got = xdpModeOf(h, dev);
  if (got !== mode) {
    link.close();
    throw new Error(`asked for XDP ${mode} on ${dev}, the kernel reports ${got}`);
  }
  return link;
}

/** What attachXdp mode 'auto' picks on `dev` in h (as ip link reports it). */
function autoPick(set: HostSet, h: LabNetns, dev: string): string {
  const link = attachXdp(set.xdp.program(OBJECTS.xdp.programs.filter.name), { ifname: dev, netnsPath: h.path, mode: 'auto' });
  try {
    return xdpModeOf(h, dev);
  } finally {
    link.close();
  }
}

/** The slot's counters (summed over CPUs). */
function counters(set: HostSet): bigint[] {
  const v = set.tc.map(HOST_MAPS.stats.name).lookup(encodeSlot(MEASURED_SLOT));
  if (!v) throw new Error(`no stats element for slot ${MEASURED_SLOT}`);
  return sumPerCpuStats(v);
}

/** The slot's BLOCKED and ALLOWED counters now. */
function blockedAllowed(set: HostSet): { blocked: number; allowed: number } {
  const c = counters(set);
  return { blocked: Number(c[STATS.BLOCKED]), allowed: Number(c[STATS.ALLOWED]) };
}

/** A flood measured through every filter: the device filtered, who floods, for how long, and what each round must show. */
interface FloodTarget {
  readonly dev: string;
  readonly src: FloodSource;
  readonly seconds: number;
  readonly check: (f: Filter, s: FloodSample) => void;
}

/** A flood of the blocked SINK: with a filter all of it dropped and none at the sink; without one it must reach the sink. */
function checkBlocked(where: string): (f: Filter, s: FloodSample) => void {
  return (f, s) => {
    if (f !== 'none' && s.reachedSink !== 0) throw new Error(`${where}, ${f}: ${s.reachedSink} flood packets reached the blocked sink (must be 0)`);
    if (f !== 'none' && s.dropped <= 0) throw new Error(`${where}, ${f}: the filter counted no drops during the flood`);
    if (f === 'none' && s.reachedSink <= 0) throw new Error(`${where}, no filter: the flood did not reach the sink, so the lab does not prove the filters stop anything`);
  };
}

/** Frames to ALLOWED_SINK through the tap: judged allowed by a filter, none blocked, and they reach the sink. */
function checkAllowed(f: Filter, s: FloodSample): void {
  if (f !== 'none' && s.allowed <= 0) throw new Error(`tap, ${f}: the filter judged none of the allowed frames`);
  if (s.dropped !== 0) throw new Error(`tap, ${f}: ${s.dropped} allowed frames were blocked`);
  if (s.reachedSink <= 0) throw new Error(`tap, ${f}: no allowed frame reached the sink`);
}

/** A tap writer's refused writes: nothing reaches the filter or the sink, every call was refused (counted). */
function checkFloor(f: Filter, s: FloodSample): void {
  if (s.sent <= 0) throw new Error('tap, write() floor: no write was refused as expected');
  if (s.dropped !== 0 || s.allowed !== 0 || s.reachedSink !== 0) throw new Error(`tap, write() floor (${f}): a refused write reached the filter or the sink`);
}

/** The tap's XDP native drops happen in the driver's native path, before any skb: the tap's rx_dropped counts each (tun_xdp_act). */
function checkTapBlocked(f: Filter, s: FloodSample): void {
  checkBlocked('tap')(f, s);
  if (f === 'xdp-native' && s.devDropped < s.dropped) throw new Error(`tap, XDP native: ${s.dropped} drops but the tap's rx_dropped grew by ${s.devDropped}: not all ran before the skb`);
}

/** One flood round of `t` through filter `f` (attached for the round only), checked. */
async function floodOne(set: HostSet, fl: FloodLab, flooder: string, t: FloodTarget, f: Filter): Promise<FloodSample> {
  await checkpoint();
  const run = { flooder, seconds: t.seconds, cpu: SENDER_CPU, ksoftirqd: ksoftirqdPid(SENDER_CPU), signal: aborter.signal, counts: () => blockedAllowed(set) };
  const link = attachFilter(set, fl.h, t.dev, f);
  try {
    const s = await floodOnce(fl, run, t.src);
    t.check(f, s);
    return s;
  } finally {
    link?.close();
  }
}

/**
 * Sections 1 and 3: FLOOD_ROUNDS rounds of every filter on `t.dev`, the order rotated each round;
 * `alsoEachRound` (the tap's write() floor) is measured once at the end of every round, so it
 * meets the same conditions on this shared machine.
 */
async function floodRounds(set: HostSet, fl: FloodLab, flooder: string, t: FloodTarget, alsoEachRound?: { t: FloodTarget; out: FloodSample[] }): Promise<Map<Filter, FloodSample[]>> {
  const out = new Map<Filter, FloodSample[]>(FILTERS.map((f) => [f, []]));
  for (let round = 0; round < FLOOD_ROUNDS; round++) {
    for (let i = 0; i < FILTERS.length; i++) {
      const f = FILTERS[(i + round) % FILTERS.length] as Filter;
      out.get(f)?.push(await floodOne(set, fl, flooder, t, f));
    }
    if (alsoEachRound) alsoEachRound.out.push(await floodOne(set, fl, flooder, alsoEachRound.t, 'none'));
  }
  return out;
}

/** Section 2: allowed TCP throughput and RR through each filter; the slot must have judged (ALLOWED grew) and dropped nothing. */
async function trafficRounds(set: HostSet, fl: FloodLab, tool: string): Promise<Map<Filter, TrafficSample[]>> {
  const out = new Map<Filter, TrafficSample[]>(FILTERS.map((f) => [f, []]));
  for (let round = 0; round < TRAFFIC_ROUNDS; round++) {
    for (let i = 0; i < FILTERS.length; i++) {
      const f = FILTERS[(i + round) % FILTERS.length] as Filter;
      await checkpoint();
      const link = attachFilter(set, fl.h, fl.dev, f);
      try {
        const before = counters(set);
        const t = measureTraffic(fl, tool, undefined, IPERF_SECONDS, RR_SECONDS);
        const after = counters(set);
        const allowed = Number((after[STATS.ALLOWED] as bigint) - (before[STATS.ALLOWED] as bigint));
        if (f !== 'none' && allowed <= 0) throw new Error(`${f}: the filter judged none of the allowed traffic`);
        if (after[STATS.BLOCKED] !== before[STATS.BLOCKED]) throw new Error(`${f}: allowed traffic was blocked`);
        out.get(f)?.push({ ...t, judged: allowed });
      } finally {
        link?.close();
      }
    }
  }
  return out;
}

/** Loads the tc and xdp objects over the same pinned host maps (as the daemon does) and makes the bench's attachment: allowlist, 10 entries, bound to the veth's host end and the tap for TC ingress and XDP. */
function hostSet(own: Cleanup, fl: FloodLab): HostSet {
  const hostDir = join('/sys/fs/bpf', `nfflood-${process.pid}`, '_host');
  mkdirSync(hostDir, { recursive: true });
  own.defer(() => rmSync(join(hostDir, '..'), { recursive: true, force: true }));
  const tc = own.add(loadCollection(objectPath('tc'), { pinMaps: { dir: hostDir, maps: hostPinnedMaps('tc') } }));
  const xdp = own.add(loadCollection(objectPath('xdp'), { pinMaps: { dir: hostDir, maps: hostPinnedMaps('xdp') } }));
  const a = { slot: MEASURED_SLOT, v4: own.add(createRulesTrie(4, 1024, smallPolicy())), v6: own.add(createRulesTrie(6, 1024)) };
  useSlot(tc, a, undefined, 'ALLOWLIST');
  for (const ifindex of [fl.ifindex, fl.tapIfindex]) {
    bindDevice(tc, ifindex, 'ingress', a.slot);
    bindDevice(tc, ifindex, 'xdp', a.slot);
  }
  return { tc, xdp };
}

function machine(): string {
  return `${hostname()}, ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  ensureBpffs();
  const started = Date.now();
  const machineAtStart = machine();
  const own = new Cleanup();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => aborter.abort(sig));
  try {
    const tmp = mkdtempSync(join(tmpdir(), 'nf-flood-'));
    own.defer(() => rmSync(tmp, { recursive: true, force: true }));
    const tool = join(tmp, 'nfbench');
    const flooder = join(tmp, 'nfflood');
    execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', tool, join(__dirname, 'nfbench.c'), '-lpthread']);
    execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', flooder, join(__dirname, 'nfflood.c')]);
    const lab = createLab();
    own.defer(() => lab.close());
    const fl = await startFloodLab(lab, tool);
    const set = hostSet(own, fl);
    const auto = { veth: autoPick(set, fl.h, fl.dev), tap: autoPick(set, fl.h, fl.tap) };
    await checkpoint();
    const flood = await floodRounds(set, fl, flooder, { dev: fl.dev, src: { kind: 'veth' }, seconds: FLOOD_SECONDS, check: checkBlocked('veth') });
    const traffic = await trafficRounds(set, fl, tool);
    const tapFloor: FloodSample[] = [];
    const floor = { t: { dev: fl.tap, src: { kind: 'tap', dst: SINK, floor: true }, seconds: TAP_FLOOR_SECONDS, check: checkFloor } as const, out: tapFloor };
    const tapFlood = await floodRounds(set, fl, flooder, { dev: fl.tap, src: { kind: 'tap', dst: SINK }, seconds: TAP_SECONDS, check: checkTapBlocked }, floor);
    const tapAllowed = await floodRounds(set, fl, flooder, { dev: fl.tap, src: { kind: 'tap', dst: ALLOWED_SINK }, seconds: TAP_ALLOWED_SECONDS, check: checkAllowed });
    const lost = counters(set)[STATS.EVENTS_LOST] ?? 0n;
    process.stdout.write(
      floodReport({
        machine: machineAtStart,
        loadEnd: loadavg().map((l) => l.toFixed(2)).join(' '),
        settings: {
          floodSeconds: FLOOD_SECONDS,
          floodRounds: FLOOD_ROUNDS,
          trafficRounds: TRAFFIC_ROUNDS,
          iperfSeconds: IPERF_SECONDS,
          rrSeconds: RR_SECONDS,
          tapSeconds: TAP_SECONDS,
          tapAllowedSeconds: TAP_ALLOWED_SECONDS,
          tapFloorSeconds: TAP_FLOOR_SECONDS,
          senderCpu: SENDER_CPU,
        },
        autoPick: auto,
        eventsLost: lost,
        flood,
        traffic,
        tapFlood,
        tapAllowed,
        tapFloor,
        seconds: (Date.now() - started) / 1000,
      }),
    );
  } finally {
    await own.run();
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  });
}
