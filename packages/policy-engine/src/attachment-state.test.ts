import fc from 'fast-check';
import {
  applyCommand,
  emptyState,
  expireState,
  kernelView,
  learnAddresses,
  learnedFrom,
  nextExpiry,
  parseState,
  PolicyError,
  type AttachmentPolicyState,
  type DnsConfigInput,
  type PolicyCommand,
} from './index';

const dns = (over: Partial<DnsConfigInput> = {}): DnsConfigInput => ({
  mode: 'allowlist',
  allowDomains: [],
  denyDomains: [],
  upstreamServers: ['198.51.100.53:53'],
  ...over,
});

function apply(s: AttachmentPolicyState, ...cmds: PolicyCommand[]): AttachmentPolicyState {
  for (const c of cmds) s = applyCommand(s, c, 1000);
  return s;
}

function expectError(f: () => unknown, code: string, inputPart?: string): PolicyError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PolicyError);
  expect((err as PolicyError).code).toBe(code);
  if (inputPart !== undefined) expect((err as PolicyError).message).toContain(inputPart);
  return err as PolicyError;
}

describe('emptyState', () => {
  test('disabled, DNS disabled, nothing else; JSON round trip', () => {
    const s = emptyState();
    expect(s).toEqual({
      mode: 'disabled',
      dryRun: false,
      allowCidrs: [],
      denyCidrs: [],
      dns: { mode: 'disabled', allowDomains: [], denyDomains: [], upstreamServers: [] },
      learned: [],
    });
    expect(parseState(JSON.parse(JSON.stringify(s)))).toEqual(s);
    expect(Object.isFrozen(s)).toBe(true);
  });
});

