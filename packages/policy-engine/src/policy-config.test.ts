import fc from 'fast-check';
import {
  applyCommand,
  configOf,
  diffConfigs,
  emptyState,
  learnAddresses,
  toBulkUpdate,
  type PolicyConfig,
  type PolicyMode,
  type DnsMode,
} from './index';

const NOW = 1_000_000;
const install = (c: PolicyConfig) => applyCommand(emptyState(), toBulkUpdate(c), NOW);

const base: PolicyConfig = {
  mode: 'allowlist',
  dryRun: false,
  allowCidrs: [{ cidr: '10.0.0.0/8' }, { cidr: '203.0.113.0/24', ttlMs: 60_000 }],
  denyCidrs: [{ cidr: '10.1.0.0/16' }],
  dns: {
    mode: 'allowlist',
    allowDomains: [{ domain: 'pypi.org', includeSubdomains: true }],
    denyDomains: [{ domain: 'ads.pypi.org', includeSubdomains: false }],
    upstreamServers: ['198.51.100.53:53'],
  },
};

describe('configOf / toBulkUpdate', () => {
  test('configOf(install(c)) == c (sorted, TTLs relative to now)', () => {
    expect(configOf(install(base), NOW)).toEqual(base);
    // without a clock, TTLs are left out
    expect(configOf(install(base)).allowCidrs).toEqual([{ cidr: '10.0.0.0/8' }, { cidr: '203.0.113.0/24' }]);
  });
  test('learned addresses are not config', () => {
    const s = learnAddresses(install(base), { name: 'files.pypi.org', addresses: ['203.0.113.9'], ttlSec: 60 }, NOW);
    expect(configOf(s, NOW)).toEqual(base);
  });
});

describe('diffConfigs examples', () => {
  test('no change, no commands', () => {
    expect(diffConfigs(base, base)).toEqual([]);
  });
  test('one CIDR added', () => {
    const to = { ...base, allowCidrs: [...base.allowCidrs, { cidr: '198.51.100.0/24' }] };
    expect(diffConfigs(base, to)).toEqual([{ type: 'allowCidr', entry: { cidr: '198.51.100.0/24' } }]);
  });
  test('a deny moved to allow is one command', () => {
    const to = { ...base, allowCidrs: [...base.allowCidrs, { cidr: '10.1.0.0/16' }], denyCidrs: [] };
    expect(diffConfigs(base, to)).toEqual([{ type: 'allowCidr', entry: { cidr: '10.1.0.0/16' } }]);
  });
  test('mode to block_all comes last, to disabled comes first', () => {
    const tighter = diffConfigs(base, { ...base, mode: 'block_all', denyCidrs: [] });
    expect(tighter).toEqual([{ type: 'removeCidr', cidr: '10.1.0.0/16' }, { type: 'setMode', mode: 'block_all' }]);
    const looser = diffConfigs(base, { ...base, mode: 'disabled', denyCidrs: [] });
    expect(looser[0]).toEqual({ type: 'setMode', mode: 'disabled' });
  });
  test('removing one of two rules at a name: removeDomain then re-add', () => {
    const from = { ...base, dns: { ...base.dns, allowDomains: [{ domain: 'pypi.org', includeSubdomains: true }, { domain: 'pypi.org', includeSubdomains: false }] } };
    expect(diffConfigs(from, base)).toEqual([
      { type: 'removeDomain', domain: 'pypi.org' },
      { type: 'allowDomain', entry: { domain: 'pypi.org', includeSubdomains: true } },
    ]);
  });
  test('upstream servers changed: one bulkUpdate', () => {
    const to = { ...base, dns: { ...base.dns, upstreamServers: ['198.51.100.54:53'] } };
    expect(diffConfigs(base, to)).toEqual([toBulkUpdate(to)]);
  });
  test('everything replaced: one bulkUpdate (cheaper)', () => {
    const to: PolicyConfig = { ...base, allowCidrs: [{ cidr: '198.51.100.0/24' }], denyCidrs: [], dns: { ...base.dns, allowDomains: [], denyDomains: [] } };
    expect(diffConfigs(base, to)).toEqual([toBulkUpdate(to)]);
  });
});

describe('diffConfigs property: applying the diff to a state with config `from` gives config `to`', () => {
  const cidr = fc.constantFrom('10.0.0.0/8', '10.1.0.0/16', '203.0.113.0/24', '2001:db8::/32', '198.51.100.7/32');
  const cidrEntry = fc.record({ cidr, ttl: fc.constantFrom(undefined, 5000, 60_000) }).map((e) => (e.ttl ? { cidr: e.cidr, ttlMs: e.ttl } : { cidr: e.cidr }));
  const domain = fc.record({ domain: fc.constantFrom('pypi.org', 'files.pypi.org', 'example.com', 'ads.example.com'), includeSubdomains: fc.boolean() });
  const uniq = <T, K>(arr: T[], key: (t: T) => K): T[] => [...new Map(arr.map((x) => [key(x), x])).values()];
  const config: fc.Arbitrary<PolicyConfig> = fc.record({
    mode: fc.constantFrom<PolicyMode>('disabled', 'allowlist', 'denylist', 'block_all'),
    dryRun: fc.boolean(),
    allowCidrs: fc.array(cidrEntry, { maxLength: 4 }).map((a) => uniq(a, (e) => e.cidr)),
    denyCidrs: fc.array(cidrEntry, { maxLength: 4 }).map((a) => uniq(a, (e) => e.cidr)),
    dns: fc.record({
      mode: fc.constantFrom<DnsMode>('disabled', 'allowlist', 'denylist', 'proxy'),
      allowDomains: fc.array(domain, { maxLength: 4 }).map((a) => uniq(a, (d) => `${d.domain}|${d.includeSubdomains}`)),
      denyDomains: fc.array(domain, { maxLength: 4 }).map((a) => uniq(a, (d) => `${d.domain}|${d.includeSubdomains}`)),
      upstreamServers: fc.constantFrom(['198.51.100.53:53'], ['198.51.100.53:53', '198.51.100.54:53'], []),
    }),
  });
  test('diff reaches to', () => {
    fc.assert(
      fc.property(config, config, (from, to) => {
        let s = install(from);
        const cmds = diffConfigs(configOf(s, NOW), to);
        for (const c of cmds) s = applyCommand(s, c, NOW);
        expect(configOf(s, NOW)).toEqual(configOf(install(to), NOW));
        expect(cmds.length).toBeLessThanOrEqual(
          1 + to.allowCidrs.length + to.denyCidrs.length + to.dns.allowDomains.length + to.dns.denyDomains.length,
        );
      }),
      { numRuns: 1500 },
    );
  });

  test('regression (found by the property above): a name keeps an exact rule in both lists while losing its wildcard', () => {
    const dns = (deny: { domain: string; includeSubdomains: boolean }[]) => ({
      mode: 'disabled' as const,
      allowDomains: [{ domain: 'example.com', includeSubdomains: false }],
      denyDomains: deny,
      upstreamServers: [],
    });
    const base = { mode: 'disabled' as const, dryRun: false, allowCidrs: [], denyCidrs: [] };
    const from: PolicyConfig = { ...base, dns: dns([{ domain: 'example.com', includeSubdomains: true }, { domain: 'example.com', includeSubdomains: false }]) };
    const to: PolicyConfig = { ...base, dns: dns([{ domain: 'example.com', includeSubdomains: false }]) };
    let s = install(from);
    for (const c of diffConfigs(configOf(s, NOW), to)) s = applyCommand(s, c, NOW);
    expect(configOf(s, NOW)).toEqual(configOf(install(to), NOW));
  });
});
