// The pins of layout v1 (before issue 11: every attachment loaded its own copy of the programs
// and owned its maps under <root>/<id>/), read so an attachment can be moved to a slot with an
// exact copy of its state (layout-v1-migration.ts). The layouts are written out here because the
// bpf-programs manifest now describes only the host-wide layout; they are those of
// packages/daemon/test/fixtures/layout-v1/ (commit in its SOURCE-COMMIT).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { numPossibleCpus, openPinnedMap, type BpfMap } from '@netfence/bpf-loader';
import { BPF_MAP_TYPE, STATS, decodeConfig, decodeLpmKey, formatPrefix, type AttachmentConfig } from '@netfence/bpf-programs';
import { parseCidr } from '@netfence/policy-engine';
import { RuleTrie, type RuleEntry } from './rule-trie';

/** The v1 maps of an attachment, by pin name, with their shapes. `nf_config` marks a v1 directory. */
export const V1_MAPS = {
  config: { name: 'nf_config', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 48 },
  allowV4: { name: 'allow_v4', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 8, valueSize: 16 },
  allowV6: { name: 'allow_v6', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 20, valueSize: 16 },
  denyV4: { name: 'deny_v4', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 8, valueSize: 8 },
  denyV6: { name: 'deny_v6', type: BPF_MAP_TYPE.LPM_TRIE, keySize: 20, valueSize: 8 },
  stats: { name: 'stats', type: BPF_MAP_TYPE.PERCPU_ARRAY, keySize: 4, valueSize: 8 },
  dnsLimit: { name: 'dns_limit', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 24 },
  severConfig: { name: 'sever_cfg', type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 32 },
} as const;

/** Removed last when a directory is migrated: while it is there, the directory is (still) v1. */
export const V1_MARKER = V1_MAPS.config.name;

export function isV1Dir(dir: string): boolean {
  return existsSync(join(dir, V1_MARKER));
}

/** What a slot is filled from: a fresh attach, an old slot, or a v1 directory. */
export interface SlotSnapshot {
  readonly config: AttachmentConfig;
  /** The dns_limit value as the kernel holds it (rate, burst and the bucket). */
  readonly dnsLimit: Buffer;
  /** Trie entries with the last-seen times the programs wrote. */
  readonly rules: readonly (RuleEntry & { readonly lastSeenNs: bigint })[];
  /** Per possible CPU, the STATS.COUNT counters; undefined: counters start at 0. */
  readonly stats?: readonly (readonly bigint[])[];
}

function open(dir: string, m: (typeof V1_MAPS)[keyof typeof V1_MAPS]): BpfMap {
  return openPinnedMap(join(dir, m.name), { type: m.type, keySize: m.keySize, valueSize: m.valueSize });
}

/** The canonical prefix of an LPM key. */
export function cidrOfLpmKey(key: Buffer) {
  const p = decodeLpmKey(key);
  return parseCidr(formatPrefix(p));
}

/**
 * Reads a v1 attachment's state: config, both lists (allow entries with their last-seen time and
 * deadline: v1 allow value {u64 last_seen_ns; u32 prefix_len; u32 expires_s}), the DNS limit
 * with its bucket, and the counters. Throws when a map is missing or not of the v1 shape.
 */
export function readV1Snapshot(dir: string): SlotSnapshot {
  const maps: BpfMap[] = [];
  const get = (m: (typeof V1_MAPS)[keyof typeof V1_MAPS]) => {
    const map = open(dir, m);
    maps.push(map);
    return map;
  };
  try {
    const zero = Buffer.alloc(4);
    const config = decodeConfig(get(V1_MAPS.config).lookup(zero)!);
    const dnsLimit = Buffer.from(get(V1_MAPS.dnsLimit).lookup(zero)!);
    // v1: one per-CPU u64 element per counter index
    const stats = get(V1_MAPS.stats);
    const counters: bigint[][] = Array.from({ length: numPossibleCpus() }, () => new Array<bigint>(STATS.COUNT).fill(0n));
    for (let i = 0; i < STATS.COUNT; i++) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i, 0);
      const v = stats.lookup(k)!;
      counters.forEach((c, cpu) => (c[i] = v.readBigUInt64LE(cpu * 8)));
    }
    const allow = new Map<string, { lastSeenNs: bigint; expiresS: number }>();
    const deny: string[] = [];
    for (const m of [V1_MAPS.allowV4, V1_MAPS.allowV6]) {
      const map = get(m);
      for (const k of map.keys()) {
        const v = map.lookup(k);
        if (v) allow.set(cidrOfLpmKey(k).text, { lastSeenNs: v.readBigUInt64LE(0), expiresS: v.readUInt32LE(12) });
      }
    }
    for (const m of [V1_MAPS.denyV4, V1_MAPS.denyV6]) for (const k of get(m).keys()) deny.push(cidrOfLpmKey(k).text);
    // The lists as one trie per family (shadows computed), with no limit: an exact copy.
    const trie = new RuleTrie({ allow: Infinity, deny: Infinity });
    trie.plan([...deny.map((cidr) => ({ op: 'add' as const, list: 'deny' as const, cidr })), ...[...allow].map(([cidr, a]) => ({ op: 'add' as const, list: 'allow' as const, cidr, expiresS: a.expiresS }))]);
    const rules = [...trie.entries()].map((e) => ({ ...e, lastSeenNs: allow.get(e.cidr.text)?.lastSeenNs ?? 0n }));
    return { config, dnsLimit, rules, stats: counters };
  } finally {
    for (const m of maps) m.close();
  }
}