describe('applyCommand', () => {
  test('setMode; UNSPECIFIED is not a mode', () => {
    expect(apply(emptyState(), { type: 'setMode', mode: 'allowlist' }).mode).toBe('allowlist');
    expectError(() => applyCommand(emptyState(), { type: 'setMode', mode: 'unspecified' as 'allowlist' }, 0), 'NETFENCE_ERR_INVALID_MODE', 'unspecified');
    expectError(() => applyCommand(emptyState(), { type: 'setDnsMode', mode: 'unspecified' as 'proxy' }, 0), 'NETFENCE_ERR_INVALID_MODE');
  });

  test('allowCidr canonicalises; TTL becomes expiresAt; re-adding replaces the TTL', () => {
    let s = apply(emptyState(), { type: 'allowCidr', entry: { cidr: '10.1.2.3/16', ttlMs: 5000 } });
    expect(s.allowCidrs).toEqual([{ cidr: '10.1.0.0/16', expiresAt: 6000 }]);
    s = apply(s, { type: 'allowCidr', entry: { cidr: '10.1.0.0/16' } });
    expect(s.allowCidrs).toEqual([{ cidr: '10.1.0.0/16' }]);
    s = apply(s, { type: 'allowCidr', entry: { cidr: '10.1.0.0/16', ttlMs: 0 } });
    expect(s.allowCidrs).toEqual([{ cidr: '10.1.0.0/16' }]);
  });

  test('allowCidr on a prefix in deny moves it, and back', () => {
    let s = apply(emptyState(), { type: 'denyCidr', entry: { cidr: '10.0.0.0/8' } });
    s = apply(s, { type: 'allowCidr', entry: { cidr: '10.0.0.0/8' } });
    expect(s.denyCidrs).toEqual([]);
    expect(s.allowCidrs).toEqual([{ cidr: '10.0.0.0/8' }]);
    s = apply(s, { type: 'denyCidr', entry: { cidr: '10.0.0.0/8' } });
    expect(s.allowCidrs).toEqual([]);
    expect(s.denyCidrs).toEqual([{ cidr: '10.0.0.0/8' }]);
  });

  test('removeCidr removes that exact prefix from both lists only', () => {
    const s = apply(
      emptyState(),
      { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [{ cidr: '10.0.0.0/8' }, { cidr: '10.1.0.0/16' }], denyCidrs: [{ cidr: '10.0.0.0/8' }] },
      { type: 'removeCidr', cidr: '10.0.0.0/8' },
    );
    expect(s.allowCidrs).toEqual([{ cidr: '10.1.0.0/16' }]);
    expect(s.denyCidrs).toEqual([]);
    expect(apply(s, { type: 'removeCidr', cidr: '10.9.0.0/16' })).toEqual(s);
    expectError(() => applyCommand(s, { type: 'removeCidr', cidr: '10.0.0.0/99' }, 0), 'NETFENCE_ERR_INVALID_CIDR', '10.0.0.0/99');
  });

  test('bad TTLs', () => {
    for (const ttlMs of [-1, NaN, Infinity, '5' as unknown as number]) {
      expectError(() => applyCommand(emptyState(), { type: 'allowCidr', entry: { cidr: '10.0.0.0/8', ttlMs } }, 0), 'NETFENCE_ERR_INVALID_TTL');
    }
  });

  test('domains: allow/deny move between lists; removeDomain removes every rule at the name', () => {
    let s = apply(
      emptyState(),
      { type: 'setDnsMode', mode: 'allowlist' },
      { type: 'allowDomain', entry: { domain: '*.PyPI.org', includeSubdomains: false } },
      { type: 'allowDomain', entry: { domain: 'pypi.org', includeSubdomains: false } },
      { type: 'denyDomain', entry: { domain: 'ads.example.com', includeSubdomains: false } },
    );
    expect(s.dns.allowDomains).toEqual([
      { domain: 'pypi.org', includeSubdomains: true },
      { domain: 'pypi.org', includeSubdomains: false },
    ]);
    s = apply(s, { type: 'denyDomain', entry: { domain: 'pypi.org', includeSubdomains: true } });
    expect(s.dns.allowDomains).toEqual([{ domain: 'pypi.org', includeSubdomains: false }]);
    expect(s.dns.denyDomains).toEqual([
      { domain: 'ads.example.com', includeSubdomains: false },
      { domain: 'pypi.org', includeSubdomains: true },
    ]);
    s = apply(s, { type: 'removeDomain', domain: 'PYPI.org.' });
    expect(s.dns.allowDomains).toEqual([]);
    expect(s.dns.denyDomains).toEqual([{ domain: 'ads.example.com', includeSubdomains: false }]);
    expectError(() => applyCommand(s, { type: 'allowDomain', entry: { domain: 'a..b', includeSubdomains: false } }, 0), 'NETFENCE_ERR_INVALID_DOMAIN', 'a..b');
  });

  test('bulkUpdate replaces the whole state; missing dns = DNS disabled with no rules', () => {
    let s = apply(
      emptyState(),
      { type: 'allowCidr', entry: { cidr: '10.0.0.0/8' } },
      { type: 'setDnsMode', mode: 'allowlist' },
      { type: 'allowDomain', entry: { domain: 'pypi.org', includeSubdomains: true } },
      { type: 'setDryRun', dryRun: true },
    );
    s = apply(s, { type: 'bulkUpdate', mode: 'denylist', allowCidrs: [], denyCidrs: [{ cidr: '203.0.113.0/24' }] });
    expect(s).toEqual({
      mode: 'denylist',
      dryRun: false,
      allowCidrs: [],
      denyCidrs: [{ cidr: '203.0.113.0/24' }],
      dns: { mode: 'disabled', allowDomains: [], denyDomains: [], upstreamServers: [] },
      learned: [],
    });
    s = apply(s, { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: dns({ allowDomains: [{ domain: '*.x.org', includeSubdomains: false }] }), dryRun: true });
    expect(s.dns).toEqual({ mode: 'allowlist', allowDomains: [{ domain: 'x.org', includeSubdomains: true }], denyDomains: [], upstreamServers: ['198.51.100.53:53'] });
    expect(s.dryRun).toBe(true);
  });

  test('subscribedAck applies its config on top of the current state', () => {
    let s = apply(
      emptyState(),
      { type: 'allowCidr', entry: { cidr: '10.0.0.0/8' } },
      { type: 'denyCidr', entry: { cidr: '10.9.0.0/16' } },
      { type: 'setDnsMode', mode: 'denylist' },
      { type: 'denyDomain', entry: { domain: 'ads.example.com', includeSubdomains: true } },
      { type: 'setDryRun', dryRun: true },
    );
    s = apply(s, {
      type: 'subscribedAck',
      mode: 'allowlist',
      allowCidrs: [{ cidr: '10.9.0.0/16' }],
      denyCidrs: [{ cidr: '10.1.0.0/16' }],
      dns: dns({ allowDomains: [{ domain: 'pypi.org', includeSubdomains: true }] }),
    });
    expect(s.mode).toBe('allowlist');
    expect(s.dryRun).toBe(true);
    expect(s.allowCidrs.map((r) => r.cidr).sort()).toEqual(['10.0.0.0/8', '10.9.0.0/16']);
    expect(s.denyCidrs.map((r) => r.cidr)).toEqual(['10.1.0.0/16']);
    expect(s.dns.mode).toBe('allowlist');
    expect(s.dns.allowDomains).toEqual([{ domain: 'pypi.org', includeSubdomains: true }]);
    expect(s.dns.denyDomains).toEqual([{ domain: 'ads.example.com', includeSubdomains: true }]);
    const t = apply(s, { type: 'subscribedAck', mode: 'allowlist', allowCidrs: [], denyCidrs: [] });
    expect(t.dns).toEqual(s.dns);
  });

  test('a command with one bad part changes nothing (and throws)', () => {
    const s0 = apply(emptyState(), { type: 'allowCidr', entry: { cidr: '10.0.0.0/8' } });
    const frozen = JSON.stringify(s0);
    const bad: PolicyCommand[] = [
      { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [{ cidr: '10.1.0.0/16' }, { cidr: 'bogus' }], denyCidrs: [] },
      { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: dns({ denyDomains: [{ domain: 'ok.com', includeSubdomains: false }, { domain: 'bad..com', includeSubdomains: false }] }) },
      { type: 'subscribedAck', mode: 'allowlist', allowCidrs: [{ cidr: '10.2.0.0/16' }], denyCidrs: [{ cidr: '10.3.0.0/16', ttlMs: -5 }] },
      { type: 'subscribedAck', mode: 'unspecified' as 'allowlist', allowCidrs: [{ cidr: '10.2.0.0/16' }], denyCidrs: [] },
      { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: dns({ mode: 'bogus' as 'proxy' }) },
      { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: dns({ upstreamServers: [''] }) },
      { type: 'nope' } as unknown as PolicyCommand,
    ];
    for (const c of bad) {
      expect(() => applyCommand(s0, c, 0)).toThrow(PolicyError);
      expect(JSON.stringify(s0)).toBe(frozen);
    }
    expectError(() => applyCommand(s0, { type: 'nope' } as unknown as PolicyCommand, 0), 'NETFENCE_ERR_INVALID_COMMAND', 'nope');
    expectError(() => applyCommand(s0, null as unknown as PolicyCommand, 0), 'NETFENCE_ERR_INVALID_COMMAND');
  });

  test('the input state is never modified', () => {
    fc.assert(
      fc.property(fc.constantFrom<PolicyCommand>(
        { type: 'allowCidr', entry: { cidr: '10.0.0.0/8' } },
        { type: 'denyCidr', entry: { cidr: '10.0.0.0/8' } },
        { type: 'removeCidr', cidr: '10.0.0.0/8' },
        { type: 'setMode', mode: 'block_all' },
        { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [] },
      ), (c) => {
        const s = apply(emptyState(), { type: 'allowCidr', entry: { cidr: '10.0.0.0/8' } });
        const before = JSON.stringify(s);
        applyCommand(s, c, 5);
        expect(JSON.stringify(s)).toBe(before);
      }),
    );
  });
});

