import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BPF_PROGRAMS_ERROR_CODES,
  BpfProgramsError,
  CONFIG_FLAG,
  decodeConfig,
  decodeEvent,
  decodeLpmKey,
  decodeSeverConfig,
  decodeStats,
  decodeDnsLimit,
  encodeDnsLimit,
  encodeRule,
  decodeRule,
  ruleKey,
  encodeTcKey,
  decodeTcKey,
  encodeDevSlots,
  decodeDevSlots,
  devBinding,
  DEV_SLOTS_MAX,
  RULE_LIST,
  TC_DIR,
  TC_ONLY_MAPS,
  HOST_MAPS,
  CGROUP_ATTACH_ORDER,
  hostPinnedMaps,
  encodeConfig,
  INACTIVE_CONFIG,
  encodeLpmKeyV4,
  encodeLpmKeyV6,
  encodeSeverConfig,
  formatIp,
  HOOK,
  isTcDrop,
  LAYOUT,
  mapSizes,
  MODE,
  parsePrefix,
  REASON,
  STATS,
  CODECS,
  lastSeenAgeMs,
  OBJECTS,
  SEVER_PROGRAMS,
  SEVER_SHARED_MAPS,
  CGROUP_ATTACHED_PROGRAMS,
  CGROUP_ONLY_MAPS,
  type MapManifest,
} from './index';

const SRC = __dirname;
const header = readFileSync(join(SRC, 'netfence_common.h'), 'utf8');
const cgroupSrc = readFileSync(join(SRC, 'cgroup_filter.bpf.c'), 'utf8');
const severHeader = readFileSync(join(SRC, 'netfence_sever.h'), 'utf8');
const frameHeader = readFileSync(join(SRC, 'netfence_frame.h'), 'utf8');

const STRUCT_TO_LAYOUT: Record<string, keyof typeof LAYOUT> = {
  nf_config: 'config',
  nf_lpm_v4: 'lpmKeyV4',
  nf_lpm_v6: 'lpmKeyV6',
  nf_rule: 'rule',
  nf_tc_key: 'tcKey',
  nf_cg_slot: 'cgSlot',
  nf_dev_slots: 'devSlots',
  nf_event: 'event',
  nf_sever_config: 'severConfig',
  nf_dns_orig: 'dnsOrig',
  nf_dns_limit: 'dnsLimit',
};
const camel = (s: string): string => (s === 'prefixlen' ? 'prefixLen' : s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()));

function defines(prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of header.matchAll(new RegExp(`^#define ${prefix}([A-Z0-9_]+)\\s+\\(?([0-9]+u?)(?:\\s*<<\\s*([0-9]+))?\\)?`, 'gm'))) {
    const v = parseInt(m[2] as string, 10);
    out[m[1] as string] = m[3] ? v << parseInt(m[3], 10) : v;
  }
  return out;
}

