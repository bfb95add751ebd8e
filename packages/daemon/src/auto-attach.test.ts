import type { LinkRecord } from '@netfence/netlink';
import type { StartedAttach } from './attachment-registry';
import { AutoAttacher, defaultRouteDevices, linkTarget, type AutoAttachRegistry } from './auto-attach';
import { parseAutoAttachRules } from './auto-attach-rules';
import { DaemonError } from './daemon-error';
import type { AttachTarget } from './targets';
import type { WorkloadLog } from './workload-log';

const veth = (ifindex: number, name: string, up = false): LinkRecord => ({ event: 'new', ifindex, name, kind: 'veth', arphrd: 1, up });
const del = (ifindex: number, name: string): LinkRecord => ({ event: 'del', ifindex, name, kind: 'veth', arphrd: 1, up: false });

/** A registry that records auto attaches; each finish resolves when the test says so. */
function fakeRegistry() {
  const held = new Set<string>();
  const begun: { t: AttachTarget; metadata: Record<string, string>; rule: string; finished: boolean; done: (err?: Error) => void }[] = [];
  const key = (t: Pick<AttachTarget, 'kind' | 'identity'>) => `${t.kind}:${t.identity.ifindex ?? t.identity.cgroupId}`;
  const registry: AutoAttachRegistry = {
    holds: (t) => held.has(key(t)),
    attachAuto(t, metadata, rule): StartedAttach {
      if (held.has(key(t))) throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', 'held');
      held.add(key(t));
      const b = { t, metadata, rule, finished: false, done: (_err?: Error) => undefined as void };
      begun.push(b);
      return {
        id: `att-${begun.length}`,
        target: t.target,
        finish: () =>
          new Promise((resolve, reject) => {
            b.finished = true;
            b.done = (err) => (err ? reject(err) : resolve({ id: 'x', dnsAddress: '' }));
          }),
      };
    },
  };
  return { registry, held, begun };
}

function recordingLog() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const log: WorkloadLog = {
    write: (_kind, _att, level, obj, msg) => void lines.push({ level, obj, msg }),
    loggerFor: () => {
      throw new Error('unused');
    },
    suppressedTotal: 0,
    close: () => undefined,
  };
  return { log, lines };
}

const flush = () => new Promise((r) => setImmediate(r));

function driver(rules: unknown[], opts: { maxInFlight?: number; protectedNames?: Set<string> } = {}) {
  const r = fakeRegistry();
  const l = recordingLog();
  const auto = new AutoAttacher({ registry: r.registry, logger: undefined as never, workloadLog: l.log, protectedNames: () => opts.protectedNames ?? new Set(), maxInFlight: opts.maxInFlight });
  auto.setRules(parseAutoAttachRules(rules, 'auto_attach'));
  return { auto, ...r, lines: l.lines };
}