describe('learned addresses', () => {
  const withDns = (mode: 'allowlist' | 'denylist' | 'proxy' = 'allowlist'): AttachmentPolicyState =>
    apply(emptyState(), {
      type: 'bulkUpdate',
      mode: 'allowlist',
      allowCidrs: [],
      denyCidrs: [],
      dns: dns({ mode, allowDomains: [{ domain: 'example.com', includeSubdomains: true }] }),
    });

  test('learn, clamp TTL, refresh, learnedFrom, kernel view', () => {
    let s = learnAddresses(withDns(), { name: 'WWW.example.com.', addresses: ['203.0.113.7', '2001:db8::7', '203.0.113.7'], ttlSec: 5 }, 1000, { minTtlSec: 30, maxTtlSec: 3600 });
    expect(s.learned).toEqual([
      { address: '203.0.113.7/32', name: 'www.example.com', expiresAt: 31_000 },
      { address: '2001:db8::7/128', name: 'www.example.com', expiresAt: 31_000 },
    ]);
    s = learnAddresses(s, { name: 'www.example.com', addresses: ['203.0.113.7'], ttlSec: 999_999 }, 2000, { maxTtlSec: 3600 });
    expect(s.learned[0]!.expiresAt).toBe(2000 + 3600_000);
    // a shorter TTL never shortens
    const same = learnAddresses(s, { name: 'www.example.com', addresses: ['203.0.113.7'], ttlSec: 1 }, 2000);
    expect(same).toBe(s);
    s = learnAddresses(s, { name: 'api.example.com', addresses: ['203.0.113.7'], ttlSec: 10 }, 3000);
    expect(s.learned).toHaveLength(3);
    expect(learnedFrom(s, '203.0.113.7')).toBe('www.example.com');
    expect(learnedFrom(s, '::ffff:203.0.113.7')).toBe('www.example.com');
    expect(learnedFrom(s, '2001:db8::7')).toBe('www.example.com');
    expect(learnedFrom(s, '203.0.113.8')).toBeUndefined();
    expect(learnedFrom(s, 'garbage')).toBeUndefined();
    expect([...kernelView(s).allow].sort()).toEqual(['2001:db8::7/128', '203.0.113.7/32']);
  });

  test('learning from any state, latest or older, matches a naive reference, and only appends', () => {
    // The index behind learnAddresses is handed from state to state; branching from an older
    // state must still see exactly that state's entries.
    const naive = (s: AttachmentPolicyState, name: string, addrs: string[], expiresAt: number) => {
      const out = s.learned.map((l) => ({ ...l }));
      for (const a of new Set(addrs)) {
        const i = out.findIndex((l) => l.address === a && l.name === name);
        if (i < 0) out.push({ address: a, name, expiresAt });
        else if (out[i]!.expiresAt < expiresAt) out[i] = { address: a, name, expiresAt };
      }
      return out;
    };
    const step = fc.record({
      from: fc.nat(),
      name: fc.constantFrom('a.example.com', 'b.example.com', 'c.example.com'),
      addrs: fc.array(fc.integer({ min: 1, max: 6 }).map((n) => `203.0.113.${n}/32`), { maxLength: 4 }),
      ttl: fc.integer({ min: 0, max: 5 }),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const states = [withDns()];
        for (const st of steps) {
          const base = states[st.from % states.length]!;
          const next = learnAddresses(base, { name: st.name, addresses: st.addrs, ttlSec: st.ttl }, 0);
          expect(next.learned).toEqual(naive(base, st.name, st.addrs, st.ttl * 1000));
          expect(next.learned.slice(0, base.learned.length).map((l) => [l.address, l.name])).toEqual(base.learned.map((l) => [l.address, l.name]));
          states.push(next);
          // learnedFrom: a name among the latest-expiring entries for the address, on this state and an older one
          for (const s of [next, states[st.from % states.length]!]) {
            for (const a of st.addrs) {
              const entries = s.learned.filter((l) => l.address === a);
              const latest = Math.max(...entries.map((l) => l.expiresAt));
              const got = learnedFrom(s, a.replace('/32', ''));
              if (entries.length === 0) expect(got).toBeUndefined();
              else expect(entries.filter((l) => l.expiresAt === latest).map((l) => l.name)).toContain(got);
            }
          }
        }
      }),
    );
  });

  test('a bad address or TTL changes nothing', () => {
    const s = withDns();
    expectError(() => learnAddresses(s, { name: 'a.example.com', addresses: ['203.0.113.7', 'nope'], ttlSec: 5 }, 0), 'NETFENCE_ERR_INVALID_CIDR', 'nope');
    expectError(() => learnAddresses(s, { name: 'a.example.com', addresses: ['203.0.113.0/24'], ttlSec: 5 }, 0), 'NETFENCE_ERR_INVALID_CIDR');
    expectError(() => learnAddresses(s, { name: 'a..com', addresses: ['203.0.113.7'], ttlSec: 5 }, 0), 'NETFENCE_ERR_INVALID_DOMAIN');
    expectError(() => learnAddresses(s, { name: 'a.com', addresses: ['203.0.113.7'], ttlSec: -1 }, 0), 'NETFENCE_ERR_INVALID_TTL');
    expect(s.learned).toEqual([]);
  });

  test('learned addresses survive a bulkUpdate that still lets their name through', () => {
    let s = learnAddresses(withDns(), { name: 'www.example.com', addresses: ['203.0.113.7'], ttlSec: 60 }, 0);
    s = apply(s, { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [{ cidr: '10.0.0.0/8' }], denyCidrs: [], dns: dns({ allowDomains: [{ domain: 'example.com', includeSubdomains: true }] }) });
    expect(s.learned).toHaveLength(1);
  });

  test('they are dropped when DNS becomes disabled (setDnsMode, or bulkUpdate without dns)', () => {
    const s = learnAddresses(withDns(), { name: 'www.example.com', addresses: ['203.0.113.7'], ttlSec: 60 }, 0);
    expect(apply(s, { type: 'setDnsMode', mode: 'disabled' }).learned).toEqual([]);
    expect(apply(s, { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [], denyCidrs: [] }).learned).toEqual([]);
  });

  test('they are dropped when a DNS rule change denies their name', () => {
    let s = learnAddresses(withDns('denylist'), { name: 'ads.example.com', addresses: ['203.0.113.7'], ttlSec: 60 }, 0);
    s = learnAddresses(s, { name: 'www.example.com', addresses: ['203.0.113.8'], ttlSec: 60 }, 0);
    s = apply(s, { type: 'denyDomain', entry: { domain: 'ads.example.com', includeSubdomains: false } });
    expect(s.learned.map((l) => l.name)).toEqual(['www.example.com']);
    // in allowlist mode, removing the allow rule drops them
    let a = learnAddresses(withDns('allowlist'), { name: 'www.example.com', addresses: ['203.0.113.8'], ttlSec: 60 }, 0);
    a = apply(a, { type: 'removeDomain', domain: 'example.com' });
    expect(a.learned).toEqual([]);
  });
});

