// The XDP attach option (issue 13) against a running netfenced (kernel test, the built CLI):
// `attach --xdp` on the host end of the workload's veth runs the filter at XDP in native mode
// (the device's dev_slots xdp binding names its slot, no TCX program), allowed traffic passes,
// blocked traffic is dropped there with drop events of hook xdp; on a bridge, whose driver has
// no native XDP, the kernel refuses it and the filter runs at TC ingress, listed with why. A
// kill -9 and restart keeps both where they run and enforcing, pins that cannot be re-opened
// move the XDP attachment to a new slot still at XDP, and detach removes the XDP link and the
// binding.

import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createArrayMap, openPinnedMap } from '@netfence/bpf-loader';
import { CODECS, TC_ONLY_MAPS, type DevSlots } from '@netfence/bpf-programs';
import type { LabNetns } from '@netfence/lab';
import { createDaemonLab, NAMES, SERVER_PORT, startDaemon, tcxProgIds, webPolicy, writeDaemonConfig, type DaemonLab, type DaemonProcess } from './support/daemon-lab';
import { grpc, type AttachmentInfoMsg, type AttachRequestMsg, type GrpcError } from './support/grpc';

jest.setTimeout(90_000);

const ALLOWED = '203.0.113.30'; // ALLOW 203.0.113.30/32
const BLOCKED = '203.0.113.20'; // not allowed (evil.test's address, a name the policy denies)
const BRIDGE_WL = '10.200.4.2';

type Info = AttachmentInfoMsg & { hook: string; xdp_fallback: string };
type ListJson = { attachments: { id: string; hook?: string; xdpFallback?: string; tcDirection?: string; packetsBlocked: string }[] };

let dl: DaemonLab;
let d: DaemonProcess;
let configPath: string;
/** The second workload, behind a veth whose host end is a port of `bridge` (which has the host address). */
let bw: LabNetns;
let bridge: string;
let xdpId: string;
let dnsAddress: string;
let brId: string;

