import { cgroupWatchDirs, linkKind, matchCgroup, matchInterface, parseAutoAttachRules, ruleMetadata, rulePattern, type LinkFacts } from './auto-attach-rules';

const tap = (name: string): LinkFacts => ({ name, kind: 'tun', arphrd: 1 });
const tun = (name: string): LinkFacts => ({ name, kind: 'tun', arphrd: 65534 });
const veth = (name: string): LinkFacts => ({ name, kind: 'veth', arphrd: 1 });
const nic = (name: string): LinkFacts => ({ name, kind: undefined, arphrd: 1 });
const lo: LinkFacts = { name: 'lo', kind: undefined, arphrd: 772 };
const none = new Set<string>();

describe('auto-attach rules', () => {
  it('parses the config shape with defaults, and names the bad rule', () => {
    const rules = parseAutoAttachRules([{ interface: 'tap*', metadata: { vm_id: '{name}' } }, { cgroup: '/sys/fs/cgroup/jobs/*' }], 'auto_attach');
    expect(rules).toEqual([
      { interface: 'tap*', kind: 'any', metadata: { vm_id: '{name}' }, xdp: false },
      { cgroup: '/sys/fs/cgroup/jobs/*', metadata: {} },
    ]);
    expect(() => parseAutoAttachRules([{ interface: 'tap*' }, { interface: 'x', kind: 'bond' }], 'auto_attach')).toThrow(/auto_attach\[1\.kind\]/);
    expect(() => parseAutoAttachRules([{ cgroup: 'jobs/*' }], 'auto_attach')).toThrow(/absolute path/);
    expect(() => parseAutoAttachRules([{ cgroup: '/sys/fs/cgroup/*/job' }], 'auto_attach')).toThrow(/last path component/);
    expect(() => parseAutoAttachRules([{ interface: 'tap*', cgroup: '/x/*' }], 'auto_attach')).toThrow(/auto_attach/);
    expect(() => parseAutoAttachRules(Array.from({ length: 65 }, () => ({ interface: 'x' })), 'auto_attach')).toThrow(/auto_attach/);
    expect(parseAutoAttachRules(undefined, 'auto_attach')).toEqual([]);
  });

  it('matches interfaces by glob and kind, first rule wins', () => {
    const rules = parseAutoAttachRules([{ interface: 'tap*', kind: 'tap', metadata: { r: '1' } }, { interface: 'nf*', metadata: { r: '2' } }], 'x');
    expect(matchInterface(rules, tap('tap0'), none)?.metadata).toEqual({ r: '1' });
    expect(matchInterface(rules, veth('tap1'), none)).toBeUndefined(); // kind tap only
    expect(matchInterface(rules, veth('nfv1'), none)?.metadata).toEqual({ r: '2' });
    expect(matchInterface(rules, tun('nft0'), none)?.metadata).toEqual({ r: '2' });
    expect(matchInterface(rules, tap('eth0'), none)).toBeUndefined();
    expect(linkKind(tap('x'))).toBe('tap');
    expect(linkKind(tun('x'))).toBe('tun');
    expect(linkKind({ name: 'br0', kind: 'bridge', arphrd: 1 })).toBeUndefined();
  });

  it('a glob never matches the loopback, an uplink or a device of another kind; an exact name does', () => {
    const star = parseAutoAttachRules([{ interface: '*' }], 'x');
    expect(matchInterface(star, lo, none)).toBeUndefined();
    expect(matchInterface(star, nic('eth0'), none)).toBeUndefined();
    expect(matchInterface(star, { name: 'br0', kind: 'bridge', arphrd: 1 }, none)).toBeUndefined();
    expect(matchInterface(star, veth('veth-uplink'), new Set(['veth-uplink']))).toBeUndefined();
    expect(matchInterface(star, veth('nfvm1'), new Set(['veth-uplink']))).toBeDefined();
    const exact = parseAutoAttachRules([{ interface: 'eth0', kind: 'tap' }, { interface: 'lo' }], 'x');
    expect(matchInterface(exact, nic('eth0'), new Set(['eth0']))).toBeDefined();
    expect(matchInterface(exact, lo, none)).toBeDefined();
  });

  it('matches cgroups by glob on the path and lists the directories to watch', () => {
    const rules = parseAutoAttachRules([{ interface: 'tap*' }, { cgroup: '/sys/fs/cgroup/jobs/*', metadata: { job: '{basename}', at: '{path}' } }, { cgroup: '/sys/fs/cgroup/ci/run-?' }], 'x');
    expect(matchCgroup(rules, '/sys/fs/cgroup/jobs/j42')).toBe(rules[1]);
    expect(matchCgroup(rules, '/sys/fs/cgroup/jobs/j42/sub')).toBeUndefined();
    expect(matchCgroup(rules, '/sys/fs/cgroup/ci/run-7')).toBe(rules[2]);
    expect(matchCgroup(rules, '/sys/fs/cgroup/ci/run-77')).toBeUndefined();
    expect(cgroupWatchDirs(rules)).toEqual(['/sys/fs/cgroup/jobs', '/sys/fs/cgroup/ci']);
    expect(ruleMetadata(rules[1]!, '/sys/fs/cgroup/jobs/j42')).toEqual({ job: 'j42', at: '/sys/fs/cgroup/jobs/j42' });
    expect(rulePattern(rules[1]!)).toBe('cgroup:/sys/fs/cgroup/jobs/*');
  });

  it('fills {name} in interface metadata, keys too, and leaves unknown placeholders', () => {
    const [r] = parseAutoAttachRules([{ interface: 'tap*', metadata: { vm_id: '{name}', '{name}-x': 'y', t: '{basename}', tenant: 'sandbox' } }], 'x');
    expect(ruleMetadata(r!, 'tap9')).toEqual({ vm_id: 'tap9', 'tap9-x': 'y', t: '{basename}', tenant: 'sandbox' });
  });

  it('cuts a filled key or value at 1024 bytes, on a character boundary', () => {
    const [r] = parseAutoAttachRules([{ cgroup: '/sys/fs/cgroup/jobs/*', metadata: { p: '{path}'.repeat(100), u: 'é{basename}' } }], 'x');
    const path = `/sys/fs/cgroup/jobs/${'é'.repeat(100)}`;
    const m = ruleMetadata(r!, path);
    expect(Buffer.byteLength(m.p!)).toBeLessThanOrEqual(1024);
    expect(m.p!.startsWith(path + path)).toBe(true);
    expect(m.p).not.toMatch(/\ufffd/);
    expect(m.u).toBe(`é${'é'.repeat(100)}`);
  });
});
