import fc from 'fast-check';
import { createDomainRuleSet, domainRuleSetFromDns, type DomainRule } from './index';

const allow = (domain: string, includeSubdomains = false): DomainRule => ({ domain, includeSubdomains, action: 'allow' });
const deny = (domain: string, includeSubdomains = false): DomainRule => ({ domain, includeSubdomains, action: 'deny' });

describe('domain rule semantics (spec point 7)', () => {
  // [description, rules, name, expected verdict, expected deciding rule]
  const cases: [string, DomainRule[], string, 'allow' | 'deny' | 'none', DomainRule | undefined][] = [
    ['a rule matches its exact name', [allow('pypi.org')], 'pypi.org', 'allow', allow('pypi.org')],
    ['an exact rule does not match a subdomain', [allow('pypi.org')], 'files.pypi.org', 'none', undefined],
    ['an exact rule does not match its parent', [allow('files.pypi.org')], 'pypi.org', 'none', undefined],
    ['a subdomain rule matches names below it', [allow('pypi.org', true)], 'files.pypi.org', 'allow', allow('pypi.org', true)],
    ['a subdomain rule matches deep names', [allow('pypi.org', true)], 'a.b.c.pypi.org', 'allow', allow('pypi.org', true)],
    ['a subdomain rule covers its apex', [allow('pypi.org', true)], 'pypi.org', 'allow', allow('pypi.org', true)],
    ['a subdomain rule does not match a sibling suffix', [allow('pypi.org', true)], 'notpypi.org', 'none', undefined],
    ['most specific wins (deny below allow)', [allow('example.com', true), deny('ads.example.com', true)], 'x.ads.example.com', 'deny', deny('ads.example.com', true)],
    ['most specific wins (allow below deny)', [deny('example.com', true), allow('api.example.com')], 'api.example.com', 'allow', allow('api.example.com')],
    ['less specific applies beside the exception', [deny('example.com', true), allow('api.example.com')], 'www.example.com', 'deny', deny('example.com', true)],
    ['exact beats wildcard at the same name', [deny('example.com', true), allow('example.com')], 'example.com', 'allow', allow('example.com')],
    ['exact beats wildcard at the same name (deny exact)', [allow('example.com', true), deny('example.com')], 'example.com', 'deny', deny('example.com')],
    ['the wildcard still decides below when the exact rule is at the apex', [allow('example.com', true), deny('example.com')], 'www.example.com', 'allow', allow('example.com', true)],
    ['deny beats allow at the same name (exact)', [allow('example.com'), deny('example.com')], 'example.com', 'deny', deny('example.com')],
    ['deny beats allow at the same name (wildcard)', [allow('example.com', true), deny('example.com', true)], 'a.example.com', 'deny', deny('example.com', true)],
    ['names compare case-insensitively', [allow('example.com')], 'EXAMPLE.com', 'allow', allow('example.com')],
    ['a trailing dot is ignored', [allow('example.com')], 'example.com.', 'allow', allow('example.com')],
    ['rules written *.x mean include subdomains', [{ domain: '*.Example.com', includeSubdomains: false, action: 'deny' }], 'a.example.com', 'deny', deny('example.com', true)],
    ['IDN rule matches the punycode name', [allow('bücher.de')], 'xn--bcher-kva.de', 'allow', allow('xn--bcher-kva.de')],
    ['no rules: none', [], 'example.com', 'none', undefined],
    ['a TLD wildcard matches everything under it', [deny('com', true)], 'a.b.com', 'deny', deny('com', true)],
  ];
  test.each(cases)('%s', (_d, rules, name, verdict, rule) => {
    const set = createDomainRuleSet(rules);
    const d = set.decide(name);
    expect(d.verdict).toBe(verdict);
    expect(d.rule).toEqual(rule);
  });

  test('decide throws on an invalid name', () => {
    expect(() => createDomainRuleSet().decide('a..b')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_DOMAIN' }));
  });

  test('add replaces the same rule; remove removes every rule at the name; size and rules()', () => {
    const set = createDomainRuleSet();
    set.add(allow('example.com'));
    set.add(allow('EXAMPLE.com.'));
    expect(set.size).toBe(1);
    set.add(deny('example.com'));
    set.add(allow('*.example.com'));
    set.add(deny('example.com', true));
    set.add(allow('other.com'));
    expect(set.size).toBe(5);
    expect(set.rules()).toHaveLength(5);
    expect(set.remove('*.Example.com')).toBe(4);
    expect(set.size).toBe(1);
    expect(set.remove('example.com')).toBe(0);
    expect(set.rules()).toEqual([allow('other.com')]);
    expect(set.decide('example.com').verdict).toBe('none');
  });

  test('add refuses a bad rule', () => {
    const set = createDomainRuleSet();
    expect(() => set.add({ domain: 'a..b', includeSubdomains: false, action: 'allow' })).toThrow(
      expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_DOMAIN' }),
    );
    expect(() => set.add({ domain: 'a.b', includeSubdomains: false, action: 'maybe' as 'allow' })).toThrow(
      expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_RULE' }),
    );
    expect(set.size).toBe(0);
  });

  test('domainRuleSetFromDns', () => {
    const set = domainRuleSetFromDns({
      mode: 'allowlist',
      allowDomains: [{ domain: '*.pypi.org', includeSubdomains: false }],
      denyDomains: [{ domain: 'ads.pypi.org', includeSubdomains: false }],
      upstreamServers: [],
    });
    expect(set.decide('files.pypi.org').verdict).toBe('allow');
    expect(set.decide('ads.pypi.org').verdict).toBe('deny');
  });
});

// Naive reference: scan all rules, rank the matching ones.
function naiveDecide(rules: DomainRule[], name: string): { verdict: string; rule?: DomainRule } {
  let best: DomainRule | undefined;
  const rank = (r: DomainRule): number[] => [r.domain.split('.').length, r.includeSubdomains ? 0 : 1, r.action === 'deny' ? 1 : 0];
  const better = (a: number[], b: number[]): boolean => {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
    return false;
  };
  for (const r of rules) {
    const matches = name === r.domain || (r.includeSubdomains && name.endsWith(`.${r.domain}`));
    if (matches && (best === undefined || better(rank(r), rank(best)))) best = r;
  }
  return best ? { verdict: best.action, rule: best } : { verdict: 'none' };
}

describe('domain decisions against a naive reference (property)', () => {
  const label = fc.constantFrom('a', 'b', 'c', 'www', 'x-y', '_s');
  const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
  const rule = fc.record({ domain: name, includeSubdomains: fc.boolean(), action: fc.constantFrom('allow' as const, 'deny' as const) });
  test('decide == naive', () => {
    fc.assert(
      fc.property(fc.array(rule, { maxLength: 30 }), fc.array(name, { minLength: 1, maxLength: 20 }), (rules, names) => {
        const set = createDomainRuleSet(rules);
        // dedupe like the set does: same (domain, sub, action) is one rule
        const unique = new Map(rules.map((r) => [`${r.domain}|${r.includeSubdomains}|${r.action}`, r]));
        expect(set.size).toBe(unique.size);
        for (const n of names) {
          const got = set.decide(n);
          const want = naiveDecide([...unique.values()], n);
          expect(got.verdict).toBe(want.verdict);
          expect(got.rule).toEqual(want.rule);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('remove then decide == naive without the removed name', () => {
    fc.assert(
      fc.property(fc.array(rule, { maxLength: 30 }), name, fc.array(name, { minLength: 1, maxLength: 10 }), (rules, gone, names) => {
        const set = createDomainRuleSet(rules);
        const unique = new Map(rules.map((r) => [`${r.domain}|${r.includeSubdomains}|${r.action}`, r]));
        const removed = set.remove(gone);
        const rest = [...unique.values()].filter((r) => r.domain !== gone);
        expect(removed).toBe(unique.size - rest.length);
        for (const n of [...names, gone]) expect(set.decide(n)).toEqual(naiveDecide(rest, n));
      }),
      { numRuns: 200 },
    );
  });
});

describe('hash collisions between names', () => {
  // the set hashes names right to left with h = h * 31 + c (32-bit), masked to 30 bits
  const hash = (s: string): number => {
    let h = 0;
    for (let i = s.length - 1; i >= 0; i--) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
    return h & 0x3fffffff;
  };
  function collidingLabels(): [string, string, string] {
    const seen = new Map<number, string[]>();
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
    for (const a of chars) for (const b of chars) for (const c of chars) {
      const l = `${a}${b}${c}`;
      const h = hash(l);
      const list = seen.get(h) ?? [];
      list.push(l);
      seen.set(h, list);
      if (list.length === 3) return [list[0]!, list[1]!, list[2]!];
    }
    throw new Error('no collision found');
  }
  test('colliding names keep separate rules; remove unlinks the right one', () => {
    const [x, y, z] = collidingLabels();
    expect(hash(`${x}.com`)).toBe(hash(`${y}.com`));
    const set = createDomainRuleSet([allow(`${x}.com`, true), deny(`${y}.com`, true), allow(`${z}.com`)]);
    expect(set.decide(`a.${x}.com`).verdict).toBe('allow');
    expect(set.decide(`a.${y}.com`).verdict).toBe('deny');
    expect(set.decide(`${z}.com`).verdict).toBe('allow');
    expect(set.decide(`a.${z}.com`).verdict).toBe('none');
    expect(set.remove(`${y}.com`)).toBe(1);
    expect(set.decide(`a.${y}.com`).verdict).toBe('none');
    expect(set.decide(`a.${x}.com`).verdict).toBe('allow');
    expect(set.decide(`${z}.com`).verdict).toBe('allow');
    expect(set.remove(`${z}.com`)).toBe(1);
    expect(set.remove(`${x}.com`)).toBe(1);
    expect(set.size).toBe(0);
    expect(set.rules()).toEqual([]);
  });
});
