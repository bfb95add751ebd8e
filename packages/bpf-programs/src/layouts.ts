// Binary layouts of keys, values, config, events and the sever target, with
// encoders/decoders. Little-endian host integers (x86_64), addresses in network
// order. Byte offsets are in LAYOUT and mirror src/netfence_common.h.

import { BpfProgramsError } from './bpf-programs-error';
import { formatIp, parseIp, parsePrefix, type IpPrefix } from './ip-address';
import { CONFIG_FLAG, DEV_SLOTS_MAX, HOOK, MODE, NO_RULE, REASON, RULE_LIST, STATS, TC_DIR, TC_ONLY_MAPS, type HookName, type ModeName, type ReasonName } from './manifest';

/** Sizes and offsets of every structure the programs share with user space. */
export const LAYOUT = {
  config: { size: 48, mode: 0, flags: 4, attachmentId: 8, dnsPort: 12, dnsV4: 16, dnsV6: 20 },
  lpmKeyV4: { size: 8, prefixLen: 0, addr: 4 },
  lpmKeyV6: { size: 20, prefixLen: 0, addr: 4 },
  rule: { size: 16, lastSeenNs: 0, expiresS: 8, prefixLen: 12, lists: 13, shadowDenyLen: 14 },
  tcKey: { size: 8, ifindex: 0, dir: 4 },
  devSlots: { size: 12, ingress: 0, egress: 4, xdp: 8 },
  cgSlot: { size: 8, slot: 0 },
  event: {
    size: 56,
    tsNs: 0,
    cgroupId: 8,
    attachmentId: 16,
    pid: 20,
    dstAddr: 24,
    dstPort: 40,
    family: 42,
    protocol: 43,
    reason: 44,
    hook: 45,
    flags: 46,
    mode: 47,
    rulePrefixLen: 48,
  },
  severConfig: { size: 32, cgroupId: 0, family: 8, prefixLen: 9, slot: 12, addr: 16 },
  dnsLimit: { size: 24, rateQps: 4, burst: 8, tatNs: 16 },
  dnsOrig: { size: 40, origAddr: 0, targetAddr: 16, origPort: 32, targetPort: 34, family: 36 },
  /** A slot's counters: STATS.COUNT u64 in one per-CPU element (STATS.x at 8 * x). */
  stats: { size: 8 * STATS.COUNT },
} as const;

function need(buf: Uint8Array, size: number, what: string): Buffer {
  if (buf.length < size) throw new BpfProgramsError('NETFENCE_ERR_LAYOUT', `${what} needs ${size} bytes, got ${buf.length}`);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

function u32(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `${name} must be a u32, got ${v}`);
  return v;
}

// ---------------------------------------------------------------- config

/** The attachment's settings, as the daemon thinks of them. */
export interface AttachmentConfig {
  readonly mode: ModeName;
  /** Never drop; count and report every would-be drop. */
  readonly dryRun?: boolean;
  /** Drop DNS/DoT/DoQ to anything but the own server (cgroup: redirect port 53 to it). */
  readonly dnsFilter?: boolean;
  /** TC on a device without an Ethernet header (tun). */
  readonly l3Device?: boolean;
  /** Numeric id reported in events (u32). */
  readonly attachmentId: number;
  /** The attachment's own DNS server: always allowed, the redirect target. */
  readonly dnsServer?: { readonly v4?: string; readonly v6?: string; readonly port: number };
}

/** The config of a free slot: all zero, without ACTIVE, so every program drops. */
export const INACTIVE_CONFIG: Buffer = Buffer.alloc(48);

