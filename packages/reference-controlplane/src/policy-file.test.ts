import { parseDocument } from 'yaml';
import { ControlPlaneError } from './errors';
import {
  addRuleToText,
  compilePolicyDocument,
  NO_MATCH_CONFIG,
  parsePolicyText,
  removeRuleFromText,
  selectPolicy,
} from './policy-file';

const GOOD = `# team policies
policies:
  - name: acme            # the acme tenant
    match: { tenant: acme }
    mode: allowlist
    dns:
      mode: allowlist
      upstreams: [10.200.0.53, "10.200.0.54:5353", "[2001:db8::53]:53"]
    rules:
      - ALLOW *.pypi.org
      - ALLOW 10.0.0.0/16 ttl=5m
      - DENY ads.example.com
      - deny 10.0.9.0/24
  - name: ci
    match: { tenant: acme, role: ci }
    mode: denylist
    dry_run: true
  - name: default
    mode: block_all
`;

function issuesOf(text: string): ControlPlaneError {
  try {
    parsePolicyText(text, 'p.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ControlPlaneError);
    return e as ControlPlaneError;
  }
  throw new Error('expected a rejection');
}

describe('parsePolicyText', () => {
  it('compiles policies: domains into DNS config, CIDRs into lists with TTLs', () => {
    const set = parsePolicyText(GOOD, 'p.yaml');
    expect(set.policies.map((p) => p.name)).toEqual(['acme', 'ci', 'default']);
    const acme = set.policies[0]!;
    expect(acme.match).toEqual({ tenant: 'acme' });
    expect(acme.config).toEqual({
      mode: 'allowlist',
      dryRun: false,
      allowCidrs: [{ cidr: '10.0.0.0/16', ttlMs: 300_000 }],
      denyCidrs: [{ cidr: '10.0.9.0/24' }],
      dns: {
        mode: 'allowlist',
        allowDomains: [{ domain: 'pypi.org', includeSubdomains: true }],
        denyDomains: [{ domain: 'ads.example.com', includeSubdomains: false }],
        upstreamServers: ['10.200.0.53', '10.200.0.54:5353', '[2001:db8::53]:53'],
      },
    });
    expect(acme.proxyDefault).toBe('deny');
    expect(set.policies[1]!.config.dryRun).toBe(true);
    expect(set.policies[2]!.config).toMatchObject({ mode: 'block_all', allowCidrs: [], dns: { mode: 'disabled' } });
    expect(set.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('selects the first matching policy in file order; empty match is the default', () => {
    const set = parsePolicyText(GOOD, 'p.yaml');
    expect(selectPolicy(set, { tenant: 'acme', role: 'ci' })?.name).toBe('acme');
    expect(selectPolicy(set, { tenant: 'other' })?.name).toBe('default');
    const noDefault = parsePolicyText('policies:\n  - name: a\n    match: {tenant: a}\n    mode: denylist\n', 'q.yaml');
    expect(selectPolicy(noDefault, { tenant: 'b' })).toBeUndefined();
    expect(NO_MATCH_CONFIG.mode).toBe('block_all');
  });

  it('names file, line, column and key for a bad rule', () => {
    const bad = GOOD.replace('ALLOW 10.0.0.0/16 ttl=5m', 'ALLOW 10.0.0.300/16');
    const e = issuesOf(bad);
    expect(e.code).toBe('NETFENCE_ERR_POLICY_INVALID');
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]).toMatchObject({ file: 'p.yaml', line: 11, column: 9, key: 'policies[0].rules[1]' });
    expect(e.message).toContain('p.yaml:11:9: policies[0].rules[1]: NETFENCE_ERR_INVALID_CIDR');
  });

  it('names the line of a bad enum value and of an unknown key', () => {
    const e = issuesOf('policies:\n  - name: a\n    mode: allow_everything\n    colour: blue\n');
    const keys = e.issues.map((i) => `${i.line}:${i.key}`).sort();
    expect(keys).toEqual(['3:policies[0].mode', '4:policies[0].colour']);
  });

  it('points at the parent map when a required key is missing', () => {
    const e = issuesOf('policies:\n  - name: a\n    match: {x: y}\n  - name: b\n    match: {}\n');
    expect(e.issues).toHaveLength(2);
    expect(e.issues.map((i) => i.key)).toEqual(['policies[0].mode', 'policies[1].mode']);
    expect(e.issues.map((i) => i.line)).toEqual([2, 4]);
  });

  it('rejects YAML syntax errors with a line', () => {
    const e = issuesOf('policies:\n  - name: a\n    mode: [unclosed\n');
    expect(e.issues[0]!.line).toBeGreaterThan(0);
    expect(e.issues[0]!.message).toMatch(/YAML syntax/);
  });

  it('rejects duplicate names, duplicate rules, unreachable policies, bad upstreams, domain rules without DNS', () => {
    const e = issuesOf(`policies:
  - name: a
    mode: allowlist
    rules: [ALLOW example.com]
  - name: a
    match: {t: x}
    mode: allowlist
    dns: { mode: proxy, upstreams: [not-an-ip] }
    rules: [ALLOW 10.0.0.0/8, allow 10.1.0.0/8]
`);
    const msgs = e.issues.map((i) => `${i.line} ${i.key} ${i.message}`);
    expect(msgs).toEqual([
      expect.stringMatching(/^4 policies\[0\]\.rules\[0\] domain rule "ALLOW example.com" needs dns.mode/),
      expect.stringMatching(/^5 policies\[1\]\.name duplicate policy name "a"/),
      expect.stringMatching(/^6 policies\[1\]\.match policy "a" is unreachable/),
      expect.stringMatching(/^8 policies\[1\]\.dns\.upstreams\[0\] invalid upstream/),
      expect.stringMatching(/^9 policies\[1\]\.rules\[1\] duplicate rule/),
    ]);
  });

  it('requires string metadata values in match', () => {
    const e = issuesOf('policies:\n  - name: a\n    match: {team: 42}\n    mode: denylist\n');
    expect(e.issues[0]).toMatchObject({ line: 3, key: 'policies[0].match.team' });
  });
});

describe('compilePolicyDocument', () => {
  it('validates an object with key paths and no lines', () => {
    expect(compilePolicyDocument({ policies: [{ name: 'x', mode: 'denylist', rules: ['DENY 198.51.100.0/24'] }] }).policies[0]!.config.denyCidrs).toEqual([
      { cidr: '198.51.100.0/24' },
    ]);
    try {
      compilePolicyDocument({ policies: [{ name: 'x', mode: 'nope' }] });
      throw new Error('expected a rejection');
    } catch (e) {
      expect((e as ControlPlaneError).issues[0]).toMatchObject({ file: '<inline>', line: 0, key: 'policies[0].mode' });
    }
  });
});

describe('rule edits keep comments', () => {
  it('adds and removes rules through the YAML document', () => {
    const added = addRuleToText(GOOD, 'acme', 'ALLOW files.pythonhosted.org');
    expect(added).toContain('# the acme tenant');
    expect(added).toContain('# team policies');
    expect(parsePolicyText(added, 'p.yaml').policies[0]!.config.dns.allowDomains).toContainEqual({
      domain: 'files.pythonhosted.org',
      includeSubdomains: false,
    });
    const addedToNew = addRuleToText(GOOD, 'ci', 'DENY 203.0.113.0/24');
    expect(parseDocument(addedToNew).getIn(['policies', 1, 'rules'])).toBeTruthy();
    expect(parsePolicyText(addedToNew, 'p.yaml').policies[1]!.config.denyCidrs).toEqual([{ cidr: '203.0.113.0/24' }]);
    const removed = removeRuleFromText(GOOD, 'acme', 'allow 10.0.0.0/16'); // ttl ignored, case-insensitive
    expect(parsePolicyText(removed, 'p.yaml').policies[0]!.config.allowCidrs).toEqual([]);
    expect(removed).toContain('# the acme tenant');
  });

  it('refuses duplicates, unknown policies and unknown rules with stable codes', () => {
    expect(() => addRuleToText(GOOD, 'acme', 'ALLOW *.PyPI.org.')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_RULE_EXISTS' }));
    expect(() => addRuleToText(GOOD, 'nope', 'ALLOW x.org')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_POLICY_NOT_FOUND' }));
    expect(() => removeRuleFromText(GOOD, 'acme', 'DENY x.org')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_RULE_NOT_FOUND' }));
    expect(() => addRuleToText(GOOD, 'acme', 'PERMIT x.org')).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_INVALID_RULE' }));
  });
});
