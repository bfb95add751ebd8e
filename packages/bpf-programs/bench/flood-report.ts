// The flood benchmark's printed report: medians of the interleaved rounds, ratios from the same
// run, and what the CPU figures count.
import { ALLOWED_SINK, SINK, SINK_PORT, TAP_SRC, type FloodSample } from './flood-lab';
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
  readonly settings: {
    floodSeconds: number;
    floodRounds: number;
    trafficRounds: number;
    iperfSeconds: number;
    rrSeconds: number;
    tapSeconds: number;
    tapAllowedSeconds: number;
    tapFloorSeconds: number;
    senderCpu: number;
  };
  /** What XDP mode 'auto' picks on each device. */
  readonly autoPick: { veth: string; tap: string };
  readonly eventsLost: bigint;
  readonly flood: ReadonlyMap<Filter, readonly FloodSample[]>;
  readonly traffic: ReadonlyMap<Filter, readonly TrafficSample[]>;
  /** The tap: frames to the blocked SINK, and frames to ALLOWED_SINK. */
  readonly tapFlood: ReadonlyMap<Filter, readonly FloodSample[]>;
  readonly tapAllowed: ReadonlyMap<Filter, readonly FloodSample[]>;
  /** The tap writer's refused 4-byte writes (no filter): the write() system call alone. */
  readonly tapFloor: readonly FloodSample[];
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
    `1. A workload behind a veth floods a blocked destination: UDP to ${SINK}:9 (60-byte frames, sendmmsg x64, one sender pinned to CPU ${k}),`,
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

/**
 * Per-round figures of a tap round. pkt = a frame the filter dropped, or (no filter) one h
 * forwarded. hostNs: everything the host did for the flood per pkt: the writer's whole CPU time
 * (its write() calls: the system call, tun_get_user, the filter, freeing, or forwarding, with the
 * softirq charged to it; and its loop) plus ksoftirqd on its CPU; cpuNsFrame: its CPU's busy time
 * per frame written. For allowed frames and the floor, per frame written (call made).
 */
function tapRound(f: Filter, s: FloodSample): Record<'writtenPs' | 'dropPs' | 'hostNs' | 'cpuNsFrame' | 'lost' | 'devDropped' | 'sinkPs' | 'hostNsFrame' | 'judged', number> {
  const w = s.cpu;
  const host = w.sender + w.ksoftirqd;
  return {
    writtenPs: s.sent / s.seconds,
    dropPs: s.dropped / s.seconds,
    hostNs: (host / (f === 'none' ? s.forwarded : s.dropped)) * 1e9,
    cpuNsFrame: (w.cpuBusy / s.sent) * 1e9,
    lost: s.sent - s.dropped - s.reachedSink,
    devDropped: s.devDropped,
    sinkPs: s.reachedSink / s.seconds,
    hostNsFrame: (host / s.sent) * 1e9,
    judged: s.allowed / s.sent,
  };
}

type TapRow = ReturnType<typeof tapRound>;
const tmed = (rows: readonly TapRow[], k: keyof TapRow): number => median(rows.map((r) => r[k]));
/** Host ns per refused write() (the floor), median of its rounds. */
const floorNs = (input: FloodReportInput): number => median(input.tapFloor.map((s) => tapRound('none', s).hostNsFrame));

function tapFloodTable(input: FloodReportInput, rows: Map<Filter, TapRow[]>, k: number): string[] {
  const floor = floorNs(input);
  const out = [
    `${pad('filter', 17)}${lpad('written/s', 10)}${lpad('dropped/s', 11)}${lpad('reached sink', 14)}${lpad('lost', 6)}${lpad('tap rx_dropped', 16)}${lpad('host ns/pkt', 13)}${lpad('beyond write()', 16)}${lpad(`cpu${k} ns/frame`, 16)}  host ns/pkt by round`,
  ];
  for (const f of FILTERS) {
    const r = rows.get(f) ?? [];
    const sink = (input.tapFlood.get(f) ?? []).reduce((n, x) => n + x.reachedSink, 0);
    const ns = (key: keyof TapRow, w: number): string => lpad(tmed(r, key).toFixed(0), w);
    out.push(
      `${pad(LABEL[f], 17)}${lpad(mpps(tmed(r, 'writtenPs')), 10)}${lpad(mpps(tmed(r, 'dropPs')), 11)}${lpad(int(sink), 14)}${lpad(int(tmed(r, 'lost')), 6)}${lpad(int(tmed(r, 'devDropped')), 16)}` +
        `${ns('hostNs', 13)}${lpad((tmed(r, 'hostNs') - floor).toFixed(0), 16)}${ns('cpuNsFrame', 16)}  ${r.map((x) => x.hostNs.toFixed(0)).join(' ')}`,
    );
  }
  const fr = input.tapFloor.map((s) => tapRound('none', s));
  out.push(
    `${pad('write() floor', 17)}${lpad(mpps(tmed(fr, 'writtenPs')), 10)} calls/s refused at once, no filter: host ns/call ${floor.toFixed(0)} (by round ${fr.map((x) => x.hostNsFrame.toFixed(0)).join(' ')})`,
  );
  return out;
}

