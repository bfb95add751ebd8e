import { parseRuleLine, parseRuleLines, parseTtl, PolicyError } from './index';

describe('parseRuleLine', () => {
  test.each([
    ['ALLOW *.pypi.org', { kind: 'domain', action: 'allow', domain: 'pypi.org', includeSubdomains: true }],
    ['DENY ads.example.com', { kind: 'domain', action: 'deny', domain: 'ads.example.com', includeSubdomains: false }],
    ['  deny   Ads.Example.COM.  ', { kind: 'domain', action: 'deny', domain: 'ads.example.com', includeSubdomains: false }],
    ['ALLOW 10.0.0.0/16', { kind: 'cidr', action: 'allow', cidr: '10.0.0.0/16' }],
    ['ALLOW 10.0.9.9/16', { kind: 'cidr', action: 'allow', cidr: '10.0.0.0/16' }],
    ['ALLOW 203.0.113.7', { kind: 'cidr', action: 'allow', cidr: '203.0.113.7/32' }],
    ['DENY 2001:db8::/32', { kind: 'cidr', action: 'deny', cidr: '2001:db8::/32' }],
    ['ALLOW 10.0.0.0/16 ttl=300s', { kind: 'cidr', action: 'allow', cidr: '10.0.0.0/16', ttlMs: 300_000 }],
    ['ALLOW 10.0.0.0/16 ttl=5m', { kind: 'cidr', action: 'allow', cidr: '10.0.0.0/16', ttlMs: 300_000 }],
    ['ALLOW 10.0.0.0/16 TTL=1h', { kind: 'cidr', action: 'allow', cidr: '10.0.0.0/16', ttlMs: 3_600_000 }],
    ['ALLOW 10.0.0.0/16 ttl=250ms', { kind: 'cidr', action: 'allow', cidr: '10.0.0.0/16', ttlMs: 250 }],
  ])('%j', (line, out) => {
    expect(parseRuleLine(line)).toEqual(out);
  });

  test.each([
    ['', 'NETFENCE_ERR_INVALID_RULE'],
    ['ALLOW', 'NETFENCE_ERR_INVALID_RULE'],
    ['PERMIT x.com', 'NETFENCE_ERR_INVALID_RULE'],
    ['ALLOW x.com ttl=5m', 'NETFENCE_ERR_INVALID_RULE'],
    ['ALLOW 10.0.0.0/8 extra', 'NETFENCE_ERR_INVALID_RULE'],
    ['ALLOW 10.0.0.0/8 ttl=5m ttl=6m', 'NETFENCE_ERR_INVALID_RULE'],
    ['ALLOW 10.0.0.0/8 ttl=5', 'NETFENCE_ERR_INVALID_TTL'],
    ['ALLOW 10.0.0.0/8 ttl=0s', 'NETFENCE_ERR_INVALID_TTL'],
    ['ALLOW 10.0.0.0/8 ttl=-5s', 'NETFENCE_ERR_INVALID_TTL'],
    ['ALLOW 10.0.0.0/33', 'NETFENCE_ERR_INVALID_CIDR'],
    ['ALLOW 10.0.0.300', 'NETFENCE_ERR_INVALID_CIDR'],
    ['DENY a..b', 'NETFENCE_ERR_INVALID_DOMAIN'],
    ['DENY a.*.b', 'NETFENCE_ERR_INVALID_DOMAIN'],
  ])('refuses %j with %s', (line, code) => {
    expect(() => parseRuleLine(line)).toThrow(expect.objectContaining({ code }));
  });

  test('INVALID_RULE names the line', () => {
    expect(() => parseRuleLine('PERMIT x.com')).toThrow(/NETFENCE_ERR_INVALID_RULE: invalid rule line "PERMIT x.com"/);
  });

  test('parseTtl', () => {
    expect(parseTtl('1d')).toBe(86_400_000);
    expect(() => parseTtl('1w')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_TTL', input: '1w' }));
  });

  test('parseRuleLines skips blanks and comments and names the line of an error', () => {
    expect(parseRuleLines('# policy\nALLOW *.pypi.org  # index\n\nDENY 10.0.0.0/8\n')).toEqual([
      { kind: 'domain', action: 'allow', domain: 'pypi.org', includeSubdomains: true },
      { kind: 'cidr', action: 'deny', cidr: '10.0.0.0/8' },
    ]);
    let err: unknown;
    try {
      parseRuleLines('ALLOW a.com\nALLOW b..com');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).code).toBe('NETFENCE_ERR_INVALID_DOMAIN');
    expect((err as PolicyError).input).toBe('line 2: ALLOW b..com');
    expect((err as PolicyError).message).toMatch(/^NETFENCE_ERR_INVALID_DOMAIN: line 2: invalid domain name "b..com"/);
    expect((err as PolicyError).cause).toBeInstanceOf(PolicyError);
  });
});
