import fc from 'fast-check';
import { cidrContains as contains, parseCidr } from '@netfence/policy-engine';
import { RuleTrie, type RuleEntry, type RuleOp, type RuleWrite } from './rule-trie';

const LIMITS = { allow: 1000, deny: 1000 };
/** "Now" in CLOCK_MONOTONIC seconds: a deadline of 1..NOW has lapsed, one above has not. */
const NOW = 5;

const parsed = new Map<string, ReturnType<typeof parseCidr>>();
const cidrOf = (s: string) => parsed.get(s) ?? parsed.set(s, parseCidr(s)).get(s)!;
const cidrContains = (cidr: string, addr: string) => contains(cidrOf(cidr), cidrOf(addr));

type Verdict = { by: 'deny'; len: number } | { by: 'allow'; len: number } | { by: 'none' };

/**
 * The decision before issue 11, on two lists (nf_decide at commit dcdcae0): the longest allow
 * prefix and the longest deny prefix are looked up separately; an allow entry whose deadline
 * lapsed counts as absent (no shorter allow is looked for); the longest prefix across both
 * lists wins, deny wins a tie.
 */
function oldDecide(allow: ReadonlyMap<string, number>, deny: ReadonlySet<string>, addr: string): Verdict {
  const longest = (keys: Iterable<string>) => {
    let best: string | undefined;
    for (const k of keys) if (cidrContains(k, addr) && (best === undefined || cidrOf(k).prefixLen > cidrOf(best).prefixLen)) best = k;
    return best;
  };
  let a = longest(allow.keys());
  const dn = longest(deny);
  if (a !== undefined) {
    const exp = allow.get(a)!;
    if (exp && NOW >= exp) a = undefined;
  }
  const alen = a === undefined ? 0 : cidrOf(a).prefixLen;
  const dlen = dn === undefined ? 0 : cidrOf(dn).prefixLen;
  if (dn !== undefined && (a === undefined || dlen >= alen)) return { by: 'deny', len: dlen };
  if (a !== undefined) return { by: 'allow', len: alen };
  return { by: 'none' };
}

/** The decision of the programs on one trie (docs/DESIGN.md, nf_rule): one longest-prefix look-up. */
function trieDecide(kernel: ReadonlyMap<string, RuleEntry>, addr: string): Verdict {
  let r: RuleEntry | undefined;
  for (const e of kernel.values()) if (cidrContains(e.cidr.text, addr) && (r === undefined || e.cidr.prefixLen > r.cidr.prefixLen)) r = e;
  if (!r) return { by: 'none' };
  if (r.deny) return { by: 'deny', len: r.cidr.prefixLen };
  if (r.expiresS && NOW >= r.expiresS) return r.shadowDenyLen === undefined ? { by: 'none' } : { by: 'deny', len: r.shadowDenyLen };
  return { by: 'allow', len: r.cidr.prefixLen };
}

/** A kernel trie that only ever sees the writes. */
function applyWrites(kernel: Map<string, RuleEntry>, writes: readonly RuleWrite[]): void {
  for (const w of writes) {
    expect(kernel.get(w.cidr.text)).toEqual(w.prev); // each write knows what it replaces
    if (w.entry) kernel.set(w.cidr.text, w.entry);
    else kernel.delete(w.cidr.text);
  }
}

// Prefixes from a small space, so that they nest and collide often.
const v4Prefix = fc
  .tuple(fc.constantFrom(0, 8, 16, 24, 25, 26, 27, 28, 29, 30, 31, 32), fc.integer({ min: 0, max: 255 }))
  .map(([len, last]) => parseCidr(`10.0.0.${last}/${len}`).text);
const v6Prefix = fc
  .tuple(fc.constantFrom(0, 32, 120, 124, 126, 127, 128), fc.integer({ min: 0, max: 255 }))
  .map(([len, last]) => parseCidr(`2001:db8::${last.toString(16)}/${len}`).text);
const opArb: fc.Arbitrary<RuleOp | { op: 'expiry'; cidr: string; expiresS: number }> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constantFrom('add' as const, 'delete' as const), list: fc.constantFrom('allow' as const, 'deny' as const), cidr: fc.oneof({ weight: 4, arbitrary: v4Prefix }, { weight: 1, arbitrary: v6Prefix }), expiresS: fc.constantFrom(0, 0, 3, 9) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expiry' as const), cidr: fc.oneof(v4Prefix, v6Prefix), expiresS: fc.constantFrom(0, 3, 9) }) },
);
const PROBES = [...Array.from({ length: 256 }, (_, i) => `10.0.0.${i}`), '10.0.1.1', '11.0.0.1', ...Array.from({ length: 256 }, (_, i) => `2001:db8::${i.toString(16)}`), '2001:db9::1'];

