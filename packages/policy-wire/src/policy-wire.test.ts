import fc from 'fast-check';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ControlCommandSchema, DnsMode as PbDnsMode, PolicyMode as PbPolicyMode } from '@netfence/proto';
import type { CidrEntryInput, DnsConfigInput, PolicyCommand } from '@netfence/policy-engine';
import { commandFromPb, commandToPb, dnsModeFromPb, dnsModeToPb, policyModeFromPb, policyModeToPb, PolicyWireError, subscribedAckCommand, bulkUpdateCommand } from './index';

const policyMode = fc.constantFrom('disabled' as const, 'allowlist' as const, 'denylist' as const, 'block_all' as const);
const dnsMode = fc.constantFrom('disabled' as const, 'allowlist' as const, 'denylist' as const, 'proxy' as const);
const text = fc.string({ maxLength: 40 });
// a TTL the wire can carry exactly: whole milliseconds, up to about 100 days
const cidrEntry: fc.Arbitrary<CidrEntryInput> = fc.record({ cidr: text, ttlMs: fc.option(fc.integer({ min: 0, max: 8_640_000_000 }), { nil: undefined }) }, { requiredKeys: ['cidr'] });
const domainEntry = fc.record({ domain: text, includeSubdomains: fc.boolean() });
const dnsConfig: fc.Arbitrary<DnsConfigInput> = fc.record({
  mode: dnsMode,
  allowDomains: fc.array(domainEntry, { maxLength: 4 }),
  denyDomains: fc.array(domainEntry, { maxLength: 4 }),
  upstreamServers: fc.array(text, { maxLength: 3 }),
});
const full = fc.record(
  {
    type: fc.constantFrom('bulkUpdate' as const, 'subscribedAck' as const),
    mode: policyMode,
    allowCidrs: fc.array(cidrEntry, { maxLength: 4 }),
    denyCidrs: fc.array(cidrEntry, { maxLength: 4 }),
    dns: fc.option(dnsConfig, { nil: undefined }),
    dryRun: fc.option(fc.boolean(), { nil: undefined }),
  },
  { requiredKeys: ['type', 'mode', 'allowCidrs', 'denyCidrs'] },
);
const command: fc.Arbitrary<PolicyCommand> = fc.oneof(
  fc.record({ type: fc.constant('setMode' as const), mode: policyMode }),
  fc.record({ type: fc.constantFrom('allowCidr' as const, 'denyCidr' as const), entry: cidrEntry }),
  fc.record({ type: fc.constant('removeCidr' as const), cidr: text }),
  fc.record({ type: fc.constant('setDnsMode' as const), mode: dnsMode }),
  fc.record({ type: fc.constantFrom('allowDomain' as const, 'denyDomain' as const), entry: domainEntry }),
  fc.record({ type: fc.constant('removeDomain' as const), domain: text }),
  fc.record({ type: fc.constant('setDryRun' as const), dryRun: fc.boolean() }),
  full,
);

/** What a command means, in the one shape the wire can say it: no TTL = 0 TTL, no dry-run = false. */
function canonical(cmd: PolicyCommand): PolicyCommand {
  const entry = (e: CidrEntryInput): CidrEntryInput => (e.ttlMs ? { cidr: e.cidr, ttlMs: e.ttlMs } : { cidr: e.cidr });
  switch (cmd.type) {
    case 'allowCidr':
    case 'denyCidr':
      return { type: cmd.type, entry: entry(cmd.entry) };
    case 'bulkUpdate':
    case 'subscribedAck':
      return { type: cmd.type, mode: cmd.mode, allowCidrs: cmd.allowCidrs.map(entry), denyCidrs: cmd.denyCidrs.map(entry), dns: cmd.dns, dryRun: cmd.dryRun ?? false };
    default:
      return cmd;
  }
}

