import fc from 'fast-check';
import { createDomainRuleSet, domainRuleSetFromDns, noMatchVerdict, passesDns, type DomainRule } from './index';

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
    // netfence.v1: at the same name deny beats allow whatever the kind (the spec's example)
    ['deny subdomain rule beats an exact allow at the same name', [deny('foo.com', true), allow('foo.com')], 'foo.com', 'deny', deny('foo.com', true)],
    ['exact deny beats a subdomain allow at the same name', [allow('example.com', true), deny('example.com')], 'example.com', 'deny', deny('example.com')],
    ['an exact allow below a denied subtree still wins (more specific name)', [deny('foo.com', true), allow('api.foo.com')], 'api.foo.com', 'allow', allow('api.foo.com')],
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

// Reference written straight from the walk of spec/netfence-v1-compat.md ("DNS rule
// decision"): from the queried name up through each parent; at each name a rule matches if
// it is for exactly that name, or for that name with include_subdomains; at the first name
// where any rule matches, deny if a deny rule matches there, else allow. (Which rule is
// reported when two of the winning action match there is ours: the exact one.)
function naiveDecide(rules: DomainRule[], name: string): { verdict: string; rule?: DomainRule } {
  const labels = name.split('.');
  for (let i = 0; i < labels.length; i++) {
    const at = labels.slice(i).join('.');
    const matching = rules.filter((r) => r.domain === at && (i === 0 || r.includeSubdomains));
    if (matching.length === 0) continue;
    const action = matching.some((r) => r.action === 'deny') ? 'deny' : 'allow';
    const winners = matching.filter((r) => r.action === action);
    const rule = winners.find((r) => !r.includeSubdomains) ?? winners[0]!;
    return { verdict: action, rule };
  }
  return { verdict: 'none' };
}

describe('domain decisions against the spec\'s walk (property)', () => {
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

describe('passesDns / noMatchVerdict: the one rule for letting a name through', () => {
  test.each([
    ['allowlist', 'allow', true],
    ['allowlist', 'deny', false],
    ['allowlist', 'none', false],
    ['denylist', 'allow', true],
    ['denylist', 'deny', false],
    ['denylist', 'none', true],
    ['proxy', 'none', true],
    ['proxy', 'deny', false],
    ['disabled', 'none', true],
  ] as const)('%s mode, verdict %s -> %s', (mode, verdict, through) => {
    expect(passesDns(verdict, noMatchVerdict(mode))).toBe(through);
  });

  test('a proxy default decides only names no rule matches', () => {
    expect(passesDns('none', 'allow')).toBe(true);
    expect(passesDns('none', 'deny')).toBe(false);
    expect(passesDns('deny', 'allow')).toBe(false);
    expect(passesDns('allow', 'deny')).toBe(true);
  });
});