beforeAll(async () => {
  dl = await createDaemonLab();
  bw = dl.lab.netns('b');
  const bv = dl.lab.veth(dl.host, bw, { addrB: [`${BRIDGE_WL}/24`] });
  bridge = `nf${dl.lab.id}br`;
  dl.host.exec('ip', ['link', 'add', bridge, 'type', 'bridge']); // goes with the host namespace
  dl.host.exec('ip', ['link', 'set', bv.a, 'master', bridge]);
  dl.host.exec('ip', ['addr', 'add', '10.200.4.1/24', 'dev', bridge]);
  dl.host.exec('ip', ['link', 'set', bridge, 'up']);
  bw.exec('ip', ['route', 'add', '203.0.113.0/24', 'via', '10.200.4.1']);
  dl.net.exec('ip', ['route', 'add', '10.200.4.0/24', 'via', '10.200.2.1']);
  const policy = join(dl.tmp, 'policy.yaml');
  writeFileSync(policy, webPolicy());
  configPath = writeDaemonConfig(dl, 'xdp', { policy_file: policy });
  d = await startDaemon(dl, configPath);
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

/** The XDP program on a device of the host namespace (`ip -d link`): its id and mode (1 = native), or undefined. */
function xdpOn(ifname: string): { mode: number; id: number; name: string } | undefined {
  const [l] = JSON.parse(dl.host.exec('ip', ['-j', '-d', 'link', 'show', 'dev', ifname])) as { xdp?: { mode: number; prog?: { id: number; name: string } } }[];
  return l?.xdp?.prog ? { mode: l.xdp.mode, id: l.xdp.prog.id, name: l.xdp.prog.name } : undefined;
}

/** The device's slot bindings in the host set's dev_slots (pinned), by ifindex. */
function devSlots(ifname: string): DevSlots {
  const m = openPinnedMap(join(dl.bpffsRoot, '_host', TC_ONLY_MAPS.devSlots.name));
  try {
    return createArrayMap(m, CODECS.devSlots).get(dl.host.ifindex(ifname));
  } finally {
    m.close();
  }
}

async function listed(id: string): Promise<Info> {
  const a = ((await d.api.listAll()) as Info[]).find((x) => x.id === id);
  if (!a) throw new Error(`${id} is not listed`);
  return a;
}

async function listedJson(id: string) {
  const r = await d.cli(['list', '--json']);
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as ListJson).attachments.find((x) => x.id === id)!;
}

async function connects(ns: LabNetns, addr: string): Promise<boolean> {
  return (await dl.run(ns, 'nc', ['-z', '-w', '1', addr, String(SERVER_PORT)])).code === 0;
}

/** Both workloads: the allowed address reachable, the blocked one not. */
async function expectEnforcing(): Promise<void> {
  expect([await connects(dl.wl, ALLOWED), await connects(dl.wl, BLOCKED)]).toEqual([true, false]);
  expect([await connects(bw, ALLOWED), await connects(bw, BLOCKED)]).toEqual([true, false]);
}

async function restart(): Promise<void> {
  d = await startDaemon(dl, configPath);
}

test('xdp is refused for a cgroup and with tc_direction egress (INVALID_ARGUMENT)', async () => {
  const cg = dl.cgroup('xdpcg');
  const attach = (req: AttachRequestMsg & { xdp: boolean }) => d.api.attach(req).then(() => undefined, (e: GrpcError) => e);
  const onCgroup = await attach({ cgroup_path: cg.path, xdp: true });
  expect([onCgroup?.code, onCgroup?.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringContaining('xdp applies to interfaces')]);
  const egress = await attach({ interface_name: dl.wlVeth.a, tc_direction: 'egress', xdp: true });
  expect([egress?.code, egress?.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringContaining('tc_direction egress')]);
  expect(await d.api.listAll()).toEqual([]);
});

test('attach --xdp on the host end of a veth: listed at hook xdp, the program runs natively on the device, bound by its xdp slot, no TCX program', async () => {
  const r = await d.cli(['attach', '-i', dl.wlVeth.a, '--xdp', '--metadata', 'tenant=web', '--json']);
  expect([r.code, r.stderr]).toEqual([0, '']);
  expect(Object.keys(JSON.parse(r.stdout))).toEqual(['id', 'dnsAddress']); // --json output as without --xdp
  ({ id: xdpId, dnsAddress } = JSON.parse(r.stdout) as { id: string; dnsAddress: string });

  expect(await listed(xdpId)).toMatchObject({ hook: 'xdp', xdp_fallback: '', tc_direction: 'ingress', type: 'ATTACHMENT_TYPE_TC' });
  const j = await listedJson(xdpId);
  expect(j).toMatchObject({ hook: 'xdp', tcDirection: 'ingress' });
  expect(j.xdpFallback).toBeUndefined();
  expect(xdpOn(dl.wlVeth.a)).toEqual({ mode: 1, id: expect.any(Number), name: 'netfence_xdp' });
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
  const b = devSlots(dl.wlVeth.a);
  expect(b.xdp).toBeGreaterThan(0);
  expect([b.ingress, b.egress]).toEqual([0, 0]);
  expect(existsSync(join(dl.bpffsRoot, xdpId, 'link_xdp'))).toBe(true);
});

test('through XDP: allowed traffic (a static CIDR, a name learned through the DNS server) passes; a blocked address is dropped and reported with hook xdp', async () => {
  expect(await dl.dig(dnsAddress, 'allowed.test')).toEqual({ status: 'NOERROR', answers: [NAMES['allowed.test']] });
  expect((await dl.dig(dnsAddress, 'evil.test')).status).toBe('REFUSED');
  expect(await connects(dl.wl, NAMES['allowed.test'])).toBe(true);
  expect(await connects(dl.wl, ALLOWED)).toBe(true);
  expect(await connects(dl.wl, BLOCKED)).toBe(false);
  const ev = await d.cli(['events', '--id', xdpId, '--json']);
  expect(ev.code).toBe(0);
  const drops = ev.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.type === 'drop');
  expect(drops).toContainEqual(expect.objectContaining({ destination: BLOCKED, port: SERVER_PORT, protocol: 'tcp', reason: 'not_allowed', hook: 'xdp' }));
  expect(Number((await listedJson(xdpId)).packetsBlocked)).toBeGreaterThan(0);
});

