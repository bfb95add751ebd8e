// What the benchmark prints: its figures as measured, with the ratios of one run.
import type { HostWideDrop, OwnTrieDrop, ReadBack } from './layout-costs';
import { median } from './per-packet';
import type { Figures } from './traffic';

export interface LayoutUserSpace {
  /** 100,000 entries into a fresh attachment trie (ours). */
  readonly bulkMs: number;
  /** One entry rewritten in the 100,000-entry trie. */
  readonly updateUs: number;
  readonly read: { readonly mmBig: ReadBack; readonly mmSmall: ReadBack; readonly hwBig: ReadBack; readonly hwSmall: ReadBack };
  readonly drop: { readonly mmBig: OwnTrieDrop; readonly mmSmall: OwnTrieDrop; readonly hwBig: HostWideDrop; readonly hwSmall: HostWideDrop };
  /** memlock bytes: every attachment's trie, the outer array, the host-wide trie. */
  readonly memory: { readonly mmTries: number; readonly mmOuter: number; readonly hw: number };
}

export interface Traffic {
  readonly rows: readonly [string, Figures][];
  /** Mean µs per connect() by scenario. */
  readonly connect: ReadonlyMap<string, number>;
}

export interface ObjectLoad {
  readonly file: string;
  /** Creating its maps (a host's first start). */
  readonly freshMs: number;
  /** Over the pinned host maps (a restart or an upgrade). */
  readonly pinnedMs?: number;
}

export interface BenchResult {
  readonly settings: { ppRounds: number; ppRepeat: number; rounds: number; iperfSeconds: number; rrSeconds: number; connectSeconds: number; otherSlots: number };
  readonly machine: string;
  readonly loadEnd: string;
  readonly entries: { small: number; big: number; bigDeny: number; others: number };
  /** ns per packet by program key (see bench.ts perPacket), one figure per interleaved round. */
  readonly ns: ReadonlyMap<string, readonly number[]>;
  /** The measured attachment's 100,000 entries into the host-wide trie (the others' already in). */
  readonly hwLoadMs: number;
  readonly us: LayoutUserSpace;
  readonly traffic: Traffic;
  readonly loads: readonly ObjectLoad[];
  readonly seconds: number;
}

const TARGET = 1.3;
const f0 = (n: number): string => n.toFixed(0);
const f2 = (n: number): string => n.toFixed(2);
const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(0));
const mib = (b: number): string => (b < 1048576 ? `${(b / 1024).toFixed(0)} KiB` : `${(b / 1048576).toFixed(1)} MiB`);

/** Median ns per packet of a program over the rounds. */
const nsOf = (r: BenchResult, k: string): number => median(r.ns.get(k) ?? []);

/** a/b within each round (the two ran back to back), as "median [min-max]". */
function pairedRatio(r: BenchResult, a: string, b: string): { median: number; text: string } {
  const xs = r.ns.get(a) ?? [];
  const ys = r.ns.get(b) ?? [];
  const q = xs.map((x, i) => x / (ys[i] ?? NaN)).sort((p, n) => p - n);
  const m = median(q);
  return { median: m, text: `${f2(m)}x [${f2(q[0] ?? NaN)}-${f2(q[q.length - 1] ?? NaN)}]` };
}