describe('round trip through the wire (property)', () => {
  test('command -> ControlCommand -> bytes -> ControlCommand -> command keeps its meaning', () => {
    fc.assert(
      fc.property(command, fc.string({ maxLength: 20 }), (cmd, id) => {
        const msg = create(ControlCommandSchema, { id, command: commandToPb(cmd) });
        const back = fromBinary(ControlCommandSchema, toBinary(ControlCommandSchema, msg));
        expect(back.id).toBe(id);
        expect(commandFromPb(back, { mode: 'denylist' })).toEqual(canonical(cmd));
      }),
      { numRuns: 500 },
    );
  });

  test('modes map one to one', () => {
    for (const m of ['disabled', 'allowlist', 'denylist', 'block_all'] as const) expect(policyModeFromPb(policyModeToPb(m))).toBe(m);
    for (const m of ['disabled', 'allowlist', 'denylist', 'proxy'] as const) expect(dnsModeFromPb(dnsModeToPb(m))).toBe(m);
    expect(policyModeFromPb(PbPolicyMode.UNSPECIFIED)).toBeUndefined();
    expect(dnsModeFromPb(PbDnsMode.UNSPECIFIED)).toBeUndefined();
  });

  test('a full policy becomes the SubscribedAck or BulkUpdate a daemon reads back', () => {
    const policy = {
      mode: 'allowlist' as const,
      dryRun: true,
      allowCidrs: [{ cidr: '10.200.0.0/16', ttlMs: 1500 }],
      denyCidrs: [{ cidr: '10.200.9.0/24' }],
      dns: { mode: 'allowlist' as const, allowDomains: [{ domain: 'pypi.org', includeSubdomains: true }], denyDomains: [], upstreamServers: ['10.200.2.2:53'] },
    };
    for (const make of [subscribedAckCommand, bulkUpdateCommand]) {
      const cmd = commandFromPb(make('att-1', policy, 'n-1'), { mode: 'block_all' });
      expect(cmd).toMatchObject({ mode: 'allowlist', dryRun: true, allowCidrs: policy.allowCidrs, denyCidrs: policy.denyCidrs, dns: policy.dns });
    }
  });
});

describe('netfence.v1 semantics on the way in', () => {
  const msg = (command: Parameters<typeof create<typeof ControlCommandSchema>>[1]) => create(ControlCommandSchema, { id: 'a1', ...command });

  test('a SubscribedAck with an unspecified mode keeps the current mode; a BulkUpdate may not', () => {
    expect(commandFromPb(msg({ command: { case: 'subscribedAck', value: {} } }), { mode: 'block_all' })).toMatchObject({ type: 'subscribedAck', mode: 'block_all', dns: undefined });
    expect(() => commandFromPb(msg({ command: { case: 'bulkUpdate', value: {} } }), { mode: 'block_all' })).toThrow(/bulkUpdate for "a1": policy mode UNSPECIFIED is not a mode/);
  });

  test('SyncAck carries nothing to apply', () => {
    expect(commandFromPb(msg({ command: { case: 'syncAck', value: {} } }), { mode: 'allowlist' })).toBeUndefined();
  });

  test('a zero TTL is no expiry', () => {
    expect(commandFromPb(msg({ command: { case: 'allowCidr', value: { cidr: '10.200.0.0/16', ttl: { seconds: 0n, nanos: 0 } } } }), { mode: 'allowlist' })).toEqual({ type: 'allowCidr', entry: { cidr: '10.200.0.0/16' } });
  });

  test.each([
    ['an empty oneof', msg({}), /no command in the message/],
    ['an unknown policy mode', msg({ command: { case: 'setMode', value: { mode: 77 as PbPolicyMode } } }), /policy mode 77 is not a mode/],
    ['an unspecified dns mode', msg({ command: { case: 'setDnsMode', value: { mode: PbDnsMode.UNSPECIFIED } } }), /dns mode UNSPECIFIED is not a mode/],
    ['a negative TTL', msg({ command: { case: 'denyCidr', value: { cidr: '10.200.0.0/16', ttl: { seconds: -5n, nanos: 0 } } } }), /"10.200.0.0\/16": negative ttl/],
    ['dns rules under an unspecified dns mode', msg({ command: { case: 'bulkUpdate', value: { mode: PbPolicyMode.ALLOWLIST, dns: { allowDomains: [{ domain: 'x.test' }] } } } }), /dns.mode is unspecified but rules are given/],
  ])('refuses %s whole, naming it', (_what, m, re) => {
    let err: unknown;
    try {
      commandFromPb(m, { mode: 'allowlist' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyWireError);
    expect((err as PolicyWireError).code).toBe('NETFENCE_ERR_INVALID_MESSAGE');
    expect((err as Error).message).toMatch(re);
  });
});
