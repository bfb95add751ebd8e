// The typed manifest of the netfence eBPF objects: files, programs, maps,
// attach points and constants. Mirrors src/netfence_common.h and the
// *.bpf.c sources; a unit test checks it against the built objects' BTF.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfProgramsError } from './bpf-programs-error';

/** bpf_map_type values used by the objects (kernel ABI). */
export const BPF_MAP_TYPE = { ARRAY: 2, PERCPU_ARRAY: 6, LPM_TRIE: 11, SK_STORAGE: 24, RINGBUF: 27 } as const;

/** bpf_attach_type values used by the objects (kernel ABI). */
export const BPF_ATTACH_TYPE = {
  CGROUP_INET_EGRESS: 1,
  CGROUP_INET4_CONNECT: 10,
  CGROUP_INET6_CONNECT: 11,
  CGROUP_UDP4_SENDMSG: 14,
  CGROUP_UDP6_SENDMSG: 15,
  CGROUP_UDP4_RECVMSG: 19,
  CGROUP_UDP6_RECVMSG: 20,
  TRACE_ITER: 28,
  CGROUP_INET4_GETPEERNAME: 29,
  CGROUP_INET6_GETPEERNAME: 30,
  TCX_INGRESS: 46,
  TCX_EGRESS: 47,
} as const;

/** BPF_F_NO_PREALLOC */
export const BPF_F_NO_PREALLOC = 1;

/** How a program is attached. */
export type AttachPoint =
  | { readonly kind: 'tc'; readonly directions: readonly ['ingress', 'egress'] }
  | { readonly kind: 'cgroup'; readonly attachType: number }
  | { readonly kind: 'iter'; readonly target: 'tcp' | 'udp' };

export interface ProgramManifest {
  /** Function name in the object (what a loader looks programs up by). */
  readonly name: string;
  /** ELF section. */
  readonly section: string;
  readonly attach: AttachPoint;
}

export interface MapManifest {
  /** Map name in the object (also the pin file name). */
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  /** max_entries in the object; for RINGBUF it is the size in bytes. */
  readonly defaultMaxEntries: number;
  readonly flags: number;
  /** Whether the daemon may override max_entries at load. */
  readonly resizable: boolean;
}

const LPM_MAX = 65536;

/** The maps of every policy object (TC and cgroup). */
export const POLICY_MAPS = {
  /** Array, 1 entry: the attachment's CONFIG (mode, flags, own DNS server, id). */
  config: { name: 'nf_config', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 48, defaultMaxEntries: 1, flags: 0, resizable: false },
  allowV4: { name: 'allow_v4', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 8, valueSize: 16, defaultMaxEntries: LPM_MAX, flags: BPF_F_NO_PREALLOC, resizable: true },
  allowV6: { name: 'allow_v6', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 20, valueSize: 16, defaultMaxEntries: LPM_MAX, flags: BPF_F_NO_PREALLOC, resizable: true },
  denyV4: { name: 'deny_v4', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 8, valueSize: 8, defaultMaxEntries: LPM_MAX, flags: BPF_F_NO_PREALLOC, resizable: true },
  denyV6: { name: 'deny_v6', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 20, valueSize: 8, defaultMaxEntries: LPM_MAX, flags: BPF_F_NO_PREALLOC, resizable: true },
  /** Per-CPU array of u64 counters, indexed by STATS. */
  stats: { name: 'stats', type: BPF_MAP_TYPE.PERCPU_ARRAY, keySize: 4, valueSize: 8, defaultMaxEntries: 24, flags: 0, resizable: false },
  /**
   * Array, 1 entry: the rate limit on queries to the attachment's own DNS server (DNS_LIMIT:
   * rate and burst written by the daemon, the bucket kept by the programs under a spin lock).
   */
  dnsLimit: { name: 'dns_limit', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 24, defaultMaxEntries: 1, flags: 0, resizable: false },
  /** Ring buffer of EVENT records (size in bytes, power of two, multiple of the page size). */
  events: { name: 'events', type: BPF_MAP_TYPE.RINGBUF, keySize: 0, valueSize: 0, defaultMaxEntries: 256 * 1024, flags: 0, resizable: true },
} as const satisfies Record<string, MapManifest>;

/** Maps only the cgroup object has. */
export const CGROUP_ONLY_MAPS = {
  /** Socket storage remembering a DNS redirection (internal to the programs). */
  dnsOrig: { name: 'dns_orig', type: BPF_MAP_TYPE.SK_STORAGE, keySize: 4, valueSize: 40, defaultMaxEntries: 0, flags: BPF_F_NO_PREALLOC, resizable: false },
  /** Array, 1 entry: SEVER target, set before running a sever iterator. */
  severConfig: { name: 'sever_cfg', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 32, defaultMaxEntries: 1, flags: 0, resizable: false },
} as const satisfies Record<string, MapManifest>;

