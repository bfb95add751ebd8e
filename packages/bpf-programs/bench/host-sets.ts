// What the benchmark loads: our host set (the tc object, or the fixed-slot cgroup build for test
// runs) with attachments in slots, the reference program with an `lpm` map, and the map-layout
// programs, each filled with the benchmark's rules. Every function here returns objects the
// caller closes.
import { createMap, loadCollection, type BpfMap, type Collection } from '@netfence/bpf-loader';
import {
  encodeConfig,
  encodeSlot,
  FIXED_SLOT,
  fixedSlotCgroupObjectPath,
  HOST_MAPS,
  objectPath,
  OBJECTS,
  RULE_TRIES,
  type ModeName,
} from '@netfence/bpf-programs';
import { bindDevice } from '../test/kernel/helpers';
import { hostWideEncoded, oursEncoded, referenceEncoded, type BenchRule } from './entries';

/** The measured attachment's slot in every host set (the fixed-slot cgroup build judges for it). */
export const MEASURED_SLOT = FIXED_SLOT;
/** tc_slots of the other attachments point at devices that do not exist (ifindex base + slot): a test run never finds them. */
const FAKE_IFINDEX_BASE = 1_000_000;

/** Creates an attachment's IPv4 or IPv6 rules trie as the daemon does, filled with `rules` (v4). */
export function createRulesTrie(family: 4 | 6, maxEntries: number, rules: readonly BenchRule[] = []): BpfMap {
  const t = family === 4 ? RULE_TRIES.v4 : RULE_TRIES.v6;
  const m = createMap({ name: t.name, type: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries, flags: t.flags });
  try {
    if (rules.length > 0) {
      const e = oursEncoded(rules);
      m.updateBatch(e.keys, e.values, e.count);
    }
    return m;
  } catch (err) {
    m.close();
    throw err;
  }
}

export interface Attachment {
  readonly slot: number;
  readonly v4: BpfMap;
  readonly v6: BpfMap;
}

/** Makes `a` an active attachment (default: allowlist) of a loaded host set (config, rules tries; TC: its {ifindex, ingress} binding, in dev_slots or tc_slots as devBinding picks). */
export function useSlot(coll: Collection, a: Attachment, tcIfindex?: number, mode: ModeName = 'ALLOWLIST'): void {
  const slot = encodeSlot(a.slot);
  coll.map(HOST_MAPS.config.name).update(slot, encodeConfig({ mode, attachmentId: a.slot }));
  coll.map(HOST_MAPS.rulesV4.name).update(slot, encodeSlot(a.v4.fd));
  coll.map(HOST_MAPS.rulesV6.name).update(slot, encodeSlot(a.v6.fd));
  if (tcIfindex !== undefined) bindDevice(coll, tcIfindex, 'ingress', a.slot);
}

/**
 * A host set for test runs with the measured attachment in MEASURED_SLOT and `others` in their
 * slots. TC: the ingress program, the measured slot bound to the loopback (a test run's skb is
 * on ifindex 1), the others to devices that do not exist. cgroup: the egress program of the
 * fixed-slot build (BPF_PROG_TEST_RUN gives a cgroup program zeroed cgroup storage on every run,
 * so the shipped object would always read slot 0 there). `mode` is the measured slot's.
 */
export function testRunHostSet(kind: 'tc' | 'cgroup', measured: Attachment, others: readonly Attachment[], mode: ModeName = 'ALLOWLIST'): Collection {
  const coll =
    kind === 'tc'
      ? loadCollection(objectPath('tc'), { programs: [OBJECTS.tc.programs.ingress.name] })
      : loadCollection(fixedSlotCgroupObjectPath(), { programs: [OBJECTS.cgroup.programs.egress.name] });
  try {
    useSlot(coll, measured, kind === 'tc' ? 1 : undefined, mode);
    for (const o of others) useSlot(coll, o, kind === 'tc' ? FAKE_IFINDEX_BASE + o.slot : undefined);
    return coll;
  } catch (err) {
    coll.close();
    throw err;
  }
}

/** The reference program (minimal-lpm.bpf.o) with `rules` in its `lpm` map (the same keys as ours, value 1). */
export function referenceSet(path: string, rules: readonly BenchRule[]): Collection {
  const coll = loadCollection(path, { programs: ['pf_tc_egress', 'pf_cgskb_egress'] });
  try {
    const e = referenceEncoded(rules);
    coll.map('lpm').updateBatch(e.keys, e.values, e.count);
    return coll;
  } catch (err) {
    coll.close();
    throw err;
  }
}

/**
 * The map-layout programs (layout_lpm.bpf.o): mm_outer[slot] = each attachment's own trie (the
 * same trie objects our host sets use), hw_rules = every attachment's entries in one trie keyed
 * by slot. Returns the time the measured attachment's entries took to load into hw_rules (the
 * others' already there), the host-wide counterpart of a bulk load into a fresh trie.
 */
export function layoutSet(path: string, measured: { a: Attachment; rules: readonly BenchRule[] }, others: readonly { a: Attachment; rules: readonly BenchRule[] }[]): { coll: Collection; hwLoadMs: number } {
  const coll = loadCollection(path);
  try {
    const outer = coll.map('mm_outer');
    const hw = coll.map('hw_rules');
    for (const o of [measured, ...others]) outer.update(encodeSlot(o.a.slot), encodeSlot(o.a.v4.fd));
    for (const o of others) {
      const e = hostWideEncoded(o.a.slot, o.rules);
      hw.updateBatch(e.keys, e.values, e.count);
    }
    const e = hostWideEncoded(measured.a.slot, measured.rules);
    const t0 = process.hrtime.bigint();
    hw.updateBatch(e.keys, e.values, e.count);
    const hwLoadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    return { coll, hwLoadMs };
  } catch (err) {
    coll.close();
    throw err;
  }
}
