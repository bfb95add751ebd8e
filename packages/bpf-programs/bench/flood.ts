// XDP flood benchmark (npm run bench:flood -w @netfence/bpf-programs): what a hostile
// workload's flood of blocked destinations costs the host with the filter at TC and at XDP on
// the host end of its veth, and what each costs allowed traffic. Prints, measured in one run:
//  1. flood rounds (interleaved, medians): no filter (the flood is forwarded to the sink), the
//     TC filter, XDP native and XDP generic, each in allowlist mode with the destination not
//     allowed: sent/s, dropped/s (the slot's BLOCKED counter), packets that reached the sink
//     (must be 0 with a filter: the run fails otherwise) and host CPU per dropped packet;
//  2. allowed traffic (iperf3 TCP throughput, 1-byte RR) through no filter, TC and XDP;
//  3. the XDP/TC ratio of host CPU per dropped packet, whatever it is.
// Root; bounded to about 90 s; everything it creates (netns, veths, pins, temp files) is removed
// at the end, also on failure or Ctrl-C.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, hostname, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachTcx, attachXdp, loadCollection, type BpfLink, type Collection } from '@netfence/bpf-loader';
import { createLab, ensureBpffs } from '@netfence/lab';
import { encodeSlot, HOST_MAPS, hostPinnedMaps, objectPath, OBJECTS, STATS, sumPerCpuStats } from '@netfence/bpf-programs';
import { smallPolicy } from './entries';
import { ksoftirqdPid } from './flood-cpu';
import { floodOnce, startFloodLab, xdpModeOf, type FloodLab, type FloodSample } from './flood-lab';
import { floodReport, FILTERS, type Filter, type TrafficSample } from './flood-report';
import { bindDevice, createRulesTrie, MEASURED_SLOT, useSlot } from './host-sets';
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

/** Attaches one filter to h's end of the workload's veth (its device bindings are made once, in main); checks the XDP mode the kernel reports. */
function attachFilter(set: HostSet, fl: FloodLab, f: Filter): BpfLink | undefined {
  if (f === 'none') return undefined;
  const where = { ifname: fl.dev, netnsPath: fl.h.path };
  if (f === 'tc') return attachTcx(set.tc.program(OBJECTS.tc.programs.ingress.name), { ...where, direction: 'ingress', mode: 'tcx' });
  const mode = f === 'xdp-native' ? 'native' : 'generic';
  const link = attachXdp(set.xdp.program(OBJECTS.xdp.programs.filter.name), { ...where, mode });
  const got = xdpModeOf(fl.h, fl.dev);
  if (got !== mode) {
    link.close();
    throw new Error(`asked for XDP ${mode} on ${fl.dev}, the kernel reports ${got}`);
  }
  return link;
}

/** What attachXdp mode 'auto' picks on this device (as ip link reports it). */
function autoPick(set: HostSet, fl: FloodLab): string {
  const link = attachXdp(set.xdp.program(OBJECTS.xdp.programs.filter.name), { ifname: fl.dev, netnsPath: fl.h.path, mode: 'auto' });
  try {
    return xdpModeOf(fl.h, fl.dev);
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

/** Section 1: FLOOD_ROUNDS rounds of every filter, the order rotated each round. */
async function floodRounds(set: HostSet, fl: FloodLab, flooder: string): Promise<Map<Filter, FloodSample[]>> {
  const out = new Map<Filter, FloodSample[]>(FILTERS.map((f) => [f, []]));
  const run = { flooder, seconds: FLOOD_SECONDS, cpu: SENDER_CPU, ksoftirqd: ksoftirqdPid(SENDER_CPU), signal: aborter.signal, blocked: () => Number(counters(set)[STATS.BLOCKED]) };
  for (let round = 0; round < FLOOD_ROUNDS; round++) {
    for (let i = 0; i < FILTERS.length; i++) {
      const f = FILTERS[(i + round) % FILTERS.length] as Filter;
      await checkpoint();
      const link = attachFilter(set, fl, f);
      try {
        const s = await floodOnce(fl, run);
        if (f !== 'none' && s.reachedSink !== 0) throw new Error(`${f}: ${s.reachedSink} flood packets reached the blocked sink (must be 0)`);
        if (f !== 'none' && s.dropped <= 0) throw new Error(`${f}: the filter counted no drops during the flood`);
        if (f === 'none' && s.reachedSink <= 0) throw new Error('no filter: the flood did not reach the sink, so the lab does not prove the filters stop anything');
        out.get(f)?.push(s);
      } finally {
        link?.close();
      }
    }
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
      const link = attachFilter(set, fl, f);
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

/** Loads the tc and xdp objects over the same pinned host maps (as the daemon does) and makes the bench's attachment: allowlist, 10 entries, bound to the device for TC ingress and XDP. */
function hostSet(own: Cleanup, fl: FloodLab): HostSet {
  const hostDir = join('/sys/fs/bpf', `nfflood-${process.pid}`, '_host');
  mkdirSync(hostDir, { recursive: true });
  own.defer(() => rmSync(join(hostDir, '..'), { recursive: true, force: true }));
  const tc = own.add(loadCollection(objectPath('tc'), { pinMaps: { dir: hostDir, maps: hostPinnedMaps('tc') } }));
  const xdp = own.add(loadCollection(objectPath('xdp'), { pinMaps: { dir: hostDir, maps: hostPinnedMaps('xdp') } }));
  const a = { slot: MEASURED_SLOT, v4: own.add(createRulesTrie(4, 1024, smallPolicy())), v6: own.add(createRulesTrie(6, 1024)) };
  useSlot(tc, a, undefined, 'ALLOWLIST');
  bindDevice(tc, fl.ifindex, 'ingress', a.slot);
  bindDevice(tc, fl.ifindex, 'xdp', a.slot);
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
    const auto = autoPick(set, fl);
    await checkpoint();
    const flood = await floodRounds(set, fl, flooder);
    const traffic = await trafficRounds(set, fl, tool);
    const lost = counters(set)[STATS.EVENTS_LOST] ?? 0n;
    process.stdout.write(
      floodReport({
        machine: machineAtStart,
        loadEnd: loadavg().map((l) => l.toFixed(2)).join(' '),
        settings: { floodSeconds: FLOOD_SECONDS, floodRounds: FLOOD_ROUNDS, trafficRounds: TRAFFIC_ROUNDS, iperfSeconds: IPERF_SECONDS, rrSeconds: RR_SECONDS, senderCpu: SENDER_CPU },
        autoPick: auto,
        eventsLost: lost,
        flood,
        traffic,
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
