// One attachment's state in the host-wide maps, at its slot: config (ACTIVE), DNS limit,
// counters, and its two rules tries (created here, from user space, and put in rules_v4/v6).
// Written from a snapshot (a fresh attach, an old slot, a layout-v1 directory) with the config
// last, so a program that can reach the slot sees it whole; cleared back to all zero (inactive:
// the programs drop) before the slot is freed.

import { join } from 'node:path';
import { createLpmTrieMap, createMap, openPinnedMap, type BpfMap, type LpmTrieMapView } from '@netfence/bpf-loader';
import { CODECS, RULE_TRIES, STATS, INACTIVE_CONFIG, encodeDnsLimit, type AttachmentConfig, type DnsRateLimit, type RuleValue } from '@netfence/bpf-programs';
import { unbindDevice, type Device } from './device-slots';
import { cidrOfLpmKey, type SlotSnapshot } from './layout-v1';
import type { HostMaps } from './host-program-set';
import { TRIE_PINS } from './pin-layout';
import type { RuleEntry } from './rule-trie';

export type { SlotSnapshot } from './layout-v1';

/** An attachment's two tries, as maps (owned by the attachment) and typed views. */
export interface RuleTries {
  readonly maps: Readonly<Record<4 | 6, BpfMap>>;
  readonly views: Readonly<Record<4 | 6, LpmTrieMapView<RuleValue>>>;
}

const TRIE = { 4: RULE_TRIES.v4, 6: RULE_TRIES.v6 } as const;

function views(maps: Record<4 | 6, BpfMap>): RuleTries {
  return { maps, views: { 4: createLpmTrieMap(maps[4], { dataSize: 4, value: CODECS.rule }), 6: createLpmTrieMap(maps[6], { dataSize: 16, value: CODECS.rule }) } };
}

/**
 * Creates the attachment's tries (LPM_TRIE, NO_PREALLOC: memory per entry held) with room for
 * `maxEntries` each, and pins them in `dir` (so a restart finds them, and the slot they fill).
 */
export function createRuleTries(dir: string, maxEntries: number): RuleTries {
  const made: BpfMap[] = [];
  try {
    for (const f of [4, 6] as const) {
      const t = TRIE[f];
      const m = createMap({ name: t.name, type: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries, flags: t.flags });
      made.push(m);
      m.pin(join(dir, TRIE_PINS[f]));
    }
    return views({ 4: made[0]!, 6: made[1]! });
  } catch (e) {
    for (const m of made) {
      m.unpin();
      m.close();
    }
    throw e;
  }
}

/** Re-opens the tries pinned in `dir` (checked against the manifest). */
export function openRuleTries(dir: string): RuleTries {
  const v4 = openPinnedMap(join(dir, TRIE_PINS[4]), { type: TRIE[4].type, keySize: TRIE[4].keySize, valueSize: TRIE[4].valueSize });
  try {
    return views({ 4: v4, 6: openPinnedMap(join(dir, TRIE_PINS[6]), { type: TRIE[6].type, keySize: TRIE[6].keySize, valueSize: TRIE[6].valueSize }) });
  } catch (e) {
    v4.close();
    throw e;
  }
}

export function closeRuleTries(t: RuleTries): void {
  t.maps[4].close();
  t.maps[6].close();
}

/** A trie entry (with the programs' last-seen time) as the kernel holds it. */
export type KernelRule = RuleEntry & { readonly lastSeenNs: bigint };

export function ruleValue(e: RuleEntry, lastSeenNs: bigint): RuleValue {
  return { prefixLen: e.cidr.prefixLen, allow: e.allow, deny: e.deny, lastSeenNs, expiresS: e.expiresS, ...(e.shadowDenyLen === undefined ? {} : { shadowDenyLen: e.shadowDenyLen }) };
}