/** Encodes the config map value (48 bytes) of a slot in use (flag ACTIVE set). */
export function encodeConfig(c: AttachmentConfig): Buffer {
  const L = LAYOUT.config;
  const b = Buffer.alloc(L.size);
  const mode = MODE[c.mode];
  if (mode === undefined) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `unknown mode ${JSON.stringify(c.mode)}`);
  b.writeUInt32LE(mode, L.mode);
  // Always ACTIVE: this is the config of a slot in use (a free slot is all zero: INACTIVE_CONFIG).
  const flags = CONFIG_FLAG.ACTIVE | (c.dryRun ? CONFIG_FLAG.DRY_RUN : 0) | (c.dnsFilter ? CONFIG_FLAG.DNS_FILTER : 0) | (c.l3Device ? CONFIG_FLAG.L3_DEVICE : 0);
  b.writeUInt32LE(flags, L.flags);
  b.writeUInt32LE(u32('attachmentId', c.attachmentId), L.attachmentId);
  const d = c.dnsServer;
  if (d) {
    if (!Number.isInteger(d.port) || d.port < 1 || d.port > 65535) {
      throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `dnsServer.port must be in [1, 65535], got ${d.port}`);
    }
    if (d.v4 === undefined && d.v6 === undefined) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', 'dnsServer needs v4 or v6');
    b.writeUInt16LE(d.port, L.dnsPort);
    if (d.v4 !== undefined) {
      const ip = parseIp(d.v4);
      if (ip.family !== 4) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ADDRESS', `dnsServer.v4 is not IPv4: ${d.v4}`);
      b.set(ip.bytes, L.dnsV4);
    }
    if (d.v6 !== undefined) {
      const ip = parseIp(d.v6);
      if (ip.family !== 6) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ADDRESS', `dnsServer.v6 is not IPv6: ${d.v6}`);
      b.set(ip.bytes, L.dnsV6);
    }
  }
  return b;
}

/** Decodes the config map value. */
export function decodeConfig(buf: Uint8Array): AttachmentConfig & { readonly modeValue: number; readonly active: boolean } {
  const L = LAYOUT.config;
  const b = need(buf, L.size, 'config');
  const modeValue = b.readUInt32LE(L.mode);
  const mode = (Object.keys(MODE) as ModeName[]).find((k) => MODE[k] === modeValue) ?? 'BLOCK_ALL';
  const flags = b.readUInt32LE(L.flags);
  const port = b.readUInt16LE(L.dnsPort);
  const v4 = b.subarray(L.dnsV4, L.dnsV4 + 4);
  const v6 = b.subarray(L.dnsV6, L.dnsV6 + 16);
  const dnsServer =
    port === 0
      ? undefined
      : {
          port,
          ...(v4.some((x) => x !== 0) ? { v4: formatIp(v4) } : {}),
          ...(v6.some((x) => x !== 0) ? { v6: formatIp(v6) } : {}),
        };
  return {
    mode,
    modeValue,
    dryRun: (flags & CONFIG_FLAG.DRY_RUN) !== 0,
    dnsFilter: (flags & CONFIG_FLAG.DNS_FILTER) !== 0,
    l3Device: (flags & CONFIG_FLAG.L3_DEVICE) !== 0,
    active: (flags & CONFIG_FLAG.ACTIVE) !== 0,
    attachmentId: b.readUInt32LE(L.attachmentId),
    ...(dnsServer ? { dnsServer } : {}),
  };
}

// ---------------------------------------------------------------- DNS rate limit

/** The rate limit on what a workload sends to its own DNS server (UDP datagrams, TCP SYNs). */
export interface DnsRateLimit {
  /** Queries a second; 0 = unlimited. */
  readonly rateQps: number;
  /** Bucket size in queries (what may arrive at once after a quiet period); >= 1 when rateQps > 0. */
  readonly burst: number;
}

/** Encodes the dns_limit map value (24 bytes): a full bucket (the programs' state starts at 0). */
export function encodeDnsLimit(l: DnsRateLimit): Buffer {
  const L = LAYOUT.dnsLimit;
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(u32('dns rate limit rateQps', l.rateQps), L.rateQps);
  b.writeUInt32LE(u32('dns rate limit burst', l.burst), L.burst);
  if (l.rateQps > 0 && l.burst < 1) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `dns rate limit burst must be >= 1 with a rate, got ${l.burst}`);
  return b;
}

/** Decodes the dns_limit map value (the bucket state is left out). */
export function decodeDnsLimit(buf: Uint8Array): DnsRateLimit {
  const L = LAYOUT.dnsLimit;
  const b = need(buf, L.size, 'dns limit');
  return { rateQps: b.readUInt32LE(L.rateQps), burst: b.readUInt32LE(L.burst) };
}

// ---------------------------------------------------------------- LPM keys and values

