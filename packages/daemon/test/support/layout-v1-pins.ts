// Layout-v1 attachments made the way the daemon before issue 11 made them (bpf-datapath.ts at the
// commit in test/fixtures/layout-v1/SOURCE-COMMIT): the fixture objects loaded once per
// attachment with only the shared ring pinned at load (<root>/events), every other map pinned
// in <root>/<id>/ by its name, the config and the DNS limit written, then the programs attached
// and each link pinned as link_<program key>; plus the entries of both lists.

import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { attachCgroup, attachTcx, loadCollection, numPossibleCpus, type Collection } from '@netfence/bpf-loader';
import { CGROUP_ATTACHED_PROGRAMS, OBJECTS, encodeConfig, encodeDnsLimit, ruleKey, type AttachmentConfig } from '@netfence/bpf-programs';

export const V1_FIXTURES = join(__dirname, '..', 'fixtures', 'layout-v1');

/** What a v1 attachment holds. Allow entries carry the last-seen time and deadline the v1 programs read. */
export interface V1State {
  readonly config: AttachmentConfig;
  readonly allow: readonly { readonly cidr: string; readonly lastSeenNs?: bigint; readonly expiresS?: number }[];
  readonly deny: readonly string[];
  readonly dnsLimit: { readonly rateQps: number; readonly burst: number; readonly tatNs?: bigint };
  /** Counters to start from: per STATS index, the value of each CPU. */
  readonly stats?: Readonly<Record<number, bigint>>;
}

const V1_MAPS = ['nf_config', 'allow_v4', 'allow_v6', 'deny_v4', 'deny_v6', 'stats', 'dns_limit'] as const;
const LPM_SIZE = 64;
export const V1_RING_BYTES = 65536;

function load(root: string, object: 'tc' | 'cgroup'): Collection {
  const file = join(V1_FIXTURES, object === 'tc' ? 'tc_filter.bpf.o' : 'cgroup_filter.bpf.o');
  const sizes = { allow_v4: LPM_SIZE, allow_v6: LPM_SIZE, deny_v4: LPM_SIZE, deny_v6: LPM_SIZE, events: V1_RING_BYTES };
  const programs = object === 'tc' ? ['netfence_tc'] : CGROUP_ATTACHED_PROGRAMS.map((k) => OBJECTS.cgroup.programs[k].name);
  return loadCollection(file, { mapSizes: sizes, pinMaps: { dir: root, maps: ['events'] }, programs });
}

/** Pins the maps in <root>/<id>/ and writes the state into them, as the v1 datapath did. */
function pinState(c: Collection, dir: string, object: 'tc' | 'cgroup', s: V1State): void {
  for (const name of [...V1_MAPS, ...(object === 'cgroup' ? ['sever_cfg'] : [])]) c.map(name).pin(join(dir, name));
  symlinkSync(join('..', 'events'), join(dir, 'events'));
  const zero = Buffer.alloc(4);
  const cfg = encodeConfig(s.config);
  cfg.writeUInt32LE(cfg.readUInt32LE(4) & ~8, 4); // v1 had no ACTIVE flag
  c.map('nf_config').update(zero, cfg);
  const lim = encodeDnsLimit(s.dnsLimit);
  lim.writeBigUInt64LE(s.dnsLimit.tatNs ?? 0n, 16);
  c.map('dns_limit').update(zero, lim);
  for (const a of s.allow) {
    const k = ruleKey(a.cidr);
    const v = Buffer.alloc(16); // {u64 last_seen_ns; u32 prefix_len; u32 expires_s}
    v.writeBigUInt64LE(a.lastSeenNs ?? 0n, 0);
    v.writeUInt32LE(k.prefix.prefixLen, 8);
    v.writeUInt32LE(a.expiresS ?? 0, 12);
    c.map(k.family === 4 ? 'allow_v4' : 'allow_v6').update(k.key, v);
  }
  for (const d of s.deny) {
    const k = ruleKey(d);
    const v = Buffer.alloc(8); // {u32 prefix_len; u32 pad}
    v.writeUInt32LE(k.prefix.prefixLen, 0);
    c.map(k.family === 4 ? 'deny_v4' : 'deny_v6').update(k.key, v);
  }
  const stats = c.map('stats');
  for (const [i, n] of Object.entries(s.stats ?? {})) {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(Number(i), 0);
    const v = Buffer.alloc(stats.valueBufferSize);
    for (let cpu = 0; cpu < numPossibleCpus(); cpu++) v.writeBigUInt64LE(n, cpu * 8);
    stats.update(k, v);
  }
}

/** A v1 TC attachment on `ifindex` (ingress or egress), pinned under <root>/<id>/. Returns the v1 program's id. */
export function pinV1Tc(root: string, id: string, t: { ifindex: number; direction: 'ingress' | 'egress' }, s: V1State): number {
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const c = load(root, 'tc');
  try {
    pinState(c, dir, 'tc', s);
    const prog = c.program('netfence_tc');
    const link = attachTcx(prog, { ifindex: t.ifindex, direction: t.direction, mode: 'tcx' });
    link.pin(join(dir, 'link_filter'));
    link.close();
    return prog.info().id;
  } finally {
    c.close();
  }
}

/** A v1 cgroup attachment on `cgroupPath`, pinned under <root>/<id>/. Returns the v1 programs' ids. */
export function pinV1Cgroup(root: string, id: string, cgroupPath: string, s: V1State): number[] {
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const c = load(root, 'cgroup');
  try {
    pinState(c, dir, 'cgroup', s);
    const ids: number[] = [];
    for (const k of CGROUP_ATTACHED_PROGRAMS) {
      const prog = c.program(OBJECTS.cgroup.programs[k].name);
      const link = attachCgroup(prog, { cgroup: cgroupPath });
      link.pin(join(dir, `link_${k}`));
      link.close();
      ids.push(prog.info().id);
    }
    return ids;
  } finally {
    c.close();
  }
}
