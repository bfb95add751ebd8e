// The typed manifest of the netfence eBPF objects: files, programs, maps,
// attach points and constants. Mirrors src/netfence_common.h and the
// *.bpf.c sources; a unit test checks it against the built objects' BTF.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfProgramsError } from './bpf-programs-error';

/** bpf_map_type values used by the objects (kernel ABI). */
export const BPF_MAP_TYPE = { HASH: 1, ARRAY: 2, PERCPU_ARRAY: 6, LPM_TRIE: 11, ARRAY_OF_MAPS: 12, CGROUP_STORAGE: 19, SK_STORAGE: 24, RINGBUF: 27 } as const;

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
  XDP: 37,
  TCX_INGRESS: 46,
  TCX_EGRESS: 47,
} as const;

/** BPF_F_NO_PREALLOC */
export const BPF_F_NO_PREALLOC = 1;

/** How a program is attached. */
export type AttachPoint =
  | { readonly kind: 'tc'; readonly directions: readonly ['ingress', 'egress'] }
  | { readonly kind: 'xdp' }
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

/** Slots of the default host set: 4096 attachments, slot 0 never used. */
export const DEFAULT_SLOTS = 4097;
/** The most attachments (slots - 1) a host set may be sized for. */
export const MAX_SLOTS = 1_048_577;
const NF_STAT_COUNT = 24;

/**
 * The host-wide maps every filter object shares (one copy per host, pinned in the host
 * directory): each holds the state of every attachment, indexed by its slot. Their sizes are
 * the slot count (mapSizes); slot 0 is never used.
 */
export const HOST_MAPS = {
  /** Array: the CONFIG of each slot (mode, flags with ACTIVE, own DNS server, id). */
  config: { name: 'nf_config', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 48, defaultMaxEntries: DEFAULT_SLOTS, flags: 0, resizable: true },
  /** Array of maps: each slot's IPv4 rules trie (RULE_TRIES.v4), created by the daemon. */
  rulesV4: { name: 'rules_v4', type: BPF_MAP_TYPE.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, defaultMaxEntries: DEFAULT_SLOTS, flags: 0, resizable: true },
  /** Array of maps: each slot's IPv6 rules trie (RULE_TRIES.v6). */
  rulesV6: { name: 'rules_v6', type: BPF_MAP_TYPE.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, defaultMaxEntries: DEFAULT_SLOTS, flags: 0, resizable: true },
  /** Per-CPU array: each slot's STATS.COUNT u64 counters in one element (STATS.x at byte 8 * x). */
  stats: { name: 'stats', type: BPF_MAP_TYPE.PERCPU_ARRAY, keySize: 4, valueSize: 8 * NF_STAT_COUNT, defaultMaxEntries: DEFAULT_SLOTS, flags: 0, resizable: true },
  /**
   * Array: each slot's rate limit on queries to its own DNS server (DNS_LIMIT: rate and burst
   * written by the daemon, the bucket kept by the programs under a spin lock).
   */
  dnsLimit: { name: 'dns_limit', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 24, defaultMaxEntries: DEFAULT_SLOTS, flags: 0, resizable: true },
  /** Ring buffer of EVENT records of every attachment (size in bytes, power of two, multiple of the page size). */
  events: { name: 'events', type: BPF_MAP_TYPE.RINGBUF, keySize: 0, valueSize: 0, defaultMaxEntries: 256 * 1024, flags: 0, resizable: true },
} as const satisfies Record<string, MapManifest>;

/** Devices with an ifindex below this are bound in dev_slots (an array), the rest in tc_slots (a hash). */
export const DEV_SLOTS_MAX = 65536;

/** Maps only the device objects (TC, XDP) have: which attachment a device program judges for. */
export const TC_ONLY_MAPS = {
  /** Array by ifindex (< DEV_SLOTS_MAX) of DEV_SLOTS {ingress, egress, xdp}: the slot per direction, 0 none. */
  devSlots: { name: 'dev_slots', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 12, defaultMaxEntries: DEV_SLOTS_MAX, flags: 0, resizable: false },
  /** Hash {ifindex, direction} (TC_KEY) -> slot, for devices with ifindex >= DEV_SLOTS_MAX. */
  tcSlots: { name: 'tc_slots', type: BPF_MAP_TYPE.HASH, keySize: 8, valueSize: 4, defaultMaxEntries: DEFAULT_SLOTS, flags: 0, resizable: true },
} as const satisfies Record<string, MapManifest>;