function tapAllowedTable(input: FloodReportInput, k: number): string[] {
  const rows = new Map<Filter, TapRow[]>(FILTERS.map((f) => [f, (input.tapAllowed.get(f) ?? []).map((s) => tapRound(f, s))]));
  const m = (f: Filter, key: keyof TapRow): number => tmed(rows.get(f) ?? [], key);
  const out = [
    `${pad('filter', 17)}${lpad('written/s', 10)}${lpad('vs none', 9)}${lpad('reached sink/s', 16)}${lpad('judged/frame', 14)}${lpad('host ns/frame', 15)}${lpad('vs none', 9)}${lpad(`cpu${k} ns/frame`, 16)}`,
  ];
  for (const f of FILTERS) {
    out.push(
      `${pad(LABEL[f], 17)}${lpad(mpps(m(f, 'writtenPs')), 10)}${lpad(ratio(m(f, 'writtenPs'), m('none', 'writtenPs')), 9)}${lpad(mpps(m(f, 'sinkPs')), 16)}${lpad(m(f, 'judged').toFixed(2), 14)}` +
        `${lpad(m(f, 'hostNsFrame').toFixed(0), 15)}${lpad(ratio(m(f, 'hostNsFrame'), m('none', 'hostNsFrame')), 9)}${lpad(m(f, 'cpuNsFrame').toFixed(0), 16)}`,
    );
  }
  return out;
}

/** Section 3: the same flood written into a microVM's tap by a process playing the VMM, then allowed frames. */
function tapSection(input: FloodReportInput, rows: Map<Filter, TapRow[]>): string[] {
  const st = input.settings;
  const k = st.senderCpu;
  const cpuLine = (f: Filter): string => {
    const s = input.tapFlood.get(f) ?? [];
    const m = (key: keyof FloodSample['cpu']): string => median(s.map((x) => x.cpu[key] / x.seconds)).toFixed(2);
    return `   ${pad(LABEL[f], 17)} machine ${m('machine')}  cpu${k} ${m('cpuBusy')}  writer ${m('sender')}  softirq on cpu${k} ${m('softirq')}  ksoftirqd/${k} ${m('ksoftirqd')}  steal ${m('steal')}`;
  };
  return [
    `3. A microVM floods the same blocked destination through its tap. A writer in h plays the VMM (as Firecracker and cloud-hypervisor`,
    `   do): /dev/net/tun opened O_NONBLOCK, TUNSETIFF with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, one write() per frame: a 12-byte virtio-net`,
    `   header + a 60-byte frame, UDP ${TAP_SRC} -> ${SINK}:${SINK_PORT}; pinned to CPU ${k}, ${st.tapSeconds} s a round, ${st.floodRounds} rounds of each filter interleaved`,
    `   (order rotated), medians. The filter is on the tap (in h), same slot and policy; without a filter h forwards the frames to the sink.`,
    '',
    ...tapFloodTable(input, rows, k),
    '',
    '   pkt = a frame the filter dropped (BLOCKED); for "no filter" a frame h forwarded to the sink. lost = written - dropped - reached sink.',
    "   tap rx_dropped = the tap's rx_dropped (ip -s link), where the tun driver counts each frame its native XDP path dropped (checked",
    '   in every XDP native round); TC and generic XDP drop an skb later, not counted there.',
    "   On a tap the VMM's write() is the host's receive path, run inline in the system call: tun_get_user copies the frame in, runs a",
    '   native XDP program on the copy (tun_build_skb) and, unless that dropped it, builds the skb and hands it to netif_receive_skb (TC',
    "   ingress, generic XDP, the stack; no filter: forwarding and the sink's veth, whose softirq runs as the call re-enables bottom",
    `   halves), all on the writer's CPU and charged to the writer. host ns/pkt = (the writer's utime+stime + ksoftirqd/${k}) per pkt:`,
    "   all the host did for the flood; other processes' time is not in it (on this shared VM they can still slow the writer: see the",
    '   rounds). It includes the write() system call, the same with every filter: "write() floor" measures it (once at the end of each',
    '   round) with writes of 4 bytes, shorter than the virtio-net header, which the driver refuses before copying anything.',
    '   beyond write() = host ns/pkt - the floor: the driver, the filter, freeing (no filter: forwarding and the sink). On this',
    '   VM (a PVM guest, pti=on) a system call costs far more than on a bare-metal host, so compare beyond write() for what the filter\'s',
    `   place changes. cpu${k} ns/frame = busy time of CPU ${k} per frame written (the writer keeps it at 100%). The guest building its`,
    '   frames is its own vCPU time, not measured here.',
    '   CPU seconds per second of flood (medians):',
    ...FILTERS.map(cpuLine),
    '',
    `   Allowed frames through the tap: the same writer, UDP to ${ALLOWED_SINK}:${SINK_PORT} (allowed), ${st.tapAllowedSeconds} s a round, ${st.floodRounds} rounds interleaved, medians.`,
    '',
    ...tapAllowedTable(input, k),
    '   judged/frame = ALLOWED counted by the slot per frame written (nothing blocked, checked); host ns/frame as above, per frame written.',
  ];
}