/** Encodes an IPv4 LPM key (8 bytes). `addr` is text or 4 bytes; host bits are zeroed. */
export function encodeLpmKeyV4(addr: string | Uint8Array, prefixLen: number): Buffer {
  const bytes = typeof addr === 'string' ? parseIp(addr).bytes : addr;
  if (bytes.length !== 4) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ADDRESS', `IPv4 LPM key needs 4 address bytes, got ${bytes.length}`);
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) throw new BpfProgramsError('NETFENCE_ERR_INVALID_CIDR', `IPv4 prefix length ${prefixLen}`);
  const p = parsePrefix(`${formatIp(bytes)}/${prefixLen}`);
  const b = Buffer.alloc(LAYOUT.lpmKeyV4.size);
  b.writeUInt32LE(prefixLen, 0);
  b.set(p.bytes, 4);
  return b;
}

/** Encodes an IPv6 LPM key (20 bytes). `addr` is text or 16 bytes; host bits are zeroed. */
export function encodeLpmKeyV6(addr: string | Uint8Array, prefixLen: number): Buffer {
  const bytes = typeof addr === 'string' ? parseIp(addr).bytes : addr;
  if (bytes.length !== 16) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ADDRESS', `IPv6 LPM key needs 16 address bytes, got ${bytes.length}`);
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 128) throw new BpfProgramsError('NETFENCE_ERR_INVALID_CIDR', `IPv6 prefix length ${prefixLen}`);
  const copy = Uint8Array.from(bytes);
  for (let bit = prefixLen; bit < 128; bit++) copy[bit >> 3] = (copy[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  const b = Buffer.alloc(LAYOUT.lpmKeyV6.size);
  b.writeUInt32LE(prefixLen, 0);
  b.set(copy, 4);
  return b;
}

/** Decodes an LPM key (8 or 20 bytes) into a prefix. */
export function decodeLpmKey(buf: Uint8Array): IpPrefix {
  const b = need(buf, LAYOUT.lpmKeyV4.size, 'LPM key');
  const prefixLen = b.readUInt32LE(0);
  if (b.length === LAYOUT.lpmKeyV4.size) return { family: 4, prefixLen, bytes: Uint8Array.from(b.subarray(4, 8)) };
  need(buf, LAYOUT.lpmKeyV6.size, 'IPv6 LPM key');
  return { family: 6, prefixLen, bytes: Uint8Array.from(b.subarray(4, 20)) };
}

/** The value of a rules trie entry (RULE, 16 bytes): which lists its prefix is on, and allow state. */
export interface RuleValue {
  readonly prefixLen: number;
  /** On the allow list. */
  readonly allow: boolean;
  /** On the deny list (wins over allow at the same prefix). */
  readonly deny: boolean;
  /** CLOCK_MONOTONIC ns (coarse) of the last traffic the kernel let through by this entry; 0n = never. */
  readonly lastSeenNs: bigint;
  /** CLOCK_MONOTONIC seconds after which the allow entry allows nothing (a TTL the kernel enforces itself); 0 = never. */
  readonly expiresS: number;
  /**
   * Allow-only entries: the longest shorter deny prefix holding this one, which decides once the
   * deadline has lapsed; undefined = none.
   */
  readonly shadowDenyLen?: number;
}

/** Encodes a rules trie value (16 bytes). prefixLen MUST equal the key's prefix length. */
export function encodeRule(v: RuleValue): Buffer {
  const L = LAYOUT.rule;
  if (!v.allow && !v.deny) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', 'a rule is on the allow list, the deny list or both');
  const b = Buffer.alloc(L.size);
  b.writeBigUInt64LE(v.lastSeenNs, L.lastSeenNs);
  b.writeUInt32LE(u32('rule deadline (monotonic seconds)', v.expiresS), L.expiresS);
  b.writeUInt8(checkLen(v.prefixLen), L.prefixLen);
  b.writeUInt8((v.allow ? RULE_LIST.ALLOW : 0) | (v.deny ? RULE_LIST.DENY : 0), L.lists);
  const shadow = v.shadowDenyLen;
  if (shadow !== undefined && (checkLen(shadow) >= v.prefixLen)) {
    throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `shadowDenyLen ${shadow} must be shorter than the prefix (${v.prefixLen})`);
  }
  b.writeUInt8(shadow ?? NO_RULE, L.shadowDenyLen);
  return b;
}

