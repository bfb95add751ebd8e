// The flood benchmark's printed report: medians of the interleaved rounds, ratios from the same
// run, and what the CPU figures count.
import { SINK, type FloodSample } from './flood-lab';
import { median } from './per-packet';
import type { Figures } from './traffic';

export const FILTERS = ['none', 'tc', 'xdp-native', 'xdp-generic'] as const;
export type Filter = (typeof FILTERS)[number];

const LABEL: Record<Filter, string> = { none: 'no filter', tc: 'TC (tcx ingress)', 'xdp-native': 'XDP native', 'xdp-generic': 'XDP generic' };

export interface TrafficSample extends Figures {
  /** Packets the slot counted ALLOWED during the measurement (0 without a filter). */
  readonly judged: number;
}

export interface FloodReportInput {
  readonly machine: string;
  readonly loadEnd: string;
  readonly settings: { floodSeconds: number; floodRounds: number; trafficRounds: number; iperfSeconds: number; rrSeconds: number; senderCpu: number };
  readonly autoPick: string;
  readonly eventsLost: bigint;
  readonly flood: ReadonlyMap<Filter, readonly FloodSample[]>;
  readonly traffic: ReadonlyMap<Filter, readonly TrafficSample[]>;
  readonly seconds: number;
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
const mpps = (x: number): string => `${(x / 1e6).toFixed(3)} M`;
const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const ratio = (a: number, b: number): string => (b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}x` : 'n/a');

/**
 * Per-round figures of one flood sample; `pkts` = drops (a filter) or packets forwarded to the
 * sink (no filter). recvNs: softirq time on the sender's CPU per pkt; hostNs: the whole machine
 * minus the sender's own sending; literalNs: (machine - sender) uncorrected; cpuNsSent: the
 * sender's CPU's busy time per datagram sent (sending and receive path together).
 */
function perRound(f: Filter, s: FloodSample): { sentPs: number; dropPs: number; recvNs: number; hostNs: number; literalNs: number; cpuNsSent: number; lost: number } {
  const pkts = f === 'none' ? s.forwarded : s.dropped;
  const w = s.cpu;
  return {
    sentPs: s.sent / s.seconds,
    dropPs: s.dropped / s.seconds,
    recvNs: (w.softirq / pkts) * 1e9,
    hostNs: (w.host / pkts) * 1e9,
    literalNs: ((w.machine - w.sender) / pkts) * 1e9,
    cpuNsSent: (w.cpuBusy / s.sent) * 1e9,
    lost: f === 'none' ? 0 : s.sent - s.dropped - s.reachedSink,
  };
}

type Row = ReturnType<typeof perRound>;
const med = (rows: readonly Row[], k: keyof Row): number => median(rows.map((r) => r[k]));

function floodSection(input: FloodReportInput, rows: Map<Filter, Row[]>): string[] {
  const st = input.settings;
  const k = st.senderCpu;
  const out: string[] = [
    `1. A workload floods a blocked destination: UDP to ${SINK}:9 (60-byte frames, sendmmsg x64, one sender pinned to CPU ${k}),`,
    `   ${st.floodSeconds} s a round, ${st.floodRounds} rounds of each filter interleaved (order rotated), medians. The filter is on h's end of the`,
    '   workload\'s veth, allowlist mode (10 entries), the destination not allowed; without a filter h forwards the flood to the sink netns.',
    '',
    `${pad('filter', 17)}${lpad('sent/s', 10)}${lpad('dropped/s', 11)}${lpad('reached sink', 14)}${lpad('lost', 6)}${lpad('recv ns/pkt', 13)}${lpad('host ns/pkt', 13)}${lpad('literal', 9)}${lpad(`cpu${k} ns/sent`, 15)}  recv ns/pkt by round`,
  ];
  for (const f of FILTERS) {
    const r = rows.get(f) ?? [];
    const sink = (input.flood.get(f) ?? []).reduce((n, s) => n + s.reachedSink, 0);
    const ns = (key: keyof Row, w: number): string => lpad(med(r, key).toFixed(0), w);
    out.push(
      `${pad(LABEL[f], 17)}${lpad(mpps(med(r, 'sentPs')), 10)}${lpad(mpps(med(r, 'dropPs')), 11)}${lpad(int(sink), 14)}${lpad(int(med(r, 'lost')), 6)}${ns('recvNs', 13)}${ns('hostNs', 13)}${ns('literalNs', 9)}${ns('cpuNsSent', 15)}  ${r.map((x) => x.recvNs.toFixed(0)).join(' ')}`,
    );
  }
  const cpuLine = (f: Filter): string => {
    const s = input.flood.get(f) ?? [];
    const m = (key: keyof FloodSample['cpu']): string => median(s.map((x) => x.cpu[key] / x.seconds)).toFixed(2);
    return `   ${pad(LABEL[f], 17)} machine ${m('machine')}  cpu${k} ${m('cpuBusy')}  sender ${m('sender')}  softirq on cpu${k} ${m('softirq')}  ksoftirqd/${k} ${m('ksoftirqd')}  host ${m('host')}  steal ${m('steal')}`;
  };
  out.push(
    '',
    '   pkt = a packet the filter dropped (its BLOCKED counter); for "no filter" a packet h forwarded to the sink. reached sink = IPv4',
    '   packets received in the sink netns, all rounds (0 asserted in every filter round). lost = sent - dropped - reached sink.',
    '   What the host pays per pkt, beyond the sender building and sending its datagrams (socket, UDP/IP output, veth xmit into the',
    `   peer's backlog or XDP ring: the sender's own stime, not counted): the receive path (veth NAPI or backlog, the filter, freeing`,
    `   the packet; no filter: forwarding and the sink), all of it softirq on the sending CPU. recv ns/pkt = softirq time of cpu${k}`,
    '   (/proc/stat) per pkt: that work alone, immune to other processes. host ns/pkt = the whole machine (/proc/stat user+nice+system',
    "   +irq+softirq) minus the sender's own sending (its utime+stime from /proc/<pid>/stat minus the softirq charged to it): the same",
    '   plus whatever else ran on this shared VM. This kernel accounts CPU by the tick (no IRQ_TIME_ACCOUNTING): a softirq that runs',
    "   inline as a send call re-enables bottom halves is charged to the sender's stime, so literal = (machine - sender) / pkt misses",
    `   it. cpu${k} ns/sent = busy time of the sender's CPU per datagram sent (send + receive path: the sender keeps it at 100%).`,
    "   The event ring is not consumed during the run: once full, a drop's event is one failed reserve",
    `   (${int(Number(input.eventsLost))} counted EVENTS_LOST), alike for TC and XDP.`,
    '   CPU seconds per second of flood (medians):',
    ...FILTERS.map(cpuLine),
  );
  return out;
}