/** Section 4, the tap's lines: XDP/TC per dropped frame, with and without the write() system call. */
function tapPoint(input: FloodReportInput, rows: Map<Filter, TapRow[]>, k: number): string[] {
  const m = (f: Filter, key: keyof TapRow): number => tmed(rows.get(f) ?? [], key);
  const floor = floorNs(input);
  const tc = m('tc', 'hostNs');
  const xn = m('xdp-native', 'hostNs');
  const allowed = new Map<Filter, TapRow[]>(FILTERS.map((f) => [f, (input.tapAllowed.get(f) ?? []).map((s) => tapRound(f, s))]));
  const a = (f: Filter): string => ratio(tmed(allowed.get(f) ?? [], 'writtenPs'), tmed(allowed.get('none') ?? [], 'writtenPs'));
  const paired = (rows.get('xdp-native') ?? []).map((x, i) => ratio(x.hostNs, rows.get('tc')?.[i]?.hostNs ?? NaN));
  const verdict =
    xn < tc
      ? `XDP native costs the host ${ratio(xn, tc)} of what TC costs per dropped frame: ${xn.toFixed(0)} vs ${tc.toFixed(0)} ns (${((1 - xn / tc) * 100).toFixed(0)}% less, ${(tc - xn).toFixed(0)} ns saved per frame)`
      : `XDP native is NOT cheaper than TC: ${xn.toFixed(0)} vs ${tc.toFixed(0)} ns per dropped frame (${ratio(xn, tc)})`;
  return [
    `   On the tap (a microVM's NIC; the writer plays the VMM, its write() included): ${verdict};`,
    `   beyond the write() system call (floor ${floor.toFixed(0)} ns): XDP native ${(xn - floor).toFixed(0)} vs TC ${(tc - floor).toFixed(0)} ns (${ratio(xn - floor, tc - floor)}), generic ${(m('xdp-generic', 'hostNs') - floor).toFixed(0)} ns;`,
    `   XDP native/TC paired by round ${paired.join(' ')}; XDP generic/TC ${ratio(m('xdp-generic', 'hostNs'), tc)} (${m('xdp-generic', 'hostNs').toFixed(0)} ns); no filter ${m('none', 'hostNs').toFixed(0)} ns per frame forwarded;`,
    `   frames one writing CPU (cpu${k}) gets dropped: TC ${mpps(m('tc', 'dropPs'))}/s, XDP native ${mpps(m('xdp-native', 'dropPs'))}/s (${ratio(m('xdp-native', 'dropPs'), m('tc', 'dropPs'))}), generic ${mpps(m('xdp-generic', 'dropPs'))}/s;`,
    `   allowed frames one writing CPU gets through, against no filter: TC ${a('tc')}, XDP native ${a('xdp-native')}, generic ${a('xdp-generic')} (section 3).`,
    '   The tun driver runs a native XDP program on the frame it has just copied from the VMM, before any skb exists: a drop there',
    '   skips building the skb and the receive path TC runs in. Generic XDP runs on the skb, and the driver reserves XDP headroom only',
    '   for a native program, so the generic path first copies each frame into a new buffer (as on the veth).',
  ];
}