function perPacketSection(r: BenchResult): string[] {
  const ns = (k: string): number => nsOf(r, k);
  const s = r.settings;
  const big = r.entries.big;
  const out = [
    `1. Per packet: BPF_PROG_TEST_RUN of one IPv4 TCP SYN to 10.200.1.1, allowed by every policy (each program's verdict checked on`,
    `   every run; a SYN to 198.51.100.77 checked to drop first). ns per packet, median of ${s.ppRounds} interleaved rounds x ${s.ppRepeat} runs;`,
    `   the floor is an allow-all program: what the test-run loop itself costs.`,
    '',
    `   hook        policy                                floor  reference   ours  ours/ref  (ours-floor)/(ref-floor)`,
  ];
  const rows: [string, string, 'tc' | 'skb', string, string][] = [
    ['TC', `${r.entries.small} entries`, 'tc', 'ref 10', 'ours 10'],
    ['TC', `${big} entries`, 'tc', 'ref big', 'ours big'],
    ['TC', `${big} + ${s.otherSlots} other attachments`, 'tc', 'ref big', 'ours 1000'],
    ['cgroup_skb', `${r.entries.small} entries`, 'skb', 'ref 10', 'ours 10'],
    ['cgroup_skb', `${big} entries`, 'skb', 'ref big', 'ours big'],
    ['cgroup_skb', `${big} + ${s.otherSlots} other attachments`, 'skb', 'ref big', 'ours 1000'],
  ];
  for (const [hook, policy, k, ref, ours] of rows) {
    const [fl, rf, ou] = [ns(`${k} floor`), ns(`${k} ${ref}`), ns(`${k} ${ours}`)];
    out.push(`   ${hook.padEnd(12)}${policy.padEnd(36)}${f0(fl).padStart(7)}${f0(rf).padStart(11)}${f0(ou).padStart(7)}${`${f2(ou / rf)}x`.padStart(10)}${`${f2((ou - fl) / (rf - fl))}x`.padStart(12)}`);
  }
  const verdict = (k: 'tc' | 'skb'): string => {
    const p = pairedRatio(r, `${k} ours big`, `${k} ref big`);
    return `${p.text} (${p.median <= TARGET ? 'met' : 'NOT met'})`;
  };
  out.push(
    `   target: ours <= ${TARGET}x the reference at ${big} entries. ours/ref within each round, median [min-max] of ${s.ppRounds}:`,
    `     TC ${verdict('tc')}, cgroup_skb ${verdict('skb')}`,
    `   more attachments, same cost: ours with ${s.otherSlots} other attachments in the host maps / ours alone, ${big} entries, within each round:`,
    `     TC ${pairedRatio(r, 'tc ours 1000', 'tc ours big').text}, cgroup_skb ${pairedRatio(r, 'skb ours 1000', 'skb ours big').text}`,
    `   (the reference row of "+ ${s.otherSlots} other attachments" is its ${big}-entry figure: it has no attachments)`,
    `   where ours spends it: the same slot in mode DISABLED (find the slot, read its config, count; no parse, no look-up):`,
    `     TC ${f0(ns('tc ours off'))} ns, cgroup_skb ${f0(ns('skb ours off'))} ns, against the floor's ${f0(ns('tc floor'))} / ${f0(ns('skb floor'))} ns; the rest of ours is the parse`,
    `     (this packet read in place: Ethernet, IP, ports), the decision, the rules look-ups (outer array, trie) and the coarse clock`,
    `     read of the allow entry's last-seen refresh.`,
    '',
    `   ${big} entries = ${r.entries.bigDeny} deny + allows, /32s and shorter prefixes (/16 to /28) spread over 10.0.0.0/8, in ONE attachment's trie;`,
    `   the other attachments: slots 2-${s.otherSlots + 1}, ${r.entries.others / s.otherSlots} entries each, active config, own tries, TC bound to (absent) devices.`,
    `   reference: bench/minimal-lpm.bpf.c (pf_tc_egress, pf_cgskb_egress), one LPM look-up, its lpm map holding the same keys.`,
    `   ours TC: netfence_tc_ingress of tc_filter.bpf.o, the slot bound to {lo, ingress} in dev_slots (a test run's skb is on lo).`,
    `   ours cgroup_skb: netfence_egress of the fixed-slot test build of cgroup_filter.bpf.o, the same code reading slot 1 instead of`,
    `   its cgroup storage: BPF_PROG_TEST_RUN gives a cgroup program zeroed cgroup storage on every run, so the shipped build would`,
    `   read slot 0 there and drop.`,
  );
  return out;
}