const tcAttach = { kind: 'tc', directions: ['ingress', 'egress'] } as const;
const cg = (attachType: number) => ({ kind: 'cgroup', attachType }) as const;

/** The cgroup hooks, by program key: ELF section and attach type. Both cgroup objects implement all of them. */
const CGROUP_HOOKS = {
  connect4: ['cgroup/connect4', BPF_ATTACH_TYPE.CGROUP_INET4_CONNECT],
  connect6: ['cgroup/connect6', BPF_ATTACH_TYPE.CGROUP_INET6_CONNECT],
  sendmsg4: ['cgroup/sendmsg4', BPF_ATTACH_TYPE.CGROUP_UDP4_SENDMSG],
  sendmsg6: ['cgroup/sendmsg6', BPF_ATTACH_TYPE.CGROUP_UDP6_SENDMSG],
  recvmsg4: ['cgroup/recvmsg4', BPF_ATTACH_TYPE.CGROUP_UDP4_RECVMSG],
  recvmsg6: ['cgroup/recvmsg6', BPF_ATTACH_TYPE.CGROUP_UDP6_RECVMSG],
  getpeername4: ['cgroup/getpeername4', BPF_ATTACH_TYPE.CGROUP_INET4_GETPEERNAME],
  getpeername6: ['cgroup/getpeername6', BPF_ATTACH_TYPE.CGROUP_INET6_GETPEERNAME],
  egress: ['cgroup_skb/egress', BPF_ATTACH_TYPE.CGROUP_INET_EGRESS],
} as const;
type CgroupHook = keyof typeof CGROUP_HOOKS;

/** The program of every cgroup hook, named `<prefix>_<key>` in the C source. */
function cgroupPrograms(prefix: string): { readonly [K in CgroupHook]: ProgramManifest } {
  const entries = Object.entries(CGROUP_HOOKS).map(([key, [section, attachType]]) => [key, { name: `${prefix}_${key}`, section, attach: cg(attachType) }]);
  return Object.fromEntries(entries) as { readonly [K in CgroupHook]: ProgramManifest };
}

/** The objects, their programs and maps. */
export const OBJECTS = {
  /** TC filter: attach `filter` with TCX (clsact fallback) in the workload's outbound direction. */
  tc: {
    file: 'tc_filter.bpf.o',
    programs: {
      filter: { name: 'netfence_tc', section: 'tc', attach: tcAttach },
    },
    maps: POLICY_MAPS,
  },
  /** Cgroup filter: attach every program to the workload's cgroup (CGROUP_ATTACHED_PROGRAMS). */
  cgroup: {
    file: 'cgroup_filter.bpf.o',
    programs: cgroupPrograms('netfence'),
    maps: { ...POLICY_MAPS, ...CGROUP_ONLY_MAPS },
  },
  /**
   * Sever iterators of a cgroup attachment (the only object built with CO-RE: libbpf parses the
   * kernel BTF when loading it). Load it lazily with `pinMaps: { dir: <attachment pin dir>, maps:
   * SEVER_SHARED_MAPS }` so it reads that attachment's policy and sever_cfg.
   */
  sever: {
    file: 'sever.bpf.o',
    programs: {
      severTcp: { name: 'netfence_sever_tcp', section: 'iter/tcp', attach: { kind: 'iter', target: 'tcp' } },
      severUdp: { name: 'netfence_sever_udp', section: 'iter/udp', attach: { kind: 'iter', target: 'udp' } },
    },
    maps: { ...POLICY_MAPS, severConfig: CGROUP_ONLY_MAPS.severConfig },
  },
  /** Bench only: allow-everything programs on the same hooks (the floor). Never attached by the daemon. */
  benchFloor: {
    file: 'bench_trivial.bpf.o',
    programs: {
      tc: { name: 'floor_tc', section: 'tc', attach: tcAttach },
      ...cgroupPrograms('floor'),
    },
    maps: {},
  },
} as const;

export type ObjectName = keyof typeof OBJECTS;
export type PolicyMapKey = keyof typeof POLICY_MAPS;
/** The cgroup programs the daemon attaches to a cgroup (everything but the iterators). */
export const CGROUP_ATTACHED_PROGRAMS: readonly CgroupHook[] = Object.keys(CGROUP_HOOKS) as CgroupHook[];
/** The sever iterators: keys of OBJECTS.sever.programs. */
export const SEVER_PROGRAMS = ['severTcp', 'severUdp'] as const satisfies readonly (keyof typeof OBJECTS.sever.programs)[];
/**
 * The maps the sever object must share (by name, through the cgroup attachment's pins) with the
 * cgroup object it severs for: every map it has. Pass as `pinMaps.maps` together with the
 * attachment's `mapSizes`, so libbpf reuses the pinned maps instead of creating new ones.
 */