/** Section 4: the XDP/TC ratios of what the host pays per dropped packet, on the veth and on the tap. */
function pointSection(input: FloodReportInput, rows: Map<Filter, Row[]>, tapRows: Map<Filter, TapRow[]>, k: number): string[] {
  const m = (f: Filter, key: keyof Row): number => med(rows.get(f) ?? [], key);
  const tc = m('tc', 'recvNs');
  const xn = m('xdp-native', 'recvNs');
  const gbps = (f: Filter): number => median((input.traffic.get(f) ?? []).map((x) => x.gbps));
  const gbpsRatio = (f: Filter): string => ratio(gbps(f), gbps('none'));
  const paired = (rows.get('xdp-native') ?? []).map((x, i) => ratio(x.recvNs, rows.get('tc')?.[i]?.recvNs ?? NaN));
  const verdict =
    xn < tc
      ? `XDP native costs the host ${ratio(xn, tc)} of what TC costs per dropped packet: ${xn.toFixed(0)} vs ${tc.toFixed(0)} ns (${((1 - xn / tc) * 100).toFixed(0)}% less)`
      : `XDP native is NOT cheaper than TC: ${xn.toFixed(0)} vs ${tc.toFixed(0)} ns of host CPU per dropped packet (${ratio(xn, tc)}, ${((xn / tc - 1) * 100).toFixed(0)}% more)`;
  return [
    "4. A hostile workload's flood costs the host less with XDP: by how much (host CPU per dropped packet, same run)",
    `   On the veth (receive path per dropped packet): ${verdict};`,
    `   XDP native/TC paired by round ${paired.join(' ')}; XDP generic/TC ${ratio(m('xdp-generic', 'recvNs'), tc)} (${m('xdp-generic', 'recvNs').toFixed(0)} ns);`,
    `   whole machine (host ns/pkt): XDP native/TC ${ratio(m('xdp-native', 'hostNs'), m('tc', 'hostNs'))}, generic/TC ${ratio(m('xdp-generic', 'hostNs'), m('tc', 'hostNs'))};` +
      ` per datagram on the sending CPU: TC ${m('tc', 'cpuNsSent').toFixed(0)}, XDP native ${m('xdp-native', 'cpuNsSent').toFixed(0)}, generic ${m('xdp-generic', 'cpuNsSent').toFixed(0)} ns;`,
    `   drops sustained by one sending CPU (cpu${k}): TC ${mpps(m('tc', 'dropPs'))}/s, XDP native ${mpps(m('xdp-native', 'dropPs'))}/s (${ratio(m('xdp-native', 'dropPs'), m('tc', 'dropPs'))}), generic ${mpps(m('xdp-generic', 'dropPs'))}/s;`,
    `   allowed TCP throughput against no filter: TC ${gbpsRatio('tc')}, XDP native ${gbpsRatio('xdp-native')}, generic ${gbpsRatio('xdp-generic')} (section 2).`,
    "   On a veth the sender's socket has already built the skb, and both native XDP on a veth and generic XDP first copy a packet",
    '   with less than 256 bytes of headroom (every locally sent one) into a new buffer; what XDP can skip is only the stack after it.',
    ...tapPoint(input, tapRows, k),
  ];
}

export function floodReport(input: FloodReportInput): string {
  const rows = new Map<Filter, Row[]>(FILTERS.map((f) => [f, (input.flood.get(f) ?? []).map((s) => perRound(f, s))]));
  const tapRows = new Map<Filter, TapRow[]>(FILTERS.map((f) => [f, (input.tapFlood.get(f) ?? []).map((s) => tapRound(f, s))]));
  return [
    `XDP flood benchmark (npm run bench:flood -w @netfence/bpf-programs), one run, ${input.seconds.toFixed(0)} s`,
    `machine: ${input.machine}; load average at the end ${input.loadEnd}`,
    `XDP mode 'auto' picks on the veth: ${input.autoPick.veth}, on the tap: ${input.autoPick.tap} (both native and generic are measured)`,
    '',
    ...floodSection(input, rows),
    '',
    ...trafficSection(input),
    '',
    ...tapSection(input, tapRows),
    '',
    ...pointSection(input, rows, tapRows, input.settings.senderCpu),
    '',
  ].join('\n');
}