function trafficSection(input: FloodReportInput): string[] {
  const st = input.settings;
  const m = (f: Filter, k: 'gbps' | 'rr'): number => median((input.traffic.get(f) ?? []).map((x) => x[k]));
  const out = [
    `2. Allowed traffic w -> h through each filter (destination allowed): iperf3 TCP ${st.iperfSeconds} s, 1-byte RR ${st.rrSeconds} s, ${st.trafficRounds} rounds interleaved, medians.`,
    '',
    `${pad('filter', 18)}${lpad('TCP Gbit/s', 12)}${lpad('vs none', 9)}${lpad('RR/s', 10)}${lpad('vs none', 9)}${lpad('judged', 10)}`,
  ];
  for (const f of FILTERS) {
    const judged = median((input.traffic.get(f) ?? []).map((x) => x.judged));
    out.push(`${pad(LABEL[f], 18)}${lpad(m(f, 'gbps').toFixed(2), 12)}${lpad(ratio(m(f, 'gbps'), m('none', 'gbps')), 9)}${lpad(int(m(f, 'rr')), 10)}${lpad(ratio(m(f, 'rr'), m('none', 'rr')), 9)}${lpad(int(judged), 10)}`);
  }
  out.push(
    '   judged = packets the slot counted ALLOWED in a round (median: the filter saw the traffic; nothing was blocked, checked).',
    '   An XDP program on one end of a veth turns software GSO off on the other end (the kernel\'s veth_fix_features), so with XDP',
    "   native the workload's TCP leaves in MTU-sized packets instead of 64 KB ones: more packets judged, lower throughput.",
  );
  return out;
}