export function decodeRule(buf: Uint8Array): RuleValue {
  const L = LAYOUT.rule;
  const b = need(buf, L.size, 'rule');
  const lists = b.readUInt8(L.lists);
  const shadow = b.readUInt8(L.shadowDenyLen);
  return {
    prefixLen: b.readUInt8(L.prefixLen),
    allow: (lists & RULE_LIST.ALLOW) !== 0,
    deny: (lists & RULE_LIST.DENY) !== 0,
    lastSeenNs: b.readBigUInt64LE(L.lastSeenNs),
    expiresS: b.readUInt32LE(L.expiresS),
    ...(shadow === NO_RULE ? {} : { shadowDenyLen: shadow }),
  };
}

function checkLen(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 128) throw new BpfProgramsError('NETFENCE_ERR_INVALID_CIDR', `prefix length ${n}`);
  return n;
}

/** A CIDR as a rules trie key. */
export interface RuleKey {
  /** Which trie: rules_v4 or rules_v6 (IPv4-mapped IPv6 goes to v4). */
  readonly family: 4 | 6;
  readonly key: Buffer;
  /** The canonical prefix (host bits zeroed; IPv4-mapped IPv6 as IPv4). */
  readonly prefix: IpPrefix;
  /** The same as bpf-loader's LpmKey: { prefixLen, data }. */
  readonly lpmKey: { readonly prefixLen: number; readonly data: Uint8Array };
}

/** The one way to turn a CIDR into a rules trie key: picks the family, zeroes host bits. */
export function ruleKey(cidr: string): RuleKey {
  const prefix = parsePrefix(cidr);
  const key = prefix.family === 4 ? encodeLpmKeyV4(prefix.bytes, prefix.prefixLen) : encodeLpmKeyV6(prefix.bytes, prefix.prefixLen);
  return { family: prefix.family, key, prefix, lpmKey: { prefixLen: prefix.prefixLen, data: prefix.bytes } };
}

// ---------------------------------------------------------------- slots

/** Encodes a tc_slots key (8 bytes): the device a TC program runs on, and its direction. */
export function encodeTcKey(ifindex: number, direction: keyof typeof TC_DIR): Buffer {
  const b = Buffer.alloc(LAYOUT.tcKey.size);
  b.writeUInt32LE(u32('ifindex', ifindex), LAYOUT.tcKey.ifindex);
  const dir = TC_DIR[direction];
  if (dir === undefined) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `TC direction must be ingress, egress or xdp, got ${JSON.stringify(direction)}`);
  b.writeUInt32LE(dir, LAYOUT.tcKey.dir);
  return b;
}

const TC_DIR_NAMES = new Map(Object.entries(TC_DIR).map(([k, v]) => [v as number, k as keyof typeof TC_DIR]));

export function decodeTcKey(buf: Uint8Array): { readonly ifindex: number; readonly direction: keyof typeof TC_DIR } {
  const b = need(buf, LAYOUT.tcKey.size, 'tc key');
  const dir = b.readUInt32LE(LAYOUT.tcKey.dir);
  const direction = TC_DIR_NAMES.get(dir);
  if (direction === undefined) throw new BpfProgramsError('NETFENCE_ERR_LAYOUT', `tc key direction ${dir} is none of ${[...TC_DIR_NAMES.keys()].join(', ')}`);
  return { ifindex: b.readUInt32LE(LAYOUT.tcKey.ifindex), direction };
}

/** A device's slots by direction (dev_slots value); 0 = none. */
export type DevSlots = { readonly [D in keyof typeof TC_DIR]: number };

export function encodeDevSlots(v: DevSlots): Buffer {
  const b = Buffer.alloc(LAYOUT.devSlots.size);
  for (const d of Object.keys(TC_DIR) as (keyof typeof TC_DIR)[]) b.writeUInt32LE(u32(`dev slot ${d}`, v[d]), LAYOUT.devSlots[d]);
  return b;
}