test('--xdp on a bridge: the kernel refuses native XDP, the filter runs at TC ingress, listed with why, and filters', async () => {
  const r = await d.cli(['attach', '-i', bridge, '--xdp', '--metadata', 'tenant=web', '--json']);
  expect([r.code, r.stderr]).toEqual([0, '']);
  brId = (JSON.parse(r.stdout) as { id: string }).id;
  const info = await listed(brId);
  expect(info).toMatchObject({ hook: 'tc', tc_direction: 'ingress' });
  expect(info.xdp_fallback).toMatch(/^the kernel refused native XDP: E[A-Z]+$/);
  expect((await listedJson(brId)).xdpFallback).toBe(info.xdp_fallback);
  expect(xdpOn(bridge)).toBeUndefined();
  expect(tcxProgIds(dl.host, bridge, 'ingress')).toHaveLength(1);
  const b = devSlots(bridge);
  expect([b.xdp, b.ingress > 0]).toEqual([0, true]); // the refused XDP binding was removed
  expect(d.logTail(200)).toContain('XDP refused by the kernel: the filter runs at TC instead');
  expect([await connects(bw, ALLOWED), await connects(bw, BLOCKED)]).toEqual([true, false]);
});

test('kill -9: both keep enforcing where they run; the restart re-opens them on the same hooks, listed as before', async () => {
  const xdpProg = xdpOn(dl.wlVeth.a)!.id;
  const brTcx = tcxProgIds(dl.host, bridge, 'ingress');
  await d.kill9();
  await expectEnforcing(); // nobody home: the pinned XDP and TC links alone decide
  await restart();
  expect(await listed(xdpId)).toMatchObject({ hook: 'xdp', xdp_fallback: '' });
  expect(await listed(brId)).toMatchObject({ hook: 'tc', xdp_fallback: expect.stringMatching(/^the kernel refused native XDP/) });
  expect(xdpOn(dl.wlVeth.a)).toEqual({ mode: 1, id: xdpProg, name: 'netfence_xdp' }); // the same link, not a new one
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
  expect(tcxProgIds(dl.host, bridge, 'ingress')).toEqual(brTcx);
  await expectEnforcing();
});

test('pins that cannot be re-opened: the XDP attachment moves to a new slot and stays at XDP, its link taken over', async () => {
  const before = { prog: xdpOn(dl.wlVeth.a)!.id, slot: devSlots(dl.wlVeth.a).xdp };
  await d.kill9();
  rmSync(join(dl.bpffsRoot, xdpId, 'rules_v6')); // the host map still holds the trie at the slot: still enforcing
  expect(await connects(dl.wl, BLOCKED)).toBe(false);
  await restart();
  expect(await listed(xdpId)).toMatchObject({ hook: 'xdp' });
  const after = devSlots(dl.wlVeth.a);
  expect(after.xdp).toBeGreaterThan(0);
  expect(after.xdp).not.toBe(before.slot); // re-bound to the new slot
  expect(xdpOn(dl.wlVeth.a)).toEqual({ mode: 1, id: before.prog, name: 'netfence_xdp' });
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
  expect(existsSync(join(dl.bpffsRoot, xdpId, 'rules_v6'))).toBe(true);
  expect(existsSync(join(dl.bpffsRoot, `${xdpId}_aside`))).toBe(false);
  await expectEnforcing();
});

test('detach removes the XDP link and the device binding (and the bridge its TC link); the traffic is no longer filtered', async () => {
  expect((await d.cli(['detach', '--id', xdpId])).code).toBe(0);
  expect(xdpOn(dl.wlVeth.a)).toBeUndefined();
  expect(devSlots(dl.wlVeth.a)).toEqual({ ingress: 0, egress: 0, xdp: 0 });
  expect(existsSync(join(dl.bpffsRoot, xdpId))).toBe(false);
  expect(await connects(dl.wl, BLOCKED)).toBe(true);
  expect((await d.cli(['detach', '--id', brId])).code).toBe(0);
  expect(tcxProgIds(dl.host, bridge, 'ingress')).toEqual([]);
  expect(devSlots(bridge).ingress).toBe(0);
  expect(await connects(bw, BLOCKED)).toBe(true);
});