/** Maps only the cgroup object has (the sever object shares sever_cfg). */
export const CGROUP_ONLY_MAPS = {
  /**
   * Cgroup storage keyed by the attach point's cgroup id (u64: shared by every program of the
   * object attached there): the slot (CG_SLOT) each cgroup link judges for. Exists once a
   * program is attached there; attach in CGROUP_ATTACH_ORDER.
   */
  cgSlot: { name: 'cg_slot', type: BPF_MAP_TYPE.CGROUP_STORAGE, keySize: 8, valueSize: 8, defaultMaxEntries: 0, flags: 0, resizable: false },
  /** Socket storage remembering a DNS redirection (internal to the programs). */
  dnsOrig: { name: 'dns_orig', type: BPF_MAP_TYPE.SK_STORAGE, keySize: 4, valueSize: 40, defaultMaxEntries: 0, flags: BPF_F_NO_PREALLOC, resizable: false },
  /** Array, 1 entry: SEVER target (with the slot whose policy judges), set before running a sever iterator. */
  severConfig: { name: 'sever_cfg', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 32, defaultMaxEntries: 1, flags: 0, resizable: false },
} as const satisfies Record<string, MapManifest>;

/**
 * The per-attachment rules tries the daemon creates (bpf_map_create) and puts at the
 * attachment's slot in rules_v4 / rules_v6: allow and deny entries in one trie (RULE values).
 * The kernel checks type, key and value size and flags against the template, not max_entries:
 * each attachment's tries have the size it is configured for.
 */
export const RULE_TRIES = {
  v4: { name: 'rules_v4', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 8, valueSize: 16, flags: BPF_F_NO_PREALLOC },
  v6: { name: 'rules_v6', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 20, valueSize: 16, flags: BPF_F_NO_PREALLOC },
} as const;

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
      ingress: { name: 'netfence_tc_ingress', section: 'tc', attach: tcAttach },
      egress: { name: 'netfence_tc_egress', section: 'tc', attach: tcAttach },
    },
    maps: { ...HOST_MAPS, ...TC_ONLY_MAPS },
  },
  /**
   * XDP filter: the TC filter's verdict on a device's receive path (the host end of a veth or a
   * tap), before any socket buffer exists. Finds its slot in tc_slots with direction `xdp`.
   */
  xdp: {
    file: 'xdp_filter.bpf.o',
    programs: {
      filter: { name: 'netfence_xdp', section: 'xdp', attach: { kind: 'xdp' } },
    },
    maps: { ...HOST_MAPS, ...TC_ONLY_MAPS },
  },
  /** Cgroup filter: attach every program to the workload's cgroup (CGROUP_ATTACHED_PROGRAMS). */
  cgroup: {
    file: 'cgroup_filter.bpf.o',
    programs: cgroupPrograms('netfence'),
    maps: { ...HOST_MAPS, ...CGROUP_ONLY_MAPS },
  },
  /**
   * Sever iterators of the cgroup attachments (the only object built with CO-RE: libbpf parses
   * the kernel BTF when loading it). Load it once, lazily, with `pinMaps: { dir: <host dir>,
   * maps: SEVER_SHARED_MAPS }` so it reads the host maps; sever_cfg names the slot.
   */
  sever: {
    file: 'sever.bpf.o',
    programs: {
      severTcp: { name: 'netfence_sever_tcp', section: 'iter/tcp', attach: { kind: 'iter', target: 'tcp' } },
      severUdp: { name: 'netfence_sever_udp', section: 'iter/udp', attach: { kind: 'iter', target: 'udp' } },
    },
    maps: { ...HOST_MAPS, severConfig: CGROUP_ONLY_MAPS.severConfig },
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
export type HostMapKey = keyof typeof HOST_MAPS;
/** The cgroup programs the daemon attaches to a cgroup (everything but the iterators). */
export const CGROUP_ATTACHED_PROGRAMS: readonly CgroupHook[] = Object.keys(CGROUP_HOOKS) as CgroupHook[];
/**
 * The order a cgroup attachment's links are made in. `storage` first: these programs only
 * restore redirected addresses, and attaching them creates the cgroup's cg_slot storage (zeroed:
 * slot 0, which drops); then the daemon writes the slot; then `judging`, which read it.
 */
export const CGROUP_ATTACH_ORDER = {
  storage: ['recvmsg4', 'recvmsg6', 'getpeername4', 'getpeername6'],
  judging: ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'egress'],
} as const satisfies Record<string, readonly CgroupHook[]>;
/** The TC program for each direction. */
export const TC_PROGRAM_BY_DIRECTION = { ingress: 'ingress', egress: 'egress' } as const satisfies Record<'ingress' | 'egress', keyof typeof OBJECTS.tc.programs>;
/** The sever iterators: keys of OBJECTS.sever.programs. */
export const SEVER_PROGRAMS = ['severTcp', 'severUdp'] as const satisfies readonly (keyof typeof OBJECTS.sever.programs)[];
/**
 * The maps the sever object must share (by name, through the host's pins) with the filter
 * objects: every map it has. Pass as `pinMaps.maps` together with the host's `mapSizes`, so
 * libbpf reuses the pinned maps instead of creating new ones.
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

/**
 * Tests and benchmarks only: the cgroup object built to judge for slot FIXED_SLOT instead of its
 * cgroup storage, because BPF_PROG_TEST_RUN gives a cgroup program zeroed storage on every run.
 * Built into the package's build dir by `npm run build`; never shipped, never attached.
 */