export function decodeDevSlots(buf: Uint8Array): DevSlots {
  const b = need(buf, LAYOUT.devSlots.size, 'dev slots');
  return { ingress: b.readUInt32LE(LAYOUT.devSlots.ingress), egress: b.readUInt32LE(LAYOUT.devSlots.egress), xdp: b.readUInt32LE(LAYOUT.devSlots.xdp) };
}

/**
 * Where a device binding lives: `array` = dev_slots[ifindex] (read it, set `direction`, write it
 * back), `hash` = tc_slots[key] (write or delete the slot). The one way to pick.
 */
export function devBinding(
  ifindex: number,
  direction: keyof typeof TC_DIR,
): { readonly map: 'dev_slots'; readonly kind: 'array'; readonly key: Buffer; readonly direction: keyof typeof TC_DIR } | { readonly map: 'tc_slots'; readonly kind: 'hash'; readonly key: Buffer } {
  if (!Number.isInteger(ifindex) || ifindex < 1 || ifindex > 0x7fffffff) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', `ifindex must be a positive integer, got ${ifindex}`);
  if (ifindex < DEV_SLOTS_MAX) return { map: TC_ONLY_MAPS.devSlots.name, kind: 'array', key: encodeSlot(ifindex), direction };
  return { map: TC_ONLY_MAPS.tcSlots.name, kind: 'hash', key: encodeTcKey(ifindex, direction) };
}

/** Encodes a slot number as a u32 value (tc_slots) or the cg_slot storage (8 bytes). */
export function encodeSlot(slot: number, size: 4 | 8 = 4): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(u32('slot', slot), 0);
  return b;
}

export function decodeSlot(buf: Uint8Array): number {
  return need(buf, 4, 'slot').readUInt32LE(0);
}

/** How long ago (ms) an allow entry saw traffic; undefined if never. `nowNs` defaults to process.hrtime (CLOCK_MONOTONIC). */
export function lastSeenAgeMs(lastSeenNs: bigint, nowNs: bigint = process.hrtime.bigint()): number | undefined {
  if (lastSeenNs === 0n) return undefined;
  const d = nowNs - lastSeenNs;
  return d <= 0n ? 0 : Number(d / 1_000_000n);
}

// ---------------------------------------------------------------- events

export interface NetfenceEvent {
  /** bpf_ktime_get_ns (CLOCK_MONOTONIC). */
  readonly tsNs: bigint;
  /** cgroup id of the sender (0 for TC). */
  readonly cgroupId: bigint;
  readonly attachmentId: number;
  /** tgid for connect/sendmsg hooks, 0 otherwise. */
  readonly pid: number;
  /** 4 or 6 (IPv4-mapped IPv6 is reported as 4); 0 when the packet was unparsable before L3. */
  readonly family: 0 | 4 | 6;
  /** Destination as text ('' when family is 0). */
  readonly dstAddr: string;
  /** Host order, 0 when unknown (ICMP, non-first fragment). */
  readonly dstPort: number;
  readonly protocol: number;
  readonly reason: ReasonName;
  readonly reasonCode: number;
  readonly hook: HookName;
  readonly dryRun: boolean;
  /** The mode the program ran in ('UNKNOWN' for a value outside MODE: it then drops, BAD_CONFIG). */
  readonly mode: ModeName | 'UNKNOWN';
  /** Prefix length of the entry that decided, undefined when a mode or implicit rule decided. */
  readonly rulePrefixLen: number | undefined;
}

const reasonNames = new Map<number, ReasonName>(Object.entries(REASON).map(([k, v]) => [v, k as ReasonName]));
const hookNames = new Map<number, HookName>(Object.entries(HOOK).map(([k, v]) => [v, k as HookName]));
const modeNames = new Map<number, ModeName>(Object.entries(MODE).map(([k, v]) => [v, k as ModeName]));

