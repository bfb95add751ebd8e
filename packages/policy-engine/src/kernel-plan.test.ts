import fc from 'fast-check';
import {
  applyCommand,
  applyKernelOps,
  emptyKernelView,
  emptyState,
  evaluateKernelView,
  kernelAllows,
  kernelView,
  learnAddresses,
  parseCidr,
  planKernelOps,
  type KernelOp,
  type KernelView,
  type PolicyMode,
} from './index';

const view = (mode: PolicyMode, allow: string[] = [], deny: string[] = [], dryRun = false): KernelView => ({
  mode,
  dryRun,
  allow: new Set(allow.map((c) => parseCidr(c).text)),
  deny: new Set(deny.map((c) => parseCidr(c).text)),
});

describe('datapath semantics (evaluateKernelView)', () => {
  const cases: [string, KernelView, string, boolean, string][] = [
    ['disabled passes everything', view('disabled', [], ['0.0.0.0/0']), '10.0.0.1', true, 'mode'],
    ['block_all blocks everything', view('block_all', ['0.0.0.0/0']), '10.0.0.1', false, 'mode'],
    ['allowlist: no match blocks', view('allowlist', ['10.1.0.0/16']), '10.2.0.1', false, 'no-match'],
    ['allowlist: allow match passes', view('allowlist', ['10.1.0.0/16']), '10.1.0.1', true, 'allow'],
    ['allowlist: longer deny beats allow', view('allowlist', ['10.0.0.0/8'], ['10.1.0.0/16']), '10.1.0.1', false, 'deny'],
    ['allowlist: longer allow beats deny', view('allowlist', ['10.1.2.3/32'], ['10.0.0.0/8']), '10.1.2.3', true, 'allow'],
    ['allowlist: deny wins a tie', view('allowlist', ['10.1.0.0/16'], ['10.1.0.0/16']), '10.1.0.1', false, 'deny'],
    ['denylist: no match passes', view('denylist', [], ['10.1.0.0/16']), '10.2.0.1', true, 'no-match'],
    ['denylist: deny match blocks', view('denylist', [], ['10.1.0.0/16']), '10.1.0.1', false, 'deny'],
    ['denylist: longer allow is an exception', view('denylist', ['10.1.2.0/24'], ['10.1.0.0/16']), '10.1.2.9', true, 'allow'],
    ['denylist: deny wins a tie', view('denylist', ['10.1.0.0/16'], ['10.1.0.0/16']), '10.1.0.1', false, 'deny'],
    ['IPv4-mapped IPv6 is IPv4', view('allowlist', ['203.0.113.0/24']), '::ffff:203.0.113.9', true, 'allow'],
    ['IPv6 prefixes', view('allowlist', ['2001:db8::/32'], ['2001:db8:1::/48']), '2001:db8:1::1', false, 'deny'],
    ['families are separate', view('allowlist', ['0.0.0.0/0']), '2001:db8::1', false, 'no-match'],
    ['dry-run passes what it would block', view('block_all', [], [], true), '10.0.0.1', true, 'mode'],
  ];
  test.each(cases)('%s', (_d, v, addr, passes, by) => {
    const r = evaluateKernelView(v, addr);
    expect(r.passes).toBe(passes);
    expect(r.by).toBe(by);
    expect(kernelAllows(v, addr)).toBe(passes);
  });
  test('dry-run keeps the would-be verdict', () => {
    const r = evaluateKernelView(view('allowlist', [], ['10.0.0.0/8'], true), '10.0.0.1');
    expect(r).toEqual({ verdict: 'block', passes: true, by: 'deny', cidr: '10.0.0.0/8' });
  });
});

