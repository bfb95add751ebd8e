import fc from 'fast-check';
import { emptyState, expireState, learnAddresses, LearnedTable, learnedFrom, PolicyError, type AttachmentPolicyState, type LearnedAddress } from './index';

const sorted = (l: readonly LearnedAddress[]) => [...l].map((x) => `${x.address} ${x.name} ${x.expiresAt}`).sort();
const base: AttachmentPolicyState = emptyState();
/** The next expiry by a pass over every entry (what nextExpiry computed before its heap). */
const naiveNextExpiry = (t: LearnedTable): number | undefined => (t.size === 0 ? undefined : Math.min(...t.list().map((l) => l.expiresAt)));

// an answer: a name out of a few, 1..4 addresses out of a small pool, a TTL, a clock step
const answerArb = fc.record({
  name: fc.constantFrom('a.example.test', 'b.example.test', 'cdn.example.test'),
  addresses: fc.array(fc.integer({ min: 1, max: 12 }).map((i) => `198.51.100.${i}`), { minLength: 1, maxLength: 4 }),
  ttlSec: fc.integer({ min: 0, max: 30 }),
  step: fc.integer({ min: 0, max: 20_000 }),
});

describe('LearnedTable', () => {
  test('without a cap it holds exactly what learnAddresses and expireState make of the same answers (property)', () => {
    fc.assert(
      fc.property(fc.array(answerArb, { maxLength: 40 }), fc.integer({ min: 0, max: 60_000 }), fc.integer({ min: 1, max: 8 }), (answers, expireAfter, limit) => {
        let state = base;
        const table = new LearnedTable();
        let now = 1_000;
        for (const a of answers) {
          now += a.step;
          state = learnAddresses(state, a, now, { minTtlSec: 1, maxTtlSec: 20 });
          table.apply(table.plan(a, now, { minTtlSec: 1, maxTtlSec: 20 }));
          expect(sorted(table.list())).toEqual(sorted(state.learned));
          for (const l of state.learned) expect(table.nameOf(l.address)).toBe(learnedFrom(state, l.address));
          expect(table.nextExpiry()).toBe(naiveNextExpiry(table));
        }
        const at = now + expireAfter;
        const expired = expireState(state, at);
        // in chunks of `limit` expired entries, as the daemon's sweep does
        const released: string[] = [];
        for (let more = true, rounds = 0; more; rounds++) {
          const plan = table.planExpiry(at, { limit });
          expect(plan.removed.length + plan.kept.length).toBeLessThanOrEqual(limit);
          // earliest first: nothing left behind expires before what the chunk took
          const taken = [...plan.removed, ...plan.kept].map((l) => table.list().find((x) => x.address === l.address && x.name === l.name)!.expiresAt);
          if (plan.more) for (const l of table.list()) if (!plan.removed.includes(l) && l.expiresAt <= at && !plan.kept.some((k) => k.address === l.address && k.name === l.name)) expect(l.expiresAt).toBeGreaterThanOrEqual(Math.max(...taken));
          table.applyExpiry(plan);
          expect(table.nextExpiry()).toBe(naiveNextExpiry(table));
          released.push(...plan.released);
          more = plan.more;
          expect(rounds).toBeLessThan(100);
        }
        expect(sorted(table.list())).toEqual(sorted(expired.learned));
        // released: exactly the addresses no name holds any more
        const before = new Set(state.learned.map((l) => l.address));
        const after = new Set(expired.learned.map((l) => l.address));
        expect(new Set(released)).toEqual(new Set([...before].filter((a) => !after.has(a))));
      }),
    );
  });

  test('with a cap, no name ever holds more than the cap and the latest answer is always held (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(answerArb, { minLength: 1, maxLength: 60 }), (cap, answers) => {
        const table = new LearnedTable([], { maxAddressesPerName: cap });
        let now = 1_000;
        for (const a of answers) {
          now += a.step;
          const holdersBefore = new Map(table.list().map((l) => [l.address, 0]));
          for (const l of table.list()) holdersBefore.set(l.address, holdersBefore.get(l.address)! + 1);
          const p = table.plan(a, now);
          table.apply(p);
          const perName = new Map<string, number>();
          for (const l of table.list()) perName.set(l.name, (perName.get(l.name) ?? 0) + 1);
          for (const n of perName.values()) expect(n).toBeLessThanOrEqual(cap);
          const distinct = [...new Set(a.addresses)];
          for (const addr of distinct.slice(0, cap)) expect(table.list().some((l) => l.name === a.name && l.address === `${addr}/32`)).toBe(true);
          expect(p.skipped).toBe(Math.max(0, distinct.length - cap));
          // added = not held by any name before; released = held by no name after
          for (const x of p.added) expect(holdersBefore.has(x)).toBe(false);
          for (const x of p.released) expect(table.holds(x)).toBe(false);
          expect(table.size).toBe(table.list().length);
        }
      }),
    );
  });

  test('the cap pushes out the least recently used address: never seen first, then the longest unseen', () => {
    const t = new LearnedTable([], { maxAddressesPerName: 3 });
    const name = 'rot.example.test';
    for (const [i, addr] of ['198.51.100.1', '198.51.100.2', '198.51.100.3'].entries()) t.apply(t.plan({ name, addresses: [addr], ttlSec: 60 }, 1_000 + i));
    // .1 was used a minute ago, .3 just now, .2 never: .2 goes first
    const seen: Record<string, number> = { '198.51.100.1/32': 50_000, '198.51.100.3/32': 100_000 };
    const p = t.plan({ name, addresses: ['198.51.100.4'], ttlSec: 60 }, 110_000, { lastSeenMs: (a) => seen[a] });
    expect(p.evictions.map((l) => l.address)).toEqual(['198.51.100.2/32']);
    expect(p.released).toEqual(['198.51.100.2/32']);
    t.apply(p);
    // then the longest unseen (.1, seen before .3)
    const p2 = t.plan({ name, addresses: ['198.51.100.5'], ttlSec: 60 }, 111_000, { lastSeenMs: (a) => seen[a] });
    expect(p2.evictions.map((l) => l.address)).toEqual(['198.51.100.1/32']);
    t.apply(p2);
    expect(t.list().map((l) => l.address).sort()).toEqual(['198.51.100.3/32', '198.51.100.4/32', '198.51.100.5/32']);
  });

  test('an evicted address another name still holds is not released', () => {
    const t = new LearnedTable([], { maxAddressesPerName: 1 });
    t.apply(t.plan({ name: 'a.example.test', addresses: ['198.51.100.1'], ttlSec: 60 }, 1_000));
    t.apply(t.plan({ name: 'b.example.test', addresses: ['198.51.100.1'], ttlSec: 60 }, 1_000));
    const p = t.plan({ name: 'a.example.test', addresses: ['198.51.100.2'], ttlSec: 60 }, 2_000);
    expect(p.evictions.map((l) => l.address)).toEqual(['198.51.100.1/32']);
    expect(p.released).toEqual([]);
    expect(p.added).toEqual(['198.51.100.2/32']);
  });

  test('plan changes nothing until applied; bad input is rejected whole with the learn errors', () => {
    const t = new LearnedTable();
    const p = t.plan({ name: 'a.example.test', addresses: ['198.51.100.1'], ttlSec: 5 }, 1_000);
    expect(t.size).toBe(0);
    expect(t.list()).toEqual([]);
    t.apply(p);
    expect(t.size).toBe(1);
    expect(() => t.plan({ name: 'a.example.test', addresses: ['198.51.100.2', 'nope'], ttlSec: 5 }, 1_000)).toThrow(PolicyError);
    expect(() => t.plan({ name: 'a.example.test', addresses: ['198.51.100.2'], ttlSec: -1 }, 1_000)).toThrow(/NETFENCE_ERR_INVALID_TTL/);
    expect(t.size).toBe(1);
    expect(() => new LearnedTable([], { maxAddressesPerName: 0 })).toThrow(/maxAddressesPerName/);
  });

  test('list() is one frozen array until the table changes', () => {
    const t = new LearnedTable();
    t.apply(t.plan({ name: 'a.example.test', addresses: ['198.51.100.1'], ttlSec: 5 }, 1_000));
    const l1 = t.list();
    expect(Object.isFrozen(l1)).toBe(true);
    expect(t.list()).toBe(l1);
    t.apply(t.plan({ name: 'a.example.test', addresses: ['198.51.100.1'], ttlSec: 5 }, 1_000)); // nothing new
    expect(t.list()).toBe(l1);
    t.apply(t.plan({ name: 'a.example.test', addresses: ['198.51.100.1'], ttlSec: 50 }, 1_000));
    expect(t.list()).not.toBe(l1);
  });
});