/** Decodes one ring buffer record (56 bytes). */
export function decodeEvent(buf: Uint8Array): NetfenceEvent {
  const L = LAYOUT.event;
  const b = need(buf, L.size, 'event');
  const famByte = b.readUInt8(L.family);
  const family: 0 | 4 | 6 = famByte === 4 ? 4 : famByte === 6 ? 6 : 0;
  const addr = b.subarray(L.dstAddr, L.dstAddr + 16);
  const reasonCode = b.readUInt8(L.reason);
  const rule = b.readUInt8(L.rulePrefixLen);
  return {
    tsNs: b.readBigUInt64LE(L.tsNs),
    cgroupId: b.readBigUInt64LE(L.cgroupId),
    attachmentId: b.readUInt32LE(L.attachmentId),
    pid: b.readUInt32LE(L.pid),
    family,
    dstAddr: family === 4 ? formatIp(addr.subarray(0, 4)) : family === 6 ? formatIp(addr) : '',
    dstPort: b.readUInt16LE(L.dstPort),
    protocol: b.readUInt8(L.protocol),
    reason: reasonNames.get(reasonCode) ?? 'BAD_CONFIG',
    reasonCode,
    hook: hookNames.get(b.readUInt8(L.hook)) ?? 'TC',
    dryRun: (b.readUInt8(L.flags) & 1) !== 0,
    mode: modeNames.get(b.readUInt8(L.mode)) ?? 'UNKNOWN',
    rulePrefixLen: rule === NO_RULE ? undefined : rule,
  };
}

// ---------------------------------------------------------------- stats

export interface NetfenceStats {
  readonly allowed: bigint;
  readonly blocked: bigint;
  readonly dryRunWouldBlock: bigint;
  readonly eventsLost: bigint;
  readonly implicitAllowed: bigint;
  readonly dnsRedirected: bigint;
  readonly severed: bigint;
  readonly severFailed: bigint;
  /** Queries to the own DNS server dropped over the rate limit. */
  readonly dnsRateLimited: bigint;
  /** Drops and dry-run would-drops by reason. */
  readonly byReason: Readonly<Record<Exclude<ReasonName, 'NONE'>, bigint>>;
}

/** Builds named stats from the STATS.COUNT counters (each already summed over CPUs). */
export function decodeStats(counters: readonly bigint[]): NetfenceStats {
  if (counters.length < STATS.COUNT) throw new BpfProgramsError('NETFENCE_ERR_LAYOUT', `stats need ${STATS.COUNT} counters, got ${counters.length}`);
  const at = (i: number): bigint => counters[i] ?? 0n;
  const byReason = {} as Record<Exclude<ReasonName, 'NONE'>, bigint>;
  for (const [name, code] of Object.entries(REASON)) {
    if (name !== 'NONE') byReason[name as Exclude<ReasonName, 'NONE'>] = at(STATS.REASON_BASE + code);
  }
  return {
    allowed: at(STATS.ALLOWED),
    blocked: at(STATS.BLOCKED),
    dryRunWouldBlock: at(STATS.DRY_RUN_WOULD_BLOCK),
    eventsLost: at(STATS.EVENTS_LOST),
    implicitAllowed: at(STATS.IMPLICIT_ALLOWED),
    dnsRedirected: at(STATS.DNS_REDIRECTED),
    severed: at(STATS.SEVERED),
    severFailed: at(STATS.SEVER_FAILED),
    dnsRateLimited: at(STATS.DNS_RATE_LIMITED),
    byReason,
  };
}

/** Sums a per-CPU stats element (a slot's STATS.COUNT counters per possible CPU) into the counters. */
export function sumPerCpuStats(buf: Uint8Array): bigint[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const size = LAYOUT.stats.size;
  if (b.length % size !== 0) throw new BpfProgramsError('NETFENCE_ERR_LAYOUT', `per-CPU stats need a multiple of ${size} bytes, got ${b.length}`);
  const out: bigint[] = new Array<bigint>(STATS.COUNT).fill(0n);
  for (let o = 0; o < b.length; o += size) for (let i = 0; i < STATS.COUNT; i++) out[i] = (out[i] as bigint) + b.readBigUInt64LE(o + 8 * i);
  return out;
}

// ---------------------------------------------------------------- sever target

export interface SeverTarget {
  /** Only sockets of this cgroup (cgroup2 inode number, e.g. fs.statSync(path, {bigint:true}).ino) or its descendants; 0n/undefined = any. */
  readonly cgroupId?: bigint;
  /** Only sockets whose remote address is inside this prefix; undefined = any address. */
  readonly prefix?: string;
  /** The attachment (slot) whose policy judges the sockets. */
  readonly slot: number;
}