function layoutSection(r: BenchResult): string[] {
  const ns = (k: string): number => nsOf(r, k);
  const { read, drop, memory } = r.us;
  const big = r.entries.big;
  const ref = ns('tc ref big');
  const col = (a: string, b: string, c: string): string => `   ${a.padEnd(42)}${b.padEnd(44)}${c}`;
  const freed = (d: OwnTrieDrop): string => `${f0(d.syscallsUs)} us (delete the slot, close the fd)`;
  const walk = (x: ReadBack): string => `${ms(x.ms)} ms (walks ${x.walked ?? '?'} keys for ${x.entries})`;
  return [
    `2. Map layout. Chosen: arrays of maps (rules_v4 / rules_v6 [slot]) holding each attachment's own LPM trie. Alternative measured:`,
    `   one host-wide LPM trie keyed {prefixlen, u32 slot big-endian, address}. Both hold slot 1 = the same ${big} entries and`,
    `   slots 2-${r.settings.otherSlots + 1} = ${r.entries.others} entries; bench/layout_lpm.bpf.c has one program per layout in the reference's shape`,
    `   (Ethernet + IPv4, one rules look-up, a counter); timed in the rounds of 1.:`,
    `     reference, its own trie, no slot            ${f0(ref).padStart(5)} ns`,
    `     map of maps: outer[slot], then its trie      ${f0(ns('layout mm')).padStart(5)} ns   ${pairedRatio(r, 'layout mm', 'tc ref big').text} the reference (within each round)`,
    `     host-wide trie {slot, address}               ${f0(ns('layout hw')).padStart(5)} ns   ${pairedRatio(r, 'layout hw', 'tc ref big').text}`,
    `     host-wide / map of maps                                 ${pairedRatio(r, 'layout hw', 'layout mm').text}`,
    `   user space (koffi + libbpf, one syscall per entry: LPM tries have no batch ops):`,
    col('', 'map of maps', 'host-wide trie'),
    col(`load the ${big} entries`, `${ms(r.us.bulkMs)} ms (into a fresh trie)`, `${ms(r.hwLoadMs)} ms (${r.entries.others} others already in)`),
    col(`read back the ${big}-entry attachment`, `${ms(read.mmBig.ms)} ms (its ${read.mmBig.entries} entries)`, walk(read.hwBig)),
    col(`read back a ${r.entries.others / r.settings.otherSlots}-entry attachment`, `${ms(read.mmSmall.ms)} ms (its ${read.mmSmall.entries} entries)`, walk(read.hwSmall)),
    col(`drop the ${big}-entry attachment`, freed(drop.mmBig), `${ms(drop.hwBig.ms)} ms (${drop.hwBig.deleted} deletes)`),
    col(`drop a ${r.entries.others / r.settings.otherSlots}-entry attachment`, freed(drop.mmSmall), `${ms(drop.hwSmall.ms)} ms (${drop.hwSmall.deleted} deletes)`),
    col('kernel memory of the entries (memlock)', `${mib(memory.mmTries)} in ${r.settings.otherSlots + 1} tries + ${mib(memory.mmOuter)} outer array`, mib(memory.hw)),
    `   (drop, map of maps: what the daemon waits for; the kernel frees the trie's nodes afterwards in a worker, after an RCU`,
    `   grace period. Read back: what the daemon does on restart to reconcile; a host-wide trie has no per-slot walk.)`,
  ];
}

function trafficSection(r: BenchResult): string[] {
  const s = r.settings;
  const rows = r.traffic.rows;
  const base = rows[0]?.[1] ?? { gbps: NaN, rr: NaN };
  const out = [
    `3. Real traffic through the filters, veth between two lab netns (iperf3 -t ${s.iperfSeconds}; 1-byte TCP request/response for ${s.rrSeconds} s),`,
    `   attached as the daemon does: one host set (tc, then cgroup objects over the same pinned host maps), a slot per attachment,`,
    `   TC bound (dev_slots) before the TCX link, cgroups in CGROUP_ATTACH_ORDER; median of ${s.rounds} interleaved rounds:`,
    '   scenario                              TCP Gbit/s  ratio   RR/s     ratio',
  ];
  for (const [name, f] of rows) out.push(`   ${name.padEnd(38)}${f2(f.gbps).padStart(10)}  ${(f.gbps / base.gbps).toFixed(3)}  ${f0(f.rr).padStart(7)}  ${(f.rr / base.rr).toFixed(3)}`);
  out.push(`   connect() over the veth (SYN, SYN-ACK), mean per call, median of 3 interleaved ${s.connectSeconds} s runs:`);
  const c = [...r.traffic.connect];
  for (const [label, us] of c) out.push(`     ${label.padEnd(44)}${f2(us).padStart(8)} us`);
  const floor = c.find(([l]) => l.startsWith('floor'))?.[1] ?? NaN;
  const ours = c.find(([l]) => l.startsWith('netfence'))?.[1] ?? NaN;
  out.push(`     netfence / floor: ${(ours / floor).toFixed(3)}`);
  out.push(
    `   map updates from JS: one entry rewritten in the ${r.entries.big}-entry trie ${f2(r.us.updateUs)} us; ${r.entries.big} entries bulk-loaded into a fresh`,
    `   attachment trie ${ms(r.us.bulkMs)} ms`,
    `   object load (open, create or reuse the maps, verify every program), mean of 5. Paid ONCE PER HOST now, not per attachment:`,
    `   every attachment reuses the loaded, pinned programs and only creates its tries, writes its slot and makes its links.`,
    `     object                          fresh (creates the host maps)   over the pinned host maps (restart, upgrade)`,
  );
  for (const l of r.loads) out.push(`     ${l.file.padEnd(32)}${`${ms(l.freshMs)} ms`.padStart(10)}${(l.pinnedMs === undefined ? '-' : `${ms(l.pinnedMs)} ms`).padStart(34)}`);
  return out;
}

/** The whole printout. */
export function report(r: BenchResult): string {
  const out = [
    `netfence bpf-programs benchmark — ${new Date().toISOString()}`,
    `machine: ${r.machine} at start, ${r.loadEnd} at the end`,
    '',
    ...perPacketSection(r),
    '',
    ...layoutSection(r),
    '',
    ...trafficSection(r),
    '',
    `total bench time ${r.seconds.toFixed(1)} s`,
  ];
  return `${out.join('\n')}\n`;
}
