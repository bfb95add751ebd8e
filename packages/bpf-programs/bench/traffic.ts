// Real traffic through the filters in the benchmark's lab: one veth, the client in the workload
// netns (w), servers (iperf3, nfbench) in the host netns (h). TCP throughput and 1-byte
// request/response through the TC filter (TCX ingress of h's veth end, the workload's outbound
// direction) and from a cgroup-filtered process, and connect() latency, against no filter.
// Attachments are made the way the daemon makes them on the host-wide layout.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { attachCgroup, attachTcx, type BpfLink, type Collection } from '@netfence/bpf-loader';
import type { Lab, LabCgroup, LabNetns } from '@netfence/lab';
import { CGROUP_ATTACH_ORDER, CGROUP_ONLY_MAPS, encodeSlot, OBJECTS } from '@netfence/bpf-programs';
import { SERVER } from './entries';
import { bindDevice } from '../test/kernel/helpers';

export const RR_PORT = 7000;
const IPERF_PORT = 5201;

export interface TrafficLab {
  readonly w: LabNetns;
  readonly h: LabNetns;
  /** h's end of the veth (the TC filter's device) and its ifindex. */
  readonly dev: string;
  readonly ifindex: number;
}

/** The lab: netns w (client, 10.200.1.2) and h (servers on SERVER); resolves once the servers listen. */
export async function startTrafficLab(lab: Lab, tool: string): Promise<TrafficLab> {
  const w = lab.netns('w');
  const h = lab.netns('h');
  const v = lab.veth(w, h, { addrA: ['10.200.1.2/24'], addrB: [`${SERVER}/24`] });
  const rr = h.spawn(tool, ['server', SERVER, String(RR_PORT)]);
  h.spawn('iperf3', ['-s', '-B', SERVER, '-p', String(IPERF_PORT)]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('nfbench server did not start in 5 s')), 5000);
    rr.stdout?.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  await new Promise((r) => setTimeout(r, 300)); // iperf3 -s has no ready signal
  return { w, h, dev: v.b, ifindex: h.ifindex(v.b) };
}

function spawnInCgroup(ns: LabNetns, cg: LabCgroup | undefined, cmd: string, args: string[], timeoutMs: number): string {
  const argv = cg
    ? ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && ns="$1" && shift && exec nsenter --net="$ns" -- "$@"', cg.path, ns.path, cmd, ...args]
    : ['nsenter', `--net=${ns.path}`, '--', cmd, ...args];
  const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}${cg ? ` in cgroup ${cg.path}` : ''} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout.slice(-400)}`);
  return r.stdout;
}

export interface Figures {
  readonly gbps: number;
  readonly rr: number;
}

/** iperf3 for `iperfSeconds`, then 1-byte request/response for `rrSeconds`, from w (in `cg` when given). */
export function measureTraffic(t: TrafficLab, tool: string, cg: LabCgroup | undefined, iperfSeconds: number, rrSeconds: number): Figures {
  const j = JSON.parse(spawnInCgroup(t.w, cg, 'iperf3', ['-c', SERVER, '-p', String(IPERF_PORT), '-t', String(iperfSeconds), '-J'], (iperfSeconds + 10) * 1000)) as {
    end: { sum_received: { bits_per_second: number } };
  };
  const rr = Number(spawnInCgroup(t.w, cg, tool, ['rr', SERVER, String(RR_PORT), String(rrSeconds)], (rrSeconds + 10) * 1000).trim());
  return { gbps: j.end.sum_received.bits_per_second / 1e9, rr };
}

/** connect()+RST loop from w in `cg` for `seconds`: mean µs per connect(). */
export function connectUs(t: TrafficLab, tool: string, cg: LabCgroup, seconds: number): number {
  const [, us] = spawnInCgroup(t.w, cg, tool, ['connect', SERVER, String(RR_PORT), String(seconds)], (seconds + 10) * 1000)
    .trim()
    .split(' ')
    .map(Number);
  return us ?? NaN;
}

/** TC attachment of `slot` on the lab's device: bind {ifindex, ingress} to the slot, then attach the ingress program (TCX). */
export function attachTcSlot(tc: Collection, t: TrafficLab, slot: number): BpfLink {
  bindDevice(tc, t.ifindex, 'ingress', slot);
  return attachTcx(tc.program(OBJECTS.tc.programs.ingress.name), { ifname: t.dev, netnsPath: t.h.path, direction: 'ingress', mode: 'tcx' });
}

/**
 * Cgroup attachment of `slot` in the daemon's order: the storage programs (their links create
 * the cgroup's cg_slot storage, zeroed = slot 0 = drop), then cg_slot[cgroup id] = slot, then
 * the judging programs. Closes what it attached when a step fails.
 */
export function attachCgroupSlot(cg: Collection, cgroupPath: string, slot: number): BpfLink[] {
  const links: BpfLink[] = [];
  try {
    const one = (k: keyof typeof OBJECTS.cgroup.programs): void => {
      links.push(attachCgroup(cg.program(OBJECTS.cgroup.programs[k].name), { cgroup: cgroupPath }));
    };
    for (const k of CGROUP_ATTACH_ORDER.storage) one(k);
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(statSync(cgroupPath, { bigint: true }).ino);
    cg.map(CGROUP_ONLY_MAPS.cgSlot.name).update(key, encodeSlot(slot, 8));
    for (const k of CGROUP_ATTACH_ORDER.judging) one(k);
    return links;
  } catch (e) {
    for (const l of links) l.close();
    throw e;
  }
}

/** The floor: the allow-all programs on every cgroup hook. */
export function attachFloorCgroup(floor: Collection, cgroupPath: string): BpfLink[] {
  const links: BpfLink[] = [];
  try {
    for (const k of [...CGROUP_ATTACH_ORDER.storage, ...CGROUP_ATTACH_ORDER.judging]) {
      links.push(attachCgroup(floor.program(OBJECTS.benchFloor.programs[k].name), { cgroup: cgroupPath }));
    }
    return links;
  } catch (e) {
    for (const l of links) l.close();
    throw e;
  }
}
