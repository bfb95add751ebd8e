import { create } from '@bufbuild/protobuf';
import { AutoAttachRulesSchema } from '@netfence/proto';
import { autoAttachRulesFromPb, autoAttachRulesToPb, readAutoAttachRules, writeAutoAttachRules } from './auto-attach-wire';
import { parseAutoAttachRules } from './auto-attach-rules';

const RULES = parseAutoAttachRules(
  [
    { interface: 'tap*', kind: 'tap', metadata: { vm_id: '{name}' } },
    { interface: 'nfv?', xdp: true },
    { cgroup: '/sys/fs/cgroup/jobs/*', metadata: { job: '{basename}' } },
  ],
  'x',
);

describe('auto-attach rules across boundaries', () => {
  it('round-trips through the DaemonService message', () => {
    expect(autoAttachRulesFromPb(autoAttachRulesToPb(RULES))).toEqual(RULES);
  });

  it('refuses a request whole, naming the bad rule and field', () => {
    const msg = create(AutoAttachRulesSchema, {
      rules: [
        { target: { case: 'interface', value: 'tap*' } },
        { target: { case: 'cgroup', value: '/sys/fs/cgroup/jobs/*' }, kind: 'tap' },
      ],
    });
    expect(() => autoAttachRulesFromPb(msg)).toThrow(/NETFENCE_ERR_INVALID_ARGUMENT.*rules\[1\].*kind/);
    expect(() => autoAttachRulesFromPb(create(AutoAttachRulesSchema, { rules: [{ kind: 'tap' }] }))).toThrow(/rules\[0\]: a rule has exactly one of/);
    expect(() => autoAttachRulesFromPb(create(AutoAttachRulesSchema, { rules: [{ target: { case: 'interface', value: 'x' }, kind: 'bond' }] }))).toThrow(/rules\[0\.kind\]/);
  });

  it('reads a YAML or JSON list, or the config shape, and writes the config shape back', () => {
    expect(readAutoAttachRules(writeAutoAttachRules(RULES), 'f')).toEqual(RULES);
    expect(readAutoAttachRules(JSON.stringify([{ interface: 'tap*' }]), 'f')).toEqual([{ interface: 'tap*', kind: 'any', metadata: {}, xdp: false }]);
    expect(readAutoAttachRules('', 'f')).toEqual([]);
    expect(writeAutoAttachRules(RULES)).toMatch(/^auto_attach:\n {2}- interface: tap\*\n {4}kind: tap\n/);
    expect(() => readAutoAttachRules('interface: tap*', 'rules.yaml')).toThrow(/rules\.yaml: expected a list/);
    expect(() => readAutoAttachRules('[{ interface: "x", kind: bond }]', 'rules.yaml')).toThrow(/rules\.yaml\[0\.kind\]/);
    expect(() => readAutoAttachRules('[: :', 'rules.yaml')).toThrow(/rules\.yaml: invalid YAML/);
  });
});