describe('expiry', () => {
  test('static CIDRs and learned addresses expire; nextExpiry; grace keeps a busy address', () => {
    let s = apply(
      emptyState(),
      { type: 'setDnsMode', mode: 'denylist' },
      { type: 'allowCidr', entry: { cidr: '10.0.0.0/8', ttlMs: 10_000 } }, // expires at 11_000
      { type: 'denyCidr', entry: { cidr: '10.1.0.0/16', ttlMs: 20_000 } }, // 21_000
      { type: 'allowCidr', entry: { cidr: '10.2.0.0/16' } },
    );
    s = learnAddresses(s, { name: 'a.example.com', addresses: ['203.0.113.7', '203.0.113.8'], ttlSec: 5 }, 1000); // 6_000
    expect(nextExpiry(s)).toBe(6000);
    expect(expireState(s, 5999)).toBe(s);
    const lastSeen = (c: string): number | undefined => (c === '203.0.113.7/32' ? 5500 : undefined);
    let e = expireState(s, 6000, { lastSeenMs: lastSeen, graceMs: 2000 });
    expect(e.learned).toEqual([{ address: '203.0.113.7/32', name: 'a.example.com', expiresAt: 7500 }]);
    expect(nextExpiry(e)).toBe(7500);
    e = expireState(e, 7500, { lastSeenMs: lastSeen, graceMs: 2000 });
    expect(e.learned).toEqual([]);
    e = expireState(e, 11_000);
    expect(e.allowCidrs).toEqual([{ cidr: '10.2.0.0/16' }]);
    expect(nextExpiry(e)).toBe(21_000);
    e = expireState(e, 30_000);
    expect(e.denyCidrs).toEqual([]);
    expect(nextExpiry(e)).toBeUndefined();
  });

  test('an address both static and learned stays in the kernel view until both are gone', () => {
    let s = apply(emptyState(), { type: 'setDnsMode', mode: 'denylist' }, { type: 'allowCidr', entry: { cidr: '203.0.113.7', ttlMs: 10_000 } });
    s = learnAddresses(s, { name: 'a.example.com', addresses: ['203.0.113.7'], ttlSec: 20 }, 1000); // 21_000
    expect(kernelView(expireState(s, 11_000)).allow.has('203.0.113.7/32')).toBe(true);
    expect(kernelView(apply(s, { type: 'removeCidr', cidr: '203.0.113.7/32' })).allow.has('203.0.113.7/32')).toBe(true);
    expect(kernelView(expireState(s, 21_000)).allow.has('203.0.113.7/32')).toBe(false);
  });
});