export const SEVER_SHARED_MAPS = Object.values(OBJECTS.sever.maps).map((m) => m.name) as readonly string[];

/** The package root (this file lives in src/ or dist/, one level below it). */
export function packageDir(): string {
  return join(__dirname, '..');
}

/** Directory holding the compiled objects (bpf/). */
export function objectDir(): string {
  return join(packageDir(), 'bpf');
}

/** Absolute path of a compiled object; throws NETFENCE_ERR_OBJECT_MISSING when it is not built. */
export function objectPath(name: ObjectName): string {
  const o = OBJECTS[name];
  if (o === undefined) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `unknown object ${JSON.stringify(name)}`);
  const p = join(objectDir(), o.file);
  if (!existsSync(p)) throw new BpfProgramsError('NETFENCE_ERR_OBJECT_MISSING', `${p} is missing: run \`npm run build -w @netfence/bpf-programs\``);
  return p;
}

/** Per-map max_entries overrides for a load (LPM sizes and the ring size), validated. */
export function mapSizes(opts: { lpmMaxEntries?: number; ringBytes?: number } = {}): Record<string, number> {
  const out: Record<string, number> = {};
  if (opts.lpmMaxEntries !== undefined) {
    if (!Number.isInteger(opts.lpmMaxEntries) || opts.lpmMaxEntries < 1 || opts.lpmMaxEntries > 16_777_216) {
      throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `lpmMaxEntries must be an integer in [1, 16777216], got ${opts.lpmMaxEntries}`);
    }
    for (const m of [POLICY_MAPS.allowV4, POLICY_MAPS.allowV6, POLICY_MAPS.denyV4, POLICY_MAPS.denyV6]) out[m.name] = opts.lpmMaxEntries;
  }
  if (opts.ringBytes !== undefined) {
    const r = opts.ringBytes;
    if (!Number.isInteger(r) || r < 4096 || (r & (r - 1)) !== 0) {
      throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `ringBytes must be a power of two >= 4096, got ${r}`);
    }
    out[POLICY_MAPS.events.name] = r;
  }
  return out;
}

// ---- constants shared with the C side ----

/** config.mode */
export const MODE = { DISABLED: 0, ALLOWLIST: 1, DENYLIST: 2, BLOCK_ALL: 3 } as const;
export type ModeName = keyof typeof MODE;
export type ModeValue = (typeof MODE)[ModeName];

/** config.flags bits */
export const CONFIG_FLAG = { DRY_RUN: 1 << 0, DNS_FILTER: 1 << 1, L3_DEVICE: 1 << 2 } as const;

/** event.reason and stats REASON_BASE + reason */
export const REASON = {
  NONE: 0,
  DENY_CIDR: 1,
  NOT_ALLOWED: 2,
  BLOCK_ALL: 3,
  DNS_BYPASS: 4,
  UNPARSABLE: 5,
  LINK_LOCAL: 6,
  BAD_CONFIG: 7,
} as const;
export type ReasonName = keyof typeof REASON;

/** event.hook */
export const HOOK = { TC: 1, CONNECT: 2, SENDMSG: 3, SKB: 4 } as const;
export type HookName = keyof typeof HOOK;

/** Indices of the per-CPU `stats` counters. */
export const STATS = {
  ALLOWED: 0,
  BLOCKED: 1,
  DRY_RUN_WOULD_BLOCK: 2,
  EVENTS_LOST: 3,
  IMPLICIT_ALLOWED: 4,
  DNS_REDIRECTED: 5,
  SEVERED: 6,
  SEVER_FAILED: 7,
  /** + REASON.x: drops and dry-run would-drops by reason */
  REASON_BASE: 8,
  /** Queries to the own DNS server dropped over the attachment's rate limit (not in BLOCKED, no event). */
  DNS_RATE_LIMITED: 16,
  COUNT: 24,
} as const;

/** TC program return values: pass hands on to the next program (TC_ACT_UNSPEC / TCX_NEXT). */
export const TC_RETURN = { PASS: -1, DROP: 2 } as const;

/** Whether a TC program's return value (as a signed or unsigned 32-bit number) means drop. */
export function isTcDrop(retval: number): boolean {
  return (retval | 0) === TC_RETURN.DROP;
}

/** Allow entries refresh last_seen at most once per this many ns. */
export const LAST_SEEN_REFRESH_NS = 1_000_000_000n;
/** event.rule_prefix_len when no rule decided. */
export const NO_RULE = 0xff;