/** Every entry of both tries. */
export function readRules(t: RuleTries): KernelRule[] {
  const out: KernelRule[] = [];
  for (const f of [4, 6] as const) {
    const m = t.maps[f];
    for (const k of m.keys()) {
      const v = t.views[f].get({ prefixLen: k.readUInt32LE(0), data: k.subarray(4) });
      if (!v || (!v.allow && !v.deny)) continue;
      const cidr = cidrOfLpmKey(k);
      if (v.prefixLen !== cidr.prefixLen) continue; // a longest-prefix answer, not this key's entry
      out.push({ cidr, allow: v.allow, deny: v.deny, expiresS: v.expiresS, shadowDenyLen: v.shadowDenyLen, lastSeenNs: v.lastSeenNs });
    }
  }
  return out;
}

/** Writes entries into the tries (one batch per family). */
export function writeRules(t: RuleTries, rules: Iterable<KernelRule>): void {
  const by: Record<4 | 6, [{ prefixLen: number; data: Uint8Array }, RuleValue][]> = { 4: [], 6: [] };
  for (const r of rules) by[r.cidr.family].push([{ prefixLen: r.cidr.prefixLen, data: r.cidr.bytes }, ruleValue(r, r.lastSeenNs)]);
  for (const f of [4, 6] as const) if (by[f].length) t.views[f].setMany(by[f]);
}

/** A fresh attachment's snapshot: mode DISABLED, no rules, the configured DNS limit. */
export function initialSnapshot(config: AttachmentConfig, dnsLimit: DnsRateLimit): SlotSnapshot {
  return { config, dnsLimit: encodeDnsLimit(dnsLimit), rules: [] };
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
};

/**
 * Fills `slot` from `snap`: counters (copied, or zeroed: a slot may have been used before), DNS
 * limit, the tries' entries and their place in rules_v4/v6, and the config (with ACTIVE) last.
 * Nothing is bound to the slot yet: no program judges by it until the target is bound.
 */
export function fillSlot(host: HostMaps, slot: number, snap: SlotSnapshot, tries: RuleTries): void {
  const cpus = host.stats.possibleCpus;
  const zero = new Array<bigint>(STATS.COUNT).fill(0n);
  host.stats.setPerCpu(slot, Array.from({ length: cpus }, (_v, c) => snap.stats?.[c] ?? zero));
  host.dnsLimit.update(u32(slot), snap.dnsLimit);
  writeRules(tries, snap.rules);
  host.rules[4].set(slot, tries.maps[4]);
  host.rules[6].set(slot, tries.maps[6]);
  host.config.set(slot, snap.config);
}

/** What `slot` holds now (config, DNS limit with its bucket, counters, and the rules of its tries). */
export function readSlot(host: HostMaps, slot: number): SlotSnapshot {
  const config = host.config.get(slot);
  const dnsLimit = Buffer.from(host.dnsLimit.lookup(u32(slot))!);
  const stats = host.stats.getPerCpu(slot);
  const opened: BpfMap[] = [];
  try {
    const maps = {} as Record<4 | 6, BpfMap>;
    for (const f of [4, 6] as const) {
      const m = host.rules[f].open(slot, { type: TRIE[f].type, keySize: TRIE[f].keySize, valueSize: TRIE[f].valueSize });
      if (!m) return { config, dnsLimit, rules: [], stats };
      opened.push(m);
      maps[f] = m;
    }
    return { config, dnsLimit, rules: readRules(views(maps)), stats };
  } finally {
    for (const m of opened) m.close();
  }
}

/** Is the slot's config ACTIVE (in use)? */
export function slotActive(host: HostMaps, slot: number): boolean {
  return !!host.config.get(slot).active;
}

/**
 * Clears `slot`: config all zero first (inactive: every program still bound to it drops), then
 * the devices' bindings that still name it, its tries out of rules_v4/v6 and its DNS limit
 * zeroed. Counters are zeroed when the slot is filled again.
 */
export function clearSlot(host: HostMaps, slot: number, devices: readonly Device[] = []): void {
  host.config.map.update(u32(slot), INACTIVE_CONFIG);
  for (const d of devices) unbindDevice(host, d, slot);
  host.rules[4].delete(slot);
  host.rules[6].delete(slot);
  host.dnsLimit.update(u32(slot), Buffer.alloc(host.dnsLimit.valueSize));
}