/** Encodes the sever_cfg value (32 bytes). A socket is destroyed only if, in addition, the current policy blocks it. */
export function encodeSeverConfig(t: SeverTarget): Buffer {
  const L = LAYOUT.severConfig;
  const b = Buffer.alloc(L.size);
  b.writeBigUInt64LE(t.cgroupId ?? 0n, L.cgroupId);
  b.writeUInt32LE(u32('sever slot', t.slot), L.slot);
  if (t.prefix !== undefined) {
    const p = parsePrefix(t.prefix);
    b.writeUInt8(p.family, L.family);
    b.writeUInt8(p.prefixLen, L.prefixLen);
    b.set(p.bytes, L.addr);
  }
  return b;
}

/** Decodes the sever_cfg value. */
export function decodeSeverConfig(buf: Uint8Array): SeverTarget {
  const L = LAYOUT.severConfig;
  const b = need(buf, L.size, 'sever config');
  const cgroupId = b.readBigUInt64LE(L.cgroupId);
  const family = b.readUInt8(L.family);
  const prefixLen = b.readUInt8(L.prefixLen);
  const addr = b.subarray(L.addr, L.addr + (family === 4 ? 4 : 16));
  return {
    slot: b.readUInt32LE(L.slot),
    ...(cgroupId !== 0n ? { cgroupId } : {}),
    ...(family === 4 || family === 6 ? { prefix: `${formatIp(addr)}/${prefixLen}` } : {}),
  };
}

// ---------------------------------------------------------------- codecs

/** Structurally a bpf-loader Codec<T>: size, encode into a buffer at an offset, decode, optional add. */
export interface LayoutCodec<T> {
  readonly size: number;
  encode(value: T, target: Buffer, offset: number): void;
  decode(source: Buffer, offset: number): T;
  add?(a: T, b: T): T;
}

function codec<T>(size: number, enc: (v: T) => Buffer, dec: (b: Buffer) => T): LayoutCodec<T> {
  return {
    size,
    encode: (v, target, offset) => void enc(v).copy(target, offset),
    decode: (source, offset) => dec(source.subarray(offset, offset + size)),
  };
}

/** Codecs for typed map views (createArrayMap, createLpmTrieMap, createPerCpuArrayMap). */
export const CODECS = {
  config: codec<AttachmentConfig>(LAYOUT.config.size, encodeConfig, decodeConfig),
  rule: codec<RuleValue>(LAYOUT.rule.size, encodeRule, decodeRule),
  slot: codec<number>(4, (n) => encodeSlot(n), decodeSlot),
  cgSlot: codec<number>(LAYOUT.cgSlot.size, (n) => encodeSlot(n, 8), decodeSlot),
  devSlots: codec<DevSlots>(LAYOUT.devSlots.size, encodeDevSlots, decodeDevSlots),
  tcKey: codec<{ readonly ifindex: number; readonly direction: keyof typeof TC_DIR }>(LAYOUT.tcKey.size, (k) => encodeTcKey(k.ifindex, k.direction), decodeTcKey),
  severConfig: codec<SeverTarget>(LAYOUT.severConfig.size, encodeSeverConfig, decodeSeverConfig),
  dnsLimit: codec<DnsRateLimit>(LAYOUT.dnsLimit.size, encodeDnsLimit, decodeDnsLimit),
  /** A slot's counters (indexed by STATS), summed over CPUs with `add`. */
  stats: {
    size: 8 * STATS.COUNT,
    encode: (v: readonly bigint[], t: Buffer, o: number) => {
      for (let i = 0; i < STATS.COUNT; i++) t.writeBigUInt64LE(v[i] ?? 0n, o + 8 * i);
    },
    decode: (s: Buffer, o: number): bigint[] => Array.from({ length: STATS.COUNT }, (_v, i) => s.readBigUInt64LE(o + 8 * i)),
    add: (a: readonly bigint[], b: readonly bigint[]): bigint[] => a.map((x, i) => x + (b[i] ?? 0n)),
  } satisfies LayoutCodec<readonly bigint[]>,
} as const;