describe('the auto-attach driver', () => {
  it('attaches a matching link once, with the templated metadata and its rule, not on every change of its flags', () => {
    const { auto, begun } = driver([{ interface: 'nfx*', metadata: { vm: '{name}', tenant: 'sandbox' } }]);
    auto.link(veth(7, 'nfx0'));
    auto.link(veth(7, 'nfx0', true)); // set up: the same link
    auto.link(veth(8, 'other0'));
    expect(begun).toHaveLength(1);
    expect(begun[0]).toMatchObject({ t: { kind: 'tc', target: 'nfx0', identity: { ifindex: 7 }, direction: 'ingress', l3: false }, metadata: { vm: 'nfx0', tenant: 'sandbox' }, rule: 'interface:nfx*' });
  });

  it("asks for XDP (at the ingress side) when the rule says xdp", () => {
    const { auto, begun } = driver([{ interface: 'nfx*', xdp: true }]);
    auto.link(veth(7, 'nfx0'));
    expect(begun[0]!.t).toMatchObject({ target: 'nfx0', direction: 'ingress', xdp: true });
  });

  it('matches a link renamed into a rule, and again after it was deleted and re-created', () => {
    const { auto, begun, held } = driver([{ interface: 'nfx*' }]);
    auto.link(veth(9, 'tmp0'));
    auto.link(veth(9, 'nfx9'));
    expect(begun.map((b) => b.t.target)).toEqual(['nfx9']);
    held.clear();
    auto.link(del(9, 'nfx9'));
    auto.link(veth(10, 'nfx9'));
    expect(begun.map((b) => b.t.identity.ifindex)).toEqual([9, 10]);
  });

  it('a glob skips the host devices it is given; an exact name does not', () => {
    const { auto, begun } = driver([{ interface: '*' }], { protectedNames: new Set(['nfup0']) });
    auto.link(veth(3, 'nfup0'));
    auto.link({ event: 'new', ifindex: 1, name: 'lo', kind: undefined, arphrd: 772, up: true });
    expect(begun).toHaveLength(0);
    auto.setRules(parseAutoAttachRules([{ interface: 'nfup0' }], 'x'));
    auto.rematch([veth(3, 'nfup0')]);
    expect(begun.map((b) => b.t.target)).toEqual(['nfup0']);
  });

  it('the loopback named exactly is refused, as Attach refuses it', () => {
    const { auto, begun, lines } = driver([{ interface: 'lo' }]);
    auto.link({ event: 'new', ifindex: 1, name: 'lo', kind: undefined, arphrd: 772, up: true });
    expect(begun).toHaveLength(0);
    expect(lines).toMatchObject([{ level: 'warn', obj: { target: 'lo', autoRule: 'interface:lo' } }]);
  });

  it('finishes at most maxInFlight at once; the rest wait, every one begun (filtering) at once', async () => {
    const { auto, begun } = driver([{ interface: 'nfx*' }], { maxInFlight: 3 });
    for (let i = 0; i < 10; i++) auto.link(veth(100 + i, `nfx${i}`));
    expect(begun).toHaveLength(10); // kernel part: all of them, in the event's turn
    expect(begun.filter((b) => b.finished)).toHaveLength(3);
    expect(auto.backlog).toEqual({ queued: 7, running: 3 });
    for (let round = 0; round < 4; round++) {
      for (const b of begun.filter((x) => x.finished)) b.done();
      await flush();
    }
    expect(begun.every((b) => b.finished)).toBe(true);
    for (const b of begun) b.done();
    await flush();
    expect(auto.backlog).toEqual({ queued: 0, running: 0 });
  });

  it('logs a failed auto attach through the rate-limited log (a target gone meanwhile at debug)', async () => {
    const { auto, begun, lines } = driver([{ interface: 'nfx*' }]);
    auto.link(veth(5, 'nfx5'));
    auto.link(veth(6, 'nfx6'));
    begun[0]!.done(new DaemonError('NETFENCE_ERR_DATAPATH', 'refused'));
    begun[1]!.done(new DaemonError('NETFENCE_ERR_TARGET_GONE', 'gone'));
    await flush();
    expect(lines.map((l) => [l.level, l.obj.target, l.obj.autoRule])).toEqual([
      ['warn', 'nfx5', 'interface:nfx*'],
      ['debug', 'nfx6', 'interface:nfx*'],
    ]);
  });

  it('close waits for every begun auto attach to finish and takes no new ones', async () => {
    const { auto, begun } = driver([{ interface: 'nfx*' }], { maxInFlight: 1 });
    auto.link(veth(1, 'nfx1'));
    auto.link(veth(2, 'nfx2'));
    let closed = false;
    void auto.close().then(() => (closed = true));
    auto.link(veth(3, 'nfx3'));
    expect(begun).toHaveLength(2);
    begun[0]!.done();
    await flush();
    expect(closed).toBe(false);
    begun[1]!.done();
    await flush();
    expect(closed).toBe(true);
  });

  it('resync forgets links that went and matches new ones', () => {
    const { auto, begun, held } = driver([{ interface: 'nfx*' }]);
    auto.resync([veth(1, 'nfx1'), veth(2, 'nfx2')]);
    held.clear();
    auto.resync([veth(2, 'nfx2'), veth(3, 'nfx3')]);
    expect(begun.map((b) => b.t.identity.ifindex)).toEqual([1, 2, 3]);
  });
});

describe('defaultRouteDevices', () => {
  it('reads IPv4 and IPv6 default routes of the main table, not the loopback', () => {
    const files: Record<string, string> = {
      '/proc/net/route': [
        'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
        'eth0\t00000000\t0101C80A\t0003\t0\t0\t0\t00000000\t0\t0\t0',
        'nfa1\t0001C80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      ].join('\n'),
      '/proc/net/ipv6_route': [
        '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth1',
        '00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo',
        '20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     nfa2',
      ].join('\n'),
    };
    expect([...defaultRouteDevices((p) => files[p] ?? '')].sort()).toEqual(['eth0', 'eth1']);
    expect(defaultRouteDevices(() => {
      throw new Error('no /proc');
    }).size).toBe(0);
  });

  it('linkTarget: a tun without Ethernet header is L3; a device of another kind is an uplink (egress)', () => {
    expect(linkTarget({ event: 'new', ifindex: 4, name: 'nft0', kind: 'tun', arphrd: 65534, up: true })).toMatchObject({ direction: 'ingress', l3: true });
    expect(linkTarget({ event: 'new', ifindex: 2, name: 'eth0', kind: undefined, arphrd: 1, up: true })).toMatchObject({ direction: 'egress', l3: false });
  });
});
