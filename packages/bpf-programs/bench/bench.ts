// Benchmark of the netfence datapath on the host-wide layout (npm run bench -w @netfence/bpf-programs).
// Prints, measured in one run (figures and ratios from the same run):
//  1. per packet (BPF_PROG_TEST_RUN, interleaved rounds, medians): the allow-all floor, the
//     reference program with one LPM look-up (bench/minimal-lpm.bpf.c, the same entries) and
//     ours, at 10 and 100,000 entries, TC and cgroup_skb, and ours with 999 other attachments;
//  2. the map-layout decision: a map of per-attachment tries against one host-wide trie keyed by
//     slot (bench/layout_lpm.bpf.c), per packet and in user space (load, read back, drop, memory);
//  3. real traffic in a veth lab (iperf3, 1-byte RR, connect()), map update and bulk-load times,
//     and object load (verify) times, now paid once per host.
// Root; bounded to about 100 s; everything it creates (netns, veth, cgroups, pins, temp files)
// is removed at the end, also on failure or Ctrl-C.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, hostname, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCollection, memlockOf, type BpfLink, type BpfMap, type Collection, type LoadOptions } from '@netfence/bpf-loader';
import { createLab, ensureBpffs, type Lab, type LabCgroup } from '@netfence/lab';
import { encodeSlot, hostPinnedMaps, isTcDrop, objectPath, OBJECTS, SEVER_SHARED_MAPS } from '@netfence/bpf-programs';
import { buildBenchObject } from './build-bench-bpf';
import { BIG, bigPolicy, hostWideEncoded, NOT_ALLOWED, OTHER_ENTRIES, otherPolicy, oursEncoded, SERVER, smallPolicy, synFrame, type BenchRule } from './entries';
import { createRulesTrie, layoutSet, MEASURED_SLOT, referenceSet, testRunHostSet, useSlot, type Attachment } from './host-sets';
import { dropHostWide, dropOwnTrie, readBackHostWide, readBackOwnTrie } from './layout-costs';
import { checkVerdicts, median, timeInterleaved, type Timed } from './per-packet';
import { report, type LayoutUserSpace, type ObjectLoad, type Traffic } from './report';
import { attachCgroupSlot, attachFloorCgroup, attachTcSlot, connectUs, measureTraffic, startTrafficLab, type Figures, type TrafficLab } from './traffic';

const num = (name: string, dflt: number): number => {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isFinite(v) || v <= 0 || v > 1e7) throw new Error(`${name} must be a positive number, got ${JSON.stringify(process.env[name])}`);
  return v;
};
const PP_ROUNDS = num('NF_BENCH_PP_ROUNDS', 11);
const PP_REPEAT = num('NF_BENCH_PP_REPEAT', 200_000);
const ROUNDS = num('NF_BENCH_ROUNDS', 5);
const IPERF_SECONDS = num('NF_BENCH_IPERF_SECONDS', 1.5);
const RR_SECONDS = num('NF_BENCH_RR_SECONDS', 1);
const CONNECT_SECONDS = num('NF_BENCH_CONNECT_SECONDS', 1);
const OTHER_SLOTS = 999;