/** Section 3: the XDP/TC ratios of what the host pays per dropped packet. */
function pointSection(input: FloodReportInput, rows: Map<Filter, Row[]>, k: number): string[] {
  const m = (f: Filter, key: keyof Row): number => med(rows.get(f) ?? [], key);
  const tc = m('tc', 'recvNs');
  const xn = m('xdp-native', 'recvNs');
  const gbps = (f: Filter): number => median((input.traffic.get(f) ?? []).map((x) => x.gbps));
  const gbpsRatio = (f: Filter): string => ratio(gbps(f), gbps('none'));
  const paired = (rows.get('xdp-native') ?? []).map((x, i) => ratio(x.recvNs, rows.get('tc')?.[i]?.recvNs ?? NaN));
  const verdict =
    xn < tc
      ? `XDP native costs the host ${ratio(xn, tc)} of what TC costs per dropped packet: ${xn.toFixed(0)} vs ${tc.toFixed(0)} ns (${((1 - xn / tc) * 100).toFixed(0)}% less)`
      : `XDP native is NOT cheaper than TC on this veth: ${xn.toFixed(0)} vs ${tc.toFixed(0)} ns of host CPU per dropped packet (${ratio(xn, tc)}, ${((xn / tc - 1) * 100).toFixed(0)}% more)`;
  return [
    "3. A hostile workload's flood costs the host less with XDP: by how much (receive path per dropped packet, same run)",
    `   ${verdict};`,
    `   XDP native/TC paired by round ${paired.join(' ')}; XDP generic/TC ${ratio(m('xdp-generic', 'recvNs'), tc)} (${m('xdp-generic', 'recvNs').toFixed(0)} ns);`,
    `   whole machine (host ns/pkt): XDP native/TC ${ratio(m('xdp-native', 'hostNs'), m('tc', 'hostNs'))}, generic/TC ${ratio(m('xdp-generic', 'hostNs'), m('tc', 'hostNs'))};` +
      ` per datagram on the sending CPU: TC ${m('tc', 'cpuNsSent').toFixed(0)}, XDP native ${m('xdp-native', 'cpuNsSent').toFixed(0)}, generic ${m('xdp-generic', 'cpuNsSent').toFixed(0)} ns;`,
    `   drops sustained by one sending CPU (cpu${k}): TC ${mpps(m('tc', 'dropPs'))}/s, XDP native ${mpps(m('xdp-native', 'dropPs'))}/s (${ratio(m('xdp-native', 'dropPs'), m('tc', 'dropPs'))}), generic ${mpps(m('xdp-generic', 'dropPs'))}/s;`,
    `   allowed TCP throughput against no filter: TC ${gbpsRatio('tc')}, XDP native ${gbpsRatio('xdp-native')}, generic ${gbpsRatio('xdp-generic')} (section 2).`,
    "   On a veth the sender's socket has already built the skb, and both native XDP on a veth and generic XDP first copy a packet",
    '   with less than 256 bytes of headroom (every locally sent one) into a new buffer; what XDP can skip is only the stack after',
    '   it. A NIC driver running XDP before it allocates any skb is where XDP saves the most (not measured here).',
  ];
}

export function floodReport(input: FloodReportInput): string {
  const rows = new Map<Filter, Row[]>(FILTERS.map((f) => [f, (input.flood.get(f) ?? []).map((s) => perRound(f, s))]));
  return [
    `XDP flood benchmark (npm run bench:flood -w @netfence/bpf-programs), one run, ${input.seconds.toFixed(0)} s`,
    `machine: ${input.machine}; load average at the end ${input.loadEnd}`,
    `XDP mode 'auto' picks on the veth: ${input.autoPick} (both native and generic are measured)`,
    '',
    ...floodSection(input, rows),
    '',
    ...trafficSection(input),
    '',
    ...pointSection(input, rows, input.settings.senderCpu),
    '',
  ].join('\n');
}