describe('RuleTrie', () => {
  it('one trie answers every address as the two lists did, lapsed deadlines included, and reads back both lists exactly', () => {
    fc.assert(
      fc.property(fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 25 }), (batches) => {
        const trie = new RuleTrie(LIMITS);
        const kernel = new Map<string, RuleEntry>();
        const allow = new Map<string, number>();
        const deny = new Set<string>();
        for (const batch of batches) {
          const ops: RuleOp[] = [];
          for (const o of batch) {
            if (o.op === 'expiry') {
              applyWrites(kernel, trie.plan(ops.splice(0)));
              applyWrites(kernel, trie.setExpiry(o.cidr, o.expiresS));
              if (allow.has(o.cidr)) allow.set(o.cidr, o.expiresS);
              continue;
            }
            ops.push(o);
            if (o.list === 'allow') {
              if (o.op === 'add' && !allow.has(o.cidr)) allow.set(o.cidr, o.expiresS ?? 0);
              if (o.op === 'delete') allow.delete(o.cidr);
            } else if (o.op === 'add') deny.add(o.cidr);
            else deny.delete(o.cidr);
          }
          applyWrites(kernel, trie.plan(ops));
        }
        for (const addr of PROBES) expect([addr, trieDecide(kernel, addr)]).toEqual([addr, oldDecide(allow, deny, addr)]);
        expect(trie.lists()).toEqual({ allow: new Set(allow.keys()), deny });
        expect(new Map([...trie.entries()].map((e) => [e.cidr.text, e]))).toEqual(kernel);
        // Read back from the kernel, nothing to repair.
        expect(RuleTrie.fromEntries(kernel.values(), LIMITS).repairShadows()).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('a deny prefix added above allow entries gives them their shadow, and removing it takes it back', () => {
    const t = new RuleTrie(LIMITS);
    t.plan([
      { op: 'add', list: 'allow', cidr: '10.0.0.5/32', expiresS: 3 },
      { op: 'add', list: 'allow', cidr: '10.0.0.0/28' },
    ]);
    expect(t.get('10.0.0.5/32')!.shadowDenyLen).toBeUndefined();
    const w = t.plan([{ op: 'add', list: 'deny', cidr: '10.0.0.0/24' }]);
    expect(w.map((x) => [x.cidr.text, x.entry?.shadowDenyLen, x.entry?.deny])).toEqual([
      ['10.0.0.0/24', undefined, true],
      ['10.0.0.5/32', 24, false],
      ['10.0.0.0/28', 24, false],
    ]);
    t.plan([{ op: 'add', list: 'deny', cidr: '10.0.0.4/30' }]);
    expect(t.get('10.0.0.5/32')!.shadowDenyLen).toBe(30);
    expect(t.get('10.0.0.0/28')!.shadowDenyLen).toBe(24);
    t.plan([{ op: 'delete', list: 'deny', cidr: '10.0.0.4/30' }, { op: 'delete', list: 'deny', cidr: '10.0.0.0/24' }]);
    expect(t.get('10.0.0.5/32')!.shadowDenyLen).toBeUndefined();
  });

  it('an equal prefix on both lists is one entry with both bits; removing one list leaves the other, deadline kept', () => {
    const t = new RuleTrie(LIMITS);
    t.plan([{ op: 'add', list: 'allow', cidr: '203.0.113.0/24', expiresS: 9 }]);
    const w = t.plan([{ op: 'add', list: 'deny', cidr: '203.0.113.0/24' }]);
    expect(w).toHaveLength(1);
    expect(w[0]!.entry).toMatchObject({ allow: true, deny: true, expiresS: 9 });
    expect(t.plan([{ op: 'delete', list: 'deny', cidr: '203.0.113.0/24' }])[0]!.entry).toMatchObject({ allow: true, deny: false, expiresS: 9 });
    expect(t.plan([{ op: 'delete', list: 'allow', cidr: '203.0.113.0/24' }])[0]!.entry).toBeUndefined();
    expect(t.lists()).toEqual({ allow: new Set(), deny: new Set() });
  });

  it('over a per-family limit: NETFENCE_ERR_MAP_FULL naming the setting, the model as it was', () => {
    const t = new RuleTrie({ allow: 2, deny: 1 });
    t.plan([{ op: 'add', list: 'allow', cidr: '10.0.0.1/32' }, { op: 'add', list: 'allow', cidr: '2001:db8::1/128' }]);
    expect(() => t.plan([{ op: 'add', list: 'allow', cidr: '10.0.0.2/32' }, { op: 'add', list: 'allow', cidr: '10.0.0.3/32' }])).toThrow(
      expect.objectContaining({ code: 'NETFENCE_ERR_MAP_FULL', message: expect.stringContaining('maps.allow_entries') }),
    );
    expect(t.lists().allow).toEqual(new Set(['10.0.0.1/32', '2001:db8::1/128']));
    expect(t.count('allow', 4)).toBe(1);
    // an address on the deny list too does not take a second allow place
    t.plan([{ op: 'add', list: 'deny', cidr: '10.0.0.1/32' }]);
    expect(() => t.plan([{ op: 'add', list: 'deny', cidr: '10.0.0.9/32' }])).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_MAP_FULL' }));
    expect(t.plan([{ op: 'add', list: 'deny', cidr: '2001:db8::9/128' }])).toHaveLength(1);
  });

  it('revert puts the model back after the kernel refused a write', () => {
    const t = new RuleTrie(LIMITS);
    t.plan([{ op: 'add', list: 'allow', cidr: '10.0.0.5/32' }]);
    const before = [...t.entries()];
    const w = t.plan([{ op: 'add', list: 'deny', cidr: '10.0.0.0/24' }, { op: 'delete', list: 'allow', cidr: '10.0.0.5/32' }, { op: 'add', list: 'allow', cidr: '10.0.0.0/24' }]);
    t.revert(w);
    expect([...t.entries()]).toEqual(before);
    expect(t.count('deny', 4)).toBe(0);
  });

  it('repairShadows fixes shadows a crash left stale', () => {
    const c = (s: string) => parseCidr(s);
    const t = RuleTrie.fromEntries(
      [
        { cidr: c('10.0.0.0/8'), allow: false, deny: true, expiresS: 0, shadowDenyLen: undefined },
        { cidr: c('10.1.0.0/16'), allow: true, deny: false, expiresS: 0, shadowDenyLen: undefined },
      ],
      LIMITS,
    );
    expect(t.repairShadows().map((w) => [w.cidr.text, w.entry?.shadowDenyLen])).toEqual([['10.1.0.0/16', 8]]);
  });
});