/** Everything the run opened, closed in reverse order at the end (also on failure). */
class Owned {
  readonly #closers: (() => void | Promise<void>)[] = [];
  add<T extends { close(): void | Promise<void> }>(x: T): T {
    this.#closers.push(() => x.close());
    return x;
  }
  defer(fn: () => void | Promise<void>): void {
    this.#closers.push(fn);
  }
  async closeAll(): Promise<void> {
    while (this.#closers.length) {
      try {
        await this.#closers.pop()?.();
      } catch (e) {
        process.stderr.write(`cleanup: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  }
}

let interrupted: string | undefined;
/**
 * Lets the event loop run once (a signal handler only runs then: the measurements are
 * synchronous) and stops the run, cleaning up, when SIGINT or SIGTERM came.
 */
const checkpoint = async (): Promise<void> => {
  await new Promise((r) => setImmediate(r));
  if (interrupted) throw new Error(`interrupted by ${interrupted}`);
};
const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

interface Rules {
  readonly small: BenchRule[];
  readonly big: BenchRule[];
  readonly others: BenchRule[][];
}

interface Tries {
  readonly small: Attachment;
  readonly big: Attachment;
  readonly others: Attachment[];
}

/** The attachments' tries, created and filled as the daemon does (one v6 trie, empty, shared: the packets are IPv4). */
function makeTries(own: Owned, rules: Rules): Tries {
  const v6 = own.add(createRulesTrie(6, 65_536));
  const small = { slot: MEASURED_SLOT, v4: own.add(createRulesTrie(4, 65_536, rules.small)), v6 };
  const big = { slot: MEASURED_SLOT, v4: own.add(createRulesTrie(4, 131_072, rules.big)), v6 };
  const others = rules.others.map((r, i) => ({ slot: MEASURED_SLOT + 1 + i, v4: own.add(createRulesTrie(4, 1024, r)), v6 }));
  return { small, big, others };
}

interface PerPacket {
  /** ns per packet by program key, one figure per round. */
  readonly ns: Map<string, number[]>;
  readonly layout: Collection;
  readonly hwLoadMs: number;
}

/** Section 1 and the per-packet half of section 2. */
async function perPacket(own: Owned, rules: Rules, tries: Tries, objs: { ref: string; layout: string }): Promise<PerPacket> {
  const floor = own.add(loadCollection(objectPath('benchFloor'), { programs: [OBJECTS.benchFloor.programs.tc.name, OBJECTS.benchFloor.programs.egress.name] }));
  const ref10 = own.add(referenceSet(objs.ref, rules.small));
  const refBig = own.add(referenceSet(objs.ref, rules.big));
  const others = tries.others;
  const sets = {
    tc10: own.add(testRunHostSet('tc', tries.small, [])),
    tcBig: own.add(testRunHostSet('tc', tries.big, [])),
    tc1000: own.add(testRunHostSet('tc', tries.big, others)),
    cg10: own.add(testRunHostSet('cgroup', tries.small, [])),
    cgBig: own.add(testRunHostSet('cgroup', tries.big, [])),
    cg1000: own.add(testRunHostSet('cgroup', tries.big, others)),
    // mode DISABLED: finding the slot, its config and a counter, nothing else (what the layout costs per packet)
    tcOff: own.add(testRunHostSet('tc', tries.big, others, 'DISABLED')),
    cgOff: own.add(testRunHostSet('cgroup', tries.big, others, 'DISABLED')),
  };
  const { coll: layout, hwLoadMs } = layoutSet(objs.layout, { a: tries.big, rules: rules.big }, others.map((a, i) => ({ a, rules: rules.others[i] as BenchRule[] })));
  own.add(layout);
  const tcOk = (r: number): boolean => !isTcDrop(r);
  const refTcOk = (r: number): boolean => r === 0; // TC_ACT_OK only when the look-up hit
  const skbOk = (r: number): boolean => r === 1;
  const tcIn = OBJECTS.tc.programs.ingress.name;
  const skb = OBJECTS.cgroup.programs.egress.name;
  const progs: Timed[] = [
    { key: 'tc floor', prog: floor.program(OBJECTS.benchFloor.programs.tc.name), allowed: tcOk, allowsAll: true },
    { key: 'tc ref 10', prog: ref10.program('pf_tc_egress'), allowed: refTcOk },
    { key: 'tc ours 10', prog: sets.tc10.program(tcIn), allowed: tcOk },
    { key: 'tc ref big', prog: refBig.program('pf_tc_egress'), allowed: refTcOk },
    { key: 'tc ours big', prog: sets.tcBig.program(tcIn), allowed: tcOk },
    { key: 'tc ours 1000', prog: sets.tc1000.program(tcIn), allowed: tcOk },
    { key: 'tc ours off', prog: sets.tcOff.program(tcIn), allowed: tcOk, allowsAll: true },
    { key: 'layout mm', prog: layout.program('lay_mm_tc'), allowed: refTcOk },
    { key: 'layout hw', prog: layout.program('lay_hw_tc'), allowed: refTcOk },
    { key: 'skb floor', prog: floor.program(OBJECTS.benchFloor.programs.egress.name), allowed: skbOk, allowsAll: true },
    { key: 'skb ref 10', prog: ref10.program('pf_cgskb_egress'), allowed: skbOk },
    { key: 'skb ours 10', prog: sets.cg10.program(skb), allowed: skbOk },
    { key: 'skb ref big', prog: refBig.program('pf_cgskb_egress'), allowed: skbOk },
    { key: 'skb ours big', prog: sets.cgBig.program(skb), allowed: skbOk },
    { key: 'skb ours 1000', prog: sets.cg1000.program(skb), allowed: skbOk },
    { key: 'skb ours off', prog: sets.cgOff.program(skb), allowed: skbOk, allowsAll: true },
  ];
  const frame = synFrame(SERVER);
  checkVerdicts(progs, frame, synFrame(NOT_ALLOWED));
  return { ns: await timeInterleaved(progs, frame, PP_ROUNDS, PP_REPEAT, checkpoint), layout, hwLoadMs };
}

/** The user-space half of section 2, with the bulk load and single update of section 3 (ours: into an inner trie). */
async function layoutUserSpace(rules: Rules, tries: Tries, layout: Collection): Promise<LayoutUserSpace> {
  const outer = layout.map('mm_outer');
  const hw = layout.map('hw_rules');
  const other = tries.others[0] as Attachment;
  const memory = { mmTries: [tries.big, ...tries.others].reduce((n, a) => n + memlockOf(a.v4), 0), mmOuter: memlockOf(outer), hw: memlockOf(hw) };
  const read = { mmBig: readBackOwnTrie(tries.big.v4), mmSmall: readBackOwnTrie(other.v4), hwBig: readBackHostWide(hw, MEASURED_SLOT), hwSmall: readBackHostWide(hw, other.slot) };
  await checkpoint();
  // bulk load into a fresh inner trie (what an attach with 100,000 entries does), then drop it
  const e = oursEncoded(rules.big);
  let fresh: BpfMap | undefined = createRulesTrie(4, 131_072);
  let small: BpfMap | undefined;
  try {
    const t0 = process.hrtime.bigint();
    fresh.updateBatch(e.keys, e.values, e.count);
    const bulkMs = msSince(t0);
    // one entry rewritten in place in the 100,000-entry trie (the count stays the same)
    const k = e.keys.subarray(0, 8);
    const v = e.values.subarray(0, 16);
    const n = 20_000;
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) tries.big.v4.update(k, v);
    const updateUs = (msSince(t1) * 1e3) / n;
    // drops: slots past the ones in use; the tries are referenced by the slot and our fd only
    small = createRulesTrie(4, 1024, rules.others[0]);
    const spare = tries.others.length + 10;
    outer.update(encodeSlot(spare), encodeSlot(fresh.fd));
    outer.update(encodeSlot(spare + 1), encodeSlot(small.fd));
    const mmBig = dropOwnTrie(outer, encodeSlot(spare), fresh);
    const mmSmall = dropOwnTrie(outer, encodeSlot(spare + 1), small);
    fresh = small = undefined;
    const hwOther = hostWideEncoded(other.slot, rules.others[0] as BenchRule[]);
    const hwSmall = dropHostWide(hw, hwOther.keys, hwOther.count);
    const hwMeasured = hostWideEncoded(MEASURED_SLOT, rules.big);
    const hwBig = dropHostWide(hw, hwMeasured.keys, hwMeasured.count);
    return { bulkMs, updateUs, read, drop: { mmBig, mmSmall, hwBig, hwSmall }, memory };
  } finally {
    fresh?.close();
    small?.close();
  }
}

/** Section 3's traffic: the host set loaded as the daemon does (tc, then cgroup, over the same pinned host maps). */
async function traffic(own: Owned, lab: Lab, tool: string, tries: Tries): Promise<Traffic & { hostDir: string }> {
  const t: TrafficLab = await startTrafficLab(lab, tool);
  const hostDir = join('/sys/fs/bpf', `nfbench-${process.pid}`, '_host');
  mkdirSync(hostDir, { recursive: true });
  own.defer(() => rmSync(join(hostDir, '..'), { recursive: true, force: true }));
  const tc = own.add(loadCollection(objectPath('tc'), { pinMaps: { dir: hostDir, maps: hostPinnedMaps('tc') } }));
  const cg = own.add(loadCollection(objectPath('cgroup'), { pinMaps: { dir: hostDir, maps: hostPinnedMaps('cgroup') } }));
  const floor = own.add(loadCollection(objectPath('benchFloor')));
  // slots 1/2: TC with 10 / 100,000 entries; 3/4: cgroups with 10 / 100,000 (the same tries)
  const slots = { tc10: 1, tcBig: 2, cg10: 3, cgBig: 4 };
  for (const [slot, a] of [[slots.tc10, tries.small], [slots.tcBig, tries.big], [slots.cg10, tries.small], [slots.cgBig, tries.big]] as const) useSlot(tc, { ...a, slot });
  const cgs: Record<'plain' | 'floor' | 'small' | 'big', LabCgroup> = { plain: lab.cgroup('plain'), floor: lab.cgroup('floor'), small: lab.cgroup('small'), big: lab.cgroup('big') };
  const keep: BpfLink[] = [...attachCgroupSlot(cg, cgs.small.path, slots.cg10), ...attachCgroupSlot(cg, cgs.big.path, slots.cgBig), ...attachFloorCgroup(floor, cgs.floor.path)];
  own.defer(() => keep.forEach((l) => l.close()));
  const scenarios: { name: string; cg: LabCgroup; tcSlot?: number }[] = [
    { name: 'baseline (no filter)', cg: cgs.plain },
    { name: 'TC filter, 10 entries', cg: cgs.plain, tcSlot: slots.tc10 },
    { name: `TC filter, ${BIG} entries`, cg: cgs.plain, tcSlot: slots.tcBig },
    { name: 'cgroup filter, 10 entries', cg: cgs.small },
    { name: `cgroup filter, ${BIG} entries`, cg: cgs.big },
  ];
  const results = new Map<string, Figures[]>(scenarios.map((s) => [s.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const sc of scenarios) {
      await checkpoint();
      const link = sc.tcSlot === undefined ? undefined : attachTcSlot(tc, t, sc.tcSlot);
      try {
        results.get(sc.name)?.push(measureTraffic(t, tool, sc.cg, IPERF_SECONDS, RR_SECONDS));
      } finally {
        link?.close();
      }
    }
  }
  const rows = scenarios.map((sc): [string, Figures] => {
    const fs = results.get(sc.name) ?? [];
    return [sc.name, { gbps: median(fs.map((f) => f.gbps)), rr: median(fs.map((f) => f.rr)) }];
  });
  const conn = new Map<string, number[]>();
  for (let round = 0; round < 3; round++) {
    for (const [label, c] of [['no programs', cgs.plain], ['floor (allow-all programs)', cgs.floor], [`netfence cgroup programs, ${BIG} entries`, cgs.big]] as const) {
      await checkpoint();
      conn.set(label, [...(conn.get(label) ?? []), connectUs(t, tool, c, CONNECT_SECONDS)]);
    }
  }
  return { rows, connect: new Map([...conn].map(([k, xs]) => [k, median(xs)])), hostDir };
}

/** Mean ms to load an object (open, create or reuse its maps, verify every program), over n loads after one warm-up. */
function loadMs(path: string, opts: LoadOptions = {}, n = 5): number {
  loadCollection(path, opts).close();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) loadCollection(path, opts).close();
  return msSince(t0) / n;
}

/**
 * Load time of each shipped object: fresh (it creates the host maps: a first start) and over the
 * pinned host maps of `hostDir` (what a restart or an upgrade does: verification, no map creation).
 */
function objectLoads(hostDir: string): ObjectLoad[] {
  const objects: ('tc' | 'cgroup' | 'sever')[] = ['tc', 'cgroup', 'sever'];
  const out: ObjectLoad[] = objects.map((n) => ({
    file: OBJECTS[n].file,
    freshMs: loadMs(objectPath(n)),
    pinnedMs: loadMs(objectPath(n), { pinMaps: { dir: hostDir, maps: n === 'sever' ? SEVER_SHARED_MAPS : hostPinnedMaps(n) } }),
  }));
  out.push({ file: `${OBJECTS.benchFloor.file} (floor)`, freshMs: loadMs(objectPath('benchFloor')) });
  return out;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  ensureBpffs();
  const started = Date.now();
  const machineAtStart = machine();
  const own = new Owned();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (interrupted = sig));
  try {
    const tmp = mkdtempSync(join(tmpdir(), 'nf-bench-'));
    own.defer(() => rmSync(tmp, { recursive: true, force: true }));
    const tool = join(tmp, 'nfbench');
    execFileSync('gcc', ['-O2', '-o', tool, join(__dirname, 'nfbench.c'), '-lpthread']);
    const objs = { ref: buildBenchObject('minimal-lpm', tmp), layout: buildBenchObject('layout_lpm', tmp) };
    const lab: Lab = createLab();
    own.defer(() => lab.close());
    const rules: Rules = { small: smallPolicy(), big: bigPolicy(), others: Array.from({ length: OTHER_SLOTS }, (_, i) => otherPolicy(i, OTHER_ENTRIES)) };
    const tries = makeTries(own, rules);
    await checkpoint();
    const pp = await perPacket(own, rules, tries, objs);
    await checkpoint();
    const us = await layoutUserSpace(rules, tries, pp.layout);
    await checkpoint();
    const tr = await traffic(own, lab, tool, tries);
    await checkpoint();
    const loads = objectLoads(tr.hostDir);
    process.stdout.write(
      report({
        settings: { ppRounds: PP_ROUNDS, ppRepeat: PP_REPEAT, rounds: ROUNDS, iperfSeconds: IPERF_SECONDS, rrSeconds: RR_SECONDS, connectSeconds: CONNECT_SECONDS, otherSlots: OTHER_SLOTS },
        machine: machineAtStart,
        loadEnd: loadavg().map((l) => l.toFixed(2)).join(' '),
        entries: { small: rules.small.length, big: rules.big.length, bigDeny: rules.big.filter((r) => r.deny).length, others: rules.others.reduce((n, r) => n + r.length, 0) },
        ns: pp.ns,
        hwLoadMs: pp.hwLoadMs,
        us,
        traffic: tr,
        loads,
        seconds: (Date.now() - started) / 1000,
      }),
    );
  } finally {
    await own.closeAll();
  }
}

function machine(): string {
  const model = cpus()[0]?.model ?? '?';
  return `${hostname()}, ${cpus().length} x ${model}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  });
}