export const FIXED_SLOT = 1;
export function fixedSlotCgroupObjectPath(): string {
  const p = join(packageDir(), 'build', 'cgroup_filter_fixed_slot.bpf.o');
  if (!existsSync(p)) throw new BpfProgramsError('NETFENCE_ERR_OBJECT_MISSING', `${p} is missing: run \`npm run build -w @netfence/bpf-programs\``);
  return p;
}

/** The maps a pinned host set is made of, by object: pass as `pinMaps.maps` when loading it. */
export function hostPinnedMaps(object: 'tc' | 'xdp' | 'cgroup' | 'sever'): readonly string[] {
  // dns_orig too: an upgrade's programs then still restore what the old ones redirected
  return Object.values(OBJECTS[object].maps).map((m) => m.name);
}

/**
 * Per-map max_entries overrides for loading the host set: `slots` (attachments + 1) sizes every
 * per-slot map, `ringBytes` the event ring. Validated.
 */
export function mapSizes(opts: { slots?: number; ringBytes?: number } = {}): Record<string, number> {
  const out: Record<string, number> = {};
  if (opts.slots !== undefined) {
    if (!Number.isInteger(opts.slots) || opts.slots < 2 || opts.slots > MAX_SLOTS) {
      throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `slots must be an integer in [2, ${MAX_SLOTS}], got ${opts.slots}`);
    }
    for (const m of [HOST_MAPS.config, HOST_MAPS.rulesV4, HOST_MAPS.rulesV6, HOST_MAPS.stats, HOST_MAPS.dnsLimit, TC_ONLY_MAPS.tcSlots]) out[m.name] = opts.slots;
  }
  if (opts.ringBytes !== undefined) {
    const r = opts.ringBytes;
    if (!Number.isInteger(r) || r < 4096 || (r & (r - 1)) !== 0) {
      throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `ringBytes must be a power of two >= 4096, got ${r}`);
    }
    out[HOST_MAPS.events.name] = r;
  }
  return out;
}

// ---- constants shared with the C side ----

/** config.mode */
export const MODE = { DISABLED: 0, ALLOWLIST: 1, DENYLIST: 2, BLOCK_ALL: 3 } as const;
export type ModeName = keyof typeof MODE;
export type ModeValue = (typeof MODE)[ModeName];

/** config.flags bits */
export const CONFIG_FLAG = { DRY_RUN: 1 << 0, DNS_FILTER: 1 << 1, L3_DEVICE: 1 << 2, ACTIVE: 1 << 3 } as const;

/** rule.lists bits: which lists a rules trie entry is on (both: deny wins). */
export const RULE_LIST = { ALLOW: 1, DENY: 2 } as const;

/** tc_slots key direction values: TC ingress, TC egress, and the XDP program (receive path). */
export const TC_DIR = { ingress: 0, egress: 1, xdp: 2 } as const;

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
export const HOOK = { TC: 1, CONNECT: 2, SENDMSG: 3, SKB: 4, XDP: 5 } as const;
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