describe('planKernelOps: examples', () => {
  test('switching to allowlist fills the allow map first', () => {
    const ops = planKernelOps(emptyKernelView(), view('allowlist', ['10.0.0.0/8']));
    expect(ops).toEqual([
      { op: 'add', map: 'allow', cidr: '10.0.0.0/8' },
      { op: 'setMode', mode: 'allowlist', dryRun: false },
    ]);
  });
  test('switching to disabled switches the mode first, then empties the maps', () => {
    const ops = planKernelOps(view('allowlist', ['10.0.0.0/8'], ['10.1.0.0/16']), view('disabled'));
    expect(ops[0]).toEqual({ op: 'setMode', mode: 'disabled', dryRun: false });
    expect(ops).toHaveLength(3);
  });
  test('within a mode: adds longest first, deny before allow; deletes shortest first, allow before deny', () => {
    const ops = planKernelOps(
      view('allowlist', ['10.0.0.0/8', '10.9.0.0/16'], ['10.9.0.0/16']),
      view('allowlist', ['10.1.0.0/16', '10.1.2.0/24'], ['10.1.0.0/16']),
    );
    expect(ops).toEqual([
      { op: 'add', map: 'allow', cidr: '10.1.2.0/24' },
      { op: 'add', map: 'deny', cidr: '10.1.0.0/16' },
      { op: 'add', map: 'allow', cidr: '10.1.0.0/16' },
      { op: 'delete', map: 'allow', cidr: '10.0.0.0/8' },
      { op: 'delete', map: 'allow', cidr: '10.9.0.0/16' },
      { op: 'delete', map: 'deny', cidr: '10.9.0.0/16' },
    ]);
  });
  test('allowlist to denylist: adds, mode, deletes', () => {
    const ops = planKernelOps(view('allowlist', ['10.0.0.0/8']), view('denylist', [], ['10.1.0.0/16']));
    expect(ops.map((o) => o.op)).toEqual(['add', 'setMode', 'delete']);
  });
  test('no change, no ops', () => {
    expect(planKernelOps(view('allowlist', ['10.0.0.0/8']), view('allowlist', ['10.0.0.0/8']))).toEqual([]);
  });
  test('an address both static and learned stays until both sources are gone', () => {
    let s = applyCommand(emptyState(), { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [{ cidr: '203.0.113.7' }], denyCidrs: [], dns: { mode: 'denylist', allowDomains: [], denyDomains: [], upstreamServers: [] } }, 0);
    s = learnAddresses(s, { name: 'a.example.com', addresses: ['203.0.113.7'], ttlSec: 60 }, 0);
    const v1 = kernelView(s);
    const s2 = applyCommand(s, { type: 'removeCidr', cidr: '203.0.113.7/32' }, 1);
    const v2 = kernelView(s2);
    expect(v2.allow.has('203.0.113.7/32')).toBe(true);
    expect(planKernelOps(v1, v2)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// property: the plan reaches `to`, is minimal, and is safe at every step

const V4_UNIVERSE = [
  '0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16', '10.1.128.0/17', '10.1.2.0/24', '10.1.2.128/25', '10.1.2.3/32', '10.2.0.0/16', '10.2.3.4/32', '11.0.0.0/8',
];
const V6_UNIVERSE = ['::/0', '2001:db8::/32', '2001:db8:1::/48', '2001:db8:1::1/128', '2001:db8:2::/48'];
const UNIVERSE = [...V4_UNIVERSE, ...V6_UNIVERSE];
const SAMPLES = [
  '10.1.2.3', '10.1.2.4', '10.1.2.200', '10.1.200.1', '10.1.0.1', '10.2.3.4', '10.2.0.1', '10.3.0.1', '11.0.0.1', '12.0.0.1',
  '2001:db8:1::1', '2001:db8:1::2', '2001:db8:2::1', '2001:db8:3::1', '2001:db9::1',
].map((a) => parseCidr(a));

const modeArb = fc.constantFrom<PolicyMode>('disabled', 'allowlist', 'denylist', 'block_all');
const viewArb = fc
  .record({
    mode: modeArb,
    dryRun: fc.boolean(),
    allow: fc.subarray(UNIVERSE),
    deny: fc.subarray(UNIVERSE),
  })
  .map((r): KernelView => ({ mode: r.mode, dryRun: r.dryRun, allow: new Set(r.allow), deny: new Set(r.deny) }));

function checkPlan(from: KernelView, to: KernelView, samples = SAMPLES): void {
  const ops = planKernelOps(from, to);
  // reaches `to`
  const end = applyKernelOps(from, ops);
  expect(end.mode).toBe(to.mode);
  expect(end.dryRun).toBe(to.dryRun);
  expect([...end.allow].sort()).toEqual([...to.allow].sort());
  expect([...end.deny].sort()).toEqual([...to.deny].sort());
  // minimal: one op per changed entry, one setMode when mode or dry-run changed
  const diff = (a: ReadonlySet<string>, b: ReadonlySet<string>): number => [...a].filter((x) => !b.has(x)).length;
  const expected =
    diff(to.allow, from.allow) + diff(from.allow, to.allow) + diff(to.deny, from.deny) + diff(from.deny, to.deny) +
    (from.mode !== to.mode || from.dryRun !== to.dryRun ? 1 : 0);
  expect(ops).toHaveLength(expected);
  // safe at every intermediate step
  const fromAllows = samples.map((a) => kernelAllows(from, a));
  const toAllows = samples.map((a) => kernelAllows(to, a));
  let cur: KernelView = from;
  const steps: KernelOp[] = [];
  for (const op of ops) {
    cur = applyKernelOps(cur, [op]);
    steps.push(op);
    samples.forEach((a, i) => {
      const now = kernelAllows(cur, a);
      if (fromAllows[i] && toAllows[i] && !now) {
        throw new Error(`blocks ${a.text} which both allow, after ${JSON.stringify(steps)}`);
      }
      if (!fromAllows[i] && !toAllows[i] && now) {
        throw new Error(`allows ${a.text} which both block, after ${JSON.stringify(steps)}`);
      }
    });
  }
}

describe('planKernelOps: properties', () => {
  test('nested-prefix universe: reaches to, minimal, safe at every step', () => {
    fc.assert(fc.property(viewArb, viewArb, (from, to) => checkPlan(from, to)), { numRuns: 1500 });
  });

  test('same mode, only maps change (the common case, many runs)', () => {
    fc.assert(
      fc.property(viewArb, fc.subarray(UNIVERSE), fc.subarray(UNIVERSE), (from, allow, deny) =>
        checkPlan(from, { mode: from.mode, dryRun: from.dryRun, allow: new Set(allow), deny: new Set(deny) }),
      ),
      { numRuns: 800 },
    );
  });

  test('random prefixes and random addresses', () => {
    const v4 = fc
      .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 32 }))
      .map(([b, c, d, len]) => parseCidr(`10.${b}.${c}.${d}/${len}`).text);
    const addr = fc
      .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }))
      .map(([b, c, d]) => parseCidr(`10.${b}.${c}.${d}`));
    const rv = fc
      .record({ mode: modeArb, dryRun: fc.boolean(), allow: fc.array(v4, { maxLength: 12 }), deny: fc.array(v4, { maxLength: 12 }) })
      .map((r): KernelView => ({ mode: r.mode, dryRun: r.dryRun, allow: new Set(r.allow), deny: new Set(r.deny) }));
    fc.assert(
      fc.property(rv, rv, fc.array(addr, { minLength: 1, maxLength: 20 }), (from, to, extra) => {
        // probe the prefixes' own first addresses too (they are where LPM interactions happen)
        const own = [...from.allow, ...from.deny, ...to.allow, ...to.deny].map((c) => parseCidr(c.split('/')[0]!));
        checkPlan(from, to, [...extra, ...own]);
      }),
      { numRuns: 600 },
    );
  });

  test('views derived from states via commands', () => {
    const cidr = fc.constantFrom(...V4_UNIVERSE);
    const cmd = fc.oneof(
      modeArb.map((mode) => ({ type: 'setMode' as const, mode })),
      cidr.map((c) => ({ type: 'allowCidr' as const, entry: { cidr: c } })),
      cidr.map((c) => ({ type: 'denyCidr' as const, entry: { cidr: c } })),
      cidr.map((c) => ({ type: 'removeCidr' as const, cidr: c })),
      fc.boolean().map((dryRun) => ({ type: 'setDryRun' as const, dryRun })),
    );
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 12 }), (cmds) => {
        let s = emptyState();
        let prev = kernelView(s);
        for (const c of cmds) {
          s = applyCommand(s, c, 0);
          const next = kernelView(s);
          checkPlan(prev, next);
          prev = next;
        }
      }),
      { numRuns: 500 },
    );
  });
});