describe('manifest mirrors the C sources', () => {
  it('every layout size and offset asserted in C matches LAYOUT', () => {
    const text = header + cgroupSrc + severHeader + frameHeader;
    let checked = 0;
    for (const m of text.matchAll(/^NF_ASSERT_SIZE\((\w+), (\d+)\);/gm)) {
      const layout = LAYOUT[STRUCT_TO_LAYOUT[m[1] as string] as keyof typeof LAYOUT] as Record<string, number>;
      expect([m[1], layout.size]).toEqual([m[1], Number(m[2])]);
      checked++;
    }
    for (const m of text.matchAll(/^NF_ASSERT_OFF\((\w+), (\w+), (\d+)\);/gm)) {
      const layout = LAYOUT[STRUCT_TO_LAYOUT[m[1] as string] as keyof typeof LAYOUT] as Record<string, number>;
      expect([m[1], m[2], layout[camel(m[2] as string)]]).toEqual([m[1], m[2], Number(m[3])]);
      checked++;
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('modes, flags, reasons, hooks and stats indices match the #defines', () => {
    expect(defines('NF_MODE_')).toEqual(MODE);
    expect(defines('NF_FLAG_')).toEqual(CONFIG_FLAG);
    const reasons = defines('NF_REASON_');
    delete reasons.MAX;
    expect(reasons).toEqual(REASON);
    expect(defines('NF_HOOK_')).toEqual(HOOK);
    expect(defines('NF_LIST_')).toEqual(RULE_LIST);
    expect({ ingress: defines('NF_DIR_').INGRESS, egress: defines('NF_DIR_').EGRESS, xdp: defines('NF_DIR_').XDP }).toEqual(TC_DIR);
    const stats = defines('NF_STAT_');
    expect(stats).toEqual({
      ALLOWED: STATS.ALLOWED,
      BLOCKED: STATS.BLOCKED,
      DRY_RUN: STATS.DRY_RUN_WOULD_BLOCK,
      EVENTS_LOST: STATS.EVENTS_LOST,
      IMPLICIT_ALLOWED: STATS.IMPLICIT_ALLOWED,
      DNS_REDIRECTED: STATS.DNS_REDIRECTED,
      SEVERED: STATS.SEVERED,
      SEVER_FAILED: STATS.SEVER_FAILED,
      REASON_BASE: STATS.REASON_BASE,
      DNS_RATE_LIMITED: STATS.DNS_RATE_LIMITED,
      COUNT: STATS.COUNT,
    });
    expect(STATS.REASON_BASE + Math.max(...Object.values(REASON))).toBeLessThan(STATS.DNS_RATE_LIMITED);
    expect(STATS.DNS_RATE_LIMITED).toBeLessThan(STATS.COUNT);
  });
});

describe('objects', () => {
  it('the sever iterators live in their own object, sharing every map of it with the cgroup object', () => {
    expect(Object.keys(OBJECTS.sever.programs).sort()).toEqual([...SEVER_PROGRAMS].sort());
    for (const k of SEVER_PROGRAMS) expect(OBJECTS.sever.programs[k].attach.kind).toBe('iter');
    expect(Object.keys(OBJECTS.cgroup.programs).sort()).toEqual([...CGROUP_ATTACHED_PROGRAMS].sort());
    expect([...SEVER_SHARED_MAPS].sort()).toEqual(Object.values(OBJECTS.sever.maps).map((m) => m.name).sort());
    const cgroupMaps = Object.values(OBJECTS.cgroup.maps) as MapManifest[];
    for (const name of SEVER_SHARED_MAPS) {
      // same definition on both sides, or libbpf refuses to reuse the pin
      const own = Object.values(OBJECTS.sever.maps).find((m) => m.name === name);
      expect(cgroupMaps.find((m) => m.name === name)).toEqual(own);
    }
    expect(SEVER_SHARED_MAPS).toContain(CGROUP_ONLY_MAPS.severConfig.name);
    expect(/SEC\("iter\//.test(cgroupSrc)).toBe(false);
  });

  it('the TC and cgroup objects share every host map with the same definition (one pinned set serves both)', () => {
    for (const m of Object.values(HOST_MAPS)) {
      expect(Object.values(OBJECTS.tc.maps)).toContainEqual(m);
      expect(Object.values(OBJECTS.xdp.maps)).toContainEqual(m);
      expect(Object.values(OBJECTS.cgroup.maps)).toContainEqual(m);
    }
    expect(OBJECTS.xdp.maps.tcSlots).toEqual(OBJECTS.tc.maps.tcSlots);
    expect(OBJECTS.xdp.maps.devSlots).toEqual(OBJECTS.tc.maps.devSlots);
    expect(Number(/#define NF_DEV_SLOTS_MAX (\d+)/.exec(frameHeader)?.[1])).toBe(DEV_SLOTS_MAX);
    expect(hostPinnedMaps('tc')).toContain(TC_ONLY_MAPS.tcSlots.name);
    expect(hostPinnedMaps('cgroup')).toContain(CGROUP_ONLY_MAPS.cgSlot.name);
  });

  it('the cgroup attach order covers every cgroup program once, storage-only programs first', () => {
    expect([...CGROUP_ATTACH_ORDER.storage, ...CGROUP_ATTACH_ORDER.judging].sort()).toEqual([...CGROUP_ATTACHED_PROGRAMS].sort());
    // the storage-only programs judge nothing: their C bodies restore addresses and never decide
    for (const k of CGROUP_ATTACH_ORDER.storage) {
      const fn = OBJECTS.cgroup.programs[k].name;
      const body = cgroupSrc.slice(cgroupSrc.indexOf(`int ${fn}(`)).split('\n}')[0] as string;
      expect(body).toMatch(/nf_restore[46]\(ctx\)/);
    }
  });
});

describe('layouts', () => {
  it('ruleKey picks the family and zeroes host bits', () => {
    const a = ruleKey('10.1.2.3/16');
    expect(a.family).toBe(4);
    expect([...a.key]).toEqual([16, 0, 0, 0, 10, 1, 0, 0]);
    const d = ruleKey('2001:db8::1/32');
    expect(d.family).toBe(6);
    expect(d.key.length).toBe(LAYOUT.lpmKeyV6.size);
    expect(d.key.readUInt32LE(0)).toBe(32);
    expect(formatIp(d.key.subarray(4))).toBe('2001:db8::');
    // IPv4-mapped IPv6 goes to the IPv4 trie, as the datapath checks it
    const m = ruleKey('::ffff:10.200.0.0/112');
    expect(m.family).toBe(4);
    expect(m.prefix.prefixLen).toBe(16);
    expect(formatIp(m.prefix.bytes)).toBe('10.200.0.0');
    // a bare address is a host prefix
    expect(ruleKey('203.0.113.9').prefix.prefixLen).toBe(32);
    expect(ruleKey('203.0.113.9').lpmKey).toEqual({ prefixLen: 32, data: Uint8Array.from([203, 0, 113, 9]) });
  });

  it('rule values round-trip and carry the lists, deadline and shadowing deny', () => {
    const allow = { prefixLen: 24, allow: true, deny: false, lastSeenNs: 5n, expiresS: 77, shadowDenyLen: 8 };
    const b = encodeRule(allow);
    expect(b.length).toBe(LAYOUT.rule.size);
    expect([b.readUInt8(LAYOUT.rule.lists), b.readUInt8(LAYOUT.rule.shadowDenyLen), b.readUInt8(LAYOUT.rule.prefixLen)]).toEqual([RULE_LIST.ALLOW, 8, 24]);
    expect(decodeRule(b)).toEqual(allow);
    const both = { prefixLen: 32, allow: true, deny: true, lastSeenNs: 0n, expiresS: 0 };
    expect(encodeRule(both).readUInt8(LAYOUT.rule.shadowDenyLen)).toBe(0xff);
    expect(decodeRule(encodeRule(both))).toEqual(both);
    expect(() => encodeRule({ prefixLen: 8, allow: false, deny: false, lastSeenNs: 0n, expiresS: 0 })).toThrow(BpfProgramsError);
    expect(() => encodeRule({ prefixLen: 8, allow: true, deny: false, lastSeenNs: 0n, expiresS: 0, shadowDenyLen: 8 })).toThrow(BpfProgramsError);
  });

  it('a device binding goes to dev_slots below DEV_SLOTS_MAX, to tc_slots above', () => {
    const a = devBinding(7, 'xdp');
    expect(a).toMatchObject({ map: 'dev_slots', kind: 'array', direction: 'xdp' });
    expect(a.key.readUInt32LE(0)).toBe(7);
    const h = devBinding(DEV_SLOTS_MAX, 'egress');
    expect(h.kind).toBe('hash');
    expect(decodeTcKey(h.key)).toEqual({ ifindex: DEV_SLOTS_MAX, direction: 'egress' });
    expect(() => devBinding(0, 'ingress')).toThrow(BpfProgramsError);
    const v = { ingress: 3, egress: 0, xdp: 9 };
    expect(decodeDevSlots(encodeDevSlots(v))).toEqual(v);
    expect(encodeDevSlots(v).readUInt32LE(LAYOUT.devSlots.xdp)).toBe(9);
  });

  it('tc keys encode the device and the direction', () => {
    const k = encodeTcKey(42, 'egress');
    expect([k.readUInt32LE(LAYOUT.tcKey.ifindex), k.readUInt32LE(LAYOUT.tcKey.dir)]).toEqual([42, TC_DIR.egress]);
    expect(decodeTcKey(k)).toEqual({ ifindex: 42, direction: 'egress' });
    expect(decodeTcKey(encodeTcKey(7, 'xdp'))).toEqual({ ifindex: 7, direction: 'xdp' });
    expect(() => encodeTcKey(1, 'sideways' as 'egress')).toThrow(BpfProgramsError);
    const bad = encodeTcKey(1, 'egress');
    bad.writeUInt32LE(9, LAYOUT.tcKey.dir);
    expect(() => decodeTcKey(bad)).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_LAYOUT' }));
  });

  it('refuses bad prefixes and addresses with a stable code', () => {
    for (const bad of ['10.0.0.0/33', '10.0.0/8', 'fe80::1%eth0', '::/129', 'example.com', '10.0.0.0/-1', '10.0.0.0/']) {
      expect(() => parsePrefix(bad)).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_CIDR' }));
    }
    expect(() => encodeLpmKeyV4(new Uint8Array(16), 8)).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ADDRESS' }));
    expect(() => encodeLpmKeyV6('2001:db8::', 129)).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_CIDR' }));
    expect(() => encodeRule({ prefixLen: 200, allow: true, deny: false, lastSeenNs: 0n, expiresS: 0 })).toThrow(BpfProgramsError);
  });

  it('LPM keys round-trip', () => {
    expect(decodeLpmKey(encodeLpmKeyV4('198.51.100.77', 24))).toEqual({ family: 4, prefixLen: 24, bytes: Uint8Array.from([198, 51, 100, 0]) });
    const k = decodeLpmKey(encodeLpmKeyV6('2001:db8:1:2:3:4:5:6', 64));
    expect([k.family, k.prefixLen, formatIp(k.bytes)]).toEqual([6, 64, '2001:db8:1:2::']);
  });

  it('config round-trips', () => {
    const c = { mode: 'ALLOWLIST', dryRun: true, dnsFilter: true, l3Device: false, attachmentId: 77, dnsServer: { v4: '10.200.1.1', v6: '2001:db8::53', port: 5353 } } as const;
    const b = encodeConfig(c);
    expect(b.length).toBe(48);
    expect(b.readUInt32LE(LAYOUT.config.flags)).toBe(CONFIG_FLAG.ACTIVE | CONFIG_FLAG.DRY_RUN | CONFIG_FLAG.DNS_FILTER);
    expect(decodeConfig(b)).toEqual({ ...c, modeValue: MODE.ALLOWLIST, active: true });
    expect(decodeConfig(encodeConfig({ mode: 'DISABLED', attachmentId: 1 }))).toEqual({ mode: 'DISABLED', modeValue: 0, dryRun: false, dnsFilter: false, l3Device: false, active: true, attachmentId: 1 });
    // a free slot's config is not active: the programs drop
    expect(decodeConfig(INACTIVE_CONFIG).active).toBe(false);
    expect(() => encodeConfig({ mode: 'ALLOWLIST', attachmentId: 1, dnsServer: { v4: '2001:db8::1', port: 53 } })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ADDRESS' }));
    expect(() => encodeConfig({ mode: 'ALLOWLIST', attachmentId: 1, dnsServer: { v4: '10.0.0.1', port: 0 } })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' }));
    expect(() => encodeConfig({ mode: 'NOPE' as 'DISABLED', attachmentId: 1 })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' }));
    const cc = CODECS.config;
    const buf = Buffer.alloc(cc.size + 4);
    cc.encode(c, buf, 4);
    expect(cc.decode(buf, 4)).toMatchObject(c);
  });

  it('events decode', () => {
    const L = LAYOUT.event;
    const b = Buffer.alloc(L.size);
    b.writeBigUInt64LE(123n, L.tsNs);
    b.writeBigUInt64LE(99n, L.cgroupId);
    b.writeUInt32LE(5, L.attachmentId);
    b.writeUInt32LE(4321, L.pid);
    Buffer.from([203, 0, 113, 5]).copy(b, L.dstAddr);
    b.writeUInt16LE(443, L.dstPort);
    b.writeUInt8(4, L.family);
    b.writeUInt8(6, L.protocol);
    b.writeUInt8(REASON.DENY_CIDR, L.reason);
    b.writeUInt8(HOOK.CONNECT, L.hook);
    b.writeUInt8(1, L.flags);
    b.writeUInt8(MODE.ALLOWLIST, L.mode);
    b.writeUInt8(24, L.rulePrefixLen);
    expect(decodeEvent(b)).toEqual({
      tsNs: 123n,
      cgroupId: 99n,
      attachmentId: 5,
      pid: 4321,
      family: 4,
      dstAddr: '203.0.113.5',
      dstPort: 443,
      protocol: 6,
      reason: 'DENY_CIDR',
      reasonCode: 1,
      hook: 'CONNECT',
      dryRun: true,
      mode: 'ALLOWLIST',
      rulePrefixLen: 24,
    });
    b.writeUInt8(0xff, L.rulePrefixLen);
    b.writeUInt8(6, L.family);
    Buffer.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).copy(b, L.dstAddr);
    expect(decodeEvent(b)).toMatchObject({ family: 6, dstAddr: '2001:db8::1', rulePrefixLen: undefined });
    expect(() => decodeEvent(Buffer.alloc(10))).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_LAYOUT' }));
  });

  it('stats decode by name', () => {
    const c = Array.from({ length: STATS.COUNT }, (_v, i) => BigInt(i * 10));
    const s = decodeStats(c);
    expect([s.allowed, s.blocked, s.dryRunWouldBlock, s.eventsLost, s.severed]).toEqual([0n, 10n, 20n, 30n, 60n]);
    expect(s.byReason.DNS_BYPASS).toBe(BigInt((STATS.REASON_BASE + REASON.DNS_BYPASS) * 10));
    expect(s.dnsRateLimited).toBe(BigInt(STATS.DNS_RATE_LIMITED * 10));
    expect(() => decodeStats([1n])).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_LAYOUT' }));
  });

  it('the DNS rate limit encodes rate and burst, a full bucket, and refuses a rate without a burst', () => {
    const b = encodeDnsLimit({ rateQps: 2000, burst: 4000 });
    expect(b.length).toBe(LAYOUT.dnsLimit.size);
    expect([b.readUInt32LE(LAYOUT.dnsLimit.rateQps), b.readUInt32LE(LAYOUT.dnsLimit.burst), b.readBigUInt64LE(LAYOUT.dnsLimit.tatNs)]).toEqual([2000, 4000, 0n]);
    expect(decodeDnsLimit(b)).toEqual({ rateQps: 2000, burst: 4000 });
    expect(decodeDnsLimit(encodeDnsLimit({ rateQps: 0, burst: 0 }))).toEqual({ rateQps: 0, burst: 0 });
    expect(() => encodeDnsLimit({ rateQps: 10, burst: 0 })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' }));
    expect(() => encodeDnsLimit({ rateQps: -1, burst: 1 })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' }));
  });

  it('sever config round-trips', () => {
    expect(decodeSeverConfig(encodeSeverConfig({ slot: 3, cgroupId: 1234n, prefix: '10.200.0.0/16' }))).toEqual({ slot: 3, cgroupId: 1234n, prefix: '10.200.0.0/16' });
    expect(decodeSeverConfig(encodeSeverConfig({ slot: 1 }))).toEqual({ slot: 1 });
    expect(decodeSeverConfig(encodeSeverConfig({ slot: 9, prefix: '2001:db8::/32' }))).toEqual({ slot: 9, prefix: '2001:db8::/32' });
  });

  it('map size overrides are validated', () => {
    expect(mapSizes({ slots: 101, ringBytes: 1 << 20 })).toEqual({ nf_config: 101, rules_v4: 101, rules_v6: 101, dns_limit: 101, tc_slots: 101, stats: 101, events: 1 << 20 });
    expect(() => mapSizes({ ringBytes: 5000 })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' }));
    expect(() => mapSizes({ slots: 1 })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' }));
  });

  it('TC return values and last-seen ages', () => {
    expect(isTcDrop(2)).toBe(true);
    expect(isTcDrop(0xffffffff)).toBe(false);
    expect(isTcDrop(-1)).toBe(false);
    expect(lastSeenAgeMs(0n)).toBeUndefined();
    expect(lastSeenAgeMs(1_000_000_000n, 3_500_000_000n)).toBe(2500);
  });
});

describe('README', () => {
  it('lists every error code', () => {
    const readme = readFileSync(join(SRC, '..', 'README.md'), 'utf8');
    for (const code of BPF_PROGRAMS_ERROR_CODES) expect(readme).toContain(code);
  });
});