describe('parseState', () => {
  test('round-trips a full state through JSON', () => {
    let s = apply(
      emptyState(),
      { type: 'bulkUpdate', mode: 'allowlist', allowCidrs: [{ cidr: '10.0.0.0/8', ttlMs: 5 }], denyCidrs: [{ cidr: '2001:db8::/32' }], dns: dns({ denyDomains: [{ domain: '*.ads.com', includeSubdomains: false }], allowDomains: [{ domain: 'ads.com', includeSubdomains: true }] }), dryRun: true },
    );
    s = learnAddresses(s, { name: 'x.ads.com', addresses: ['203.0.113.7'], ttlSec: 5 }, 0);
    const text = JSON.stringify(s);
    expect(parseState(text)).toEqual(s);
    expect(parseState(JSON.parse(text))).toEqual(s);
  });

  test.each([
    [{}, 'mode'],
    [{ mode: 'unspecified' }, 'mode'],
    [{ mode: 'allowlist', dryRun: 'yes' }, 'dryRun'],
    [{ mode: 'allowlist', allowCidrs: {} }, 'allowCidrs'],
    [{ mode: 'allowlist', allowCidrs: [{ cidr: '10.0.0.0/8' }, { cidr: 'x' }], denyCidrs: [] }, 'allowCidrs[1].cidr'],
    [{ mode: 'allowlist', allowCidrs: [{ cidr: '10.0.0.0/8', expiresAt: 'soon' }], denyCidrs: [] }, 'allowCidrs[0].expiresAt'],
    [{ mode: 'allowlist', allowCidrs: [], denyCidrs: [] }, 'dns'],
    [{ mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: { mode: 'x' } }, 'dns.mode'],
    [{ mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: { mode: 'proxy', allowDomains: [{ domain: 'a..b', includeSubdomains: true }], denyDomains: [], upstreamServers: [] } }, 'dns.allowDomains[0].domain'],
    [{ mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: { mode: 'proxy', allowDomains: [], denyDomains: [], upstreamServers: [1] } }, 'dns.upstreamServers[0]'],
    [{ mode: 'allowlist', allowCidrs: [], denyCidrs: [], dns: { mode: 'proxy', allowDomains: [], denyDomains: [], upstreamServers: [] }, learned: [{ address: '10.0.0.0/8', name: 'a.com', expiresAt: 1 }] }, 'learned[0].address'],
    ['{not json', '$'],
    [null, '$'],
  ])('refuses %j naming %s', (input, path) => {
    const e = expectError(() => parseState(input), 'NETFENCE_ERR_INVALID_STATE', `at ${path}:`);
    expect(e.input).toBe(path);
  });
});
