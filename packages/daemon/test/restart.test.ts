// Restart semantics: filters keep enforcing while netfenced is down (kill -9), and a restart
// with the same config, data_dir and bpffs_root picks every attachment up again from its pins
// (no duplicate kernel attachment, same DNS address), rolls back an attach that never got its
// ack, and unsubscribes targets that vanished meanwhile.

import { existsSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabCgroup } from '@netfence/lab';
import {
  cgroupProgs,
  createDaemonLab,
  eventually,
  NAMES,
  pinnedAllowV4,
  pinnedIds,
  savedIds,
  sleep,
  startDaemon,
  startForwardedControlPlane,
  tcxProgIds,
  writeDaemonConfig,
  type DaemonLab,
  type DaemonProcess,
} from './support/daemon-lab';
import { grpc, type GrpcError, type PolicyMsg, type TestControlPlane } from './support/grpc';

jest.setTimeout(90_000);

const ACK: PolicyMsg = {
  mode: 'POLICY_MODE_ALLOWLIST',
  allow_cidrs: [{ cidr: '203.0.113.30/32' }],
  dns: { mode: 'DNS_MODE_ALLOWLIST', allow_domains: [{ domain: 'allowed.test' }] },
};

let dl: DaemonLab;
let cp: TestControlPlane;
let configPath: string;
let d: DaemonProcess;
let cg: LabCgroup;
let tcId: string;
let tcDns: string;
let cgId: string;

beforeAll(async () => {
  dl = await createDaemonLab();
  const f = await startForwardedControlPlane(dl, 'restart', { ackPolicy: () => ACK });
  cp = f.cp;
  configPath = writeDaemonConfig(dl, 'restart', { control_plane: { url: f.url, subscribe_ack_timeout: '10s' } });
  d = await startDaemon(dl, configPath);
  cg = dl.cgroup('rs');
  ({ id: tcId, dns_address: tcDns } = await d.api.attach({ interface_name: dl.wlVeth.a, metadata: { k: 'tc' } }));
  ({ id: cgId } = await d.api.attach({ cgroup_path: cg.path, metadata: { k: 'cg' } }));
  expect((await dl.dig(tcDns, 'allowed.test')).answers).toEqual([NAMES['allowed.test']]);
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

/** Restarts the daemon and returns the SyncRequest of its new stream. */
async function restart() {
  const from = cp.events.length;
  d = await startDaemon(dl, configPath);
  const sync = await cp.waitFor((e) => e.msg.event === 'sync', 15_000, 'SyncRequest after the restart', from);
  return sync.msg.sync!;
}

async function expectEnforcing() {
  // TC: the static CIDR and the address learned through DNS pass, anything else is dropped.
  expect(await dl.canConnect('203.0.113.30')).toBe(true);
  expect(await dl.canConnect(NAMES['allowed.test'])).toBe(true);
  expect(await dl.canConnect('203.0.113.20')).toBe(false);
  // cgroup
  expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
  expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
}

test('kill -9: filters enforce during the gap; the restart restores both attachments without duplicates', async () => {
  const tcxBefore = tcxProgIds(dl.host, dl.wlVeth.a);
  const cgBefore = cgroupProgs(cg.path);
  expect(tcxBefore).toHaveLength(1);
  expect(cgBefore.length).toBeGreaterThanOrEqual(5);
  const listBefore = await d.api.listAll();

  await d.kill9();
  await expectEnforcing(); // nobody home: the pinned filters alone decide
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual(tcxBefore);

  const sync = await restart();
  expect(sync.attachments.map((a) => a.id).sort()).toEqual([tcId, cgId].sort());
  expect(sync.attachments.find((a) => a.id === tcId)).toMatchObject({ target: dl.wlVeth.a, type: 'ATTACHMENT_TYPE_TC', mode: 'POLICY_MODE_ALLOWLIST', dns_mode: 'DNS_MODE_ALLOWLIST', metadata: { k: 'tc' } });

  const listAfter = await d.api.listAll();
  const pick = (l: typeof listAfter) => l.map((a) => ({ id: a.id, target: a.target, mode: a.mode, dns_mode: a.dns_mode, dns_address: a.dns_address, metadata: a.metadata })).sort((a, b) => a.id.localeCompare(b.id));
  expect(pick(listAfter)).toEqual(pick(listBefore));
  // Same kernel attachments (the pinned links), not new ones next to them.
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual(tcxBefore);
  expect(cgroupProgs(cg.path)).toEqual(cgBefore);
  expect(pinnedIds(dl).sort()).toEqual([tcId, cgId].sort());
  // The same DNS address answers again, and what it learns reaches the same maps.
  expect(await dl.dig(tcDns, 'allowed.test')).toEqual({ status: 'NOERROR', answers: [NAMES['allowed.test']] });
  expect((await dl.dig(tcDns, 'evil.test')).status).toBe('REFUSED');
  expect(pinnedAllowV4(dl, tcId).sort()).toEqual([`${NAMES['allowed.test']}/32`, '203.0.113.30/32']);
  await expectEnforcing();
  // And the restored attachments take commands.
  cp.send({ id: cgId, allow_cidr: { cidr: '203.0.113.20/32' } });
  await eventually(() => pinnedAllowV4(dl, cgId).includes('203.0.113.20/32'), 'AllowCIDR after the restart');
  expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true);
  cp.send({ id: cgId, remove_cidr: '203.0.113.20/32' });
});

test('SIGTERM (detach_on_exit off): the filters stay pinned and enforcing; a restart picks them up', async () => {
  // Right after a RemoveCIDR on the cgroup attachment, whose severing runs in the background:
  // the daemon must still exit by itself (it once hung in process.exit here).
  cp.send({ id: cgId, remove_cidr: '203.0.113.77/32' });
  cp.send({ id: cgId, allow_cidr: { cidr: '203.0.113.77/32' } });
  cp.send({ id: cgId, remove_cidr: '203.0.113.77/32' });
  expect(await d.stop()).toBe(0); // not null: it exited by itself, before the 15 s SIGKILL
  expect(pinnedIds(dl).sort()).toEqual([tcId, cgId].sort());
  await expectEnforcing();
  const sync = await restart();
  expect(sync.attachments.map((a) => a.id).sort()).toEqual([tcId, cgId].sort());
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toHaveLength(1);
});

test('a CIDR TTL lapses in the kernel while the daemon is down', async () => {
  // 6 s: room for the checks below on a loaded machine before it lapses
  cp.send({ id: tcId, allow_cidr: { cidr: '203.0.113.20/32', ttl: { seconds: 6, nanos: 0 } } });
  await eventually(() => pinnedAllowV4(dl, tcId).includes('203.0.113.20/32'), 'AllowCIDR with a TTL');
  const t0 = Date.now(); // the TTL started a little before
  expect(await dl.canConnect('203.0.113.20')).toBe(true);
  await d.kill9();
  expect(await dl.canConnect('203.0.113.20')).toBe(true); // within its TTL: nobody home, still allowed
  await sleep(Math.max(0, t0 + 6000 + 1200 - Date.now())); // the kernel's deadline is in whole seconds, rounded up
  expect(pinnedAllowV4(dl, tcId)).toContain('203.0.113.20/32'); // nobody removed the entry...
  expect(await dl.canConnect('203.0.113.20')).toBe(false); // ...and it allows nothing any more
  await restart();
  await eventually(() => !pinnedAllowV4(dl, tcId).includes('203.0.113.20/32'), 'the lapsed entry removed on start');
  expect(await dl.canConnect('203.0.113.20')).toBe(false);
});

test('an unreadable saved record: its pinned filter keeps enforcing, unmanaged, until the record is readable again', async () => {
  await d.kill9();
  const file = join(d.dataDir, 'attachments', `${cgId}.json`);
  const original = readFileSync(file, 'utf8');
  writeFileSync(file, '{"version": 99, "garbage": ');
  try {
    const sync = await restart();
    expect(sync.attachments.map((a) => a.id)).toEqual([tcId]);
    expect((await d.api.listAll()).map((a) => a.id)).toEqual([tcId]);
    // not removed as an orphan: still pinned, still attached, still filtering
    expect(pinnedIds(dl).sort()).toEqual([tcId, cgId].sort());
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
  } finally {
    await d.kill9();
    writeFileSync(file, original);
  }
  const sync = await restart();
  expect(sync.attachments.map((a) => a.id).sort()).toEqual([tcId, cgId].sort());
});

test('kill -9 in the middle of an attach (before the ack): the restart removes the half-made attachment (pins no record vouches for)', async () => {
  const cg2 = dl.cgroup('pend');
  cp.ackMode = 'never';
  const from = cp.events.length;
  const attaching = d.api.attach({ cgroup_path: cg2.path }).then(
    () => undefined,
    (e: GrpcError) => e,
  );
  const sub = await cp.waitFor((e) => e.msg.event === 'subscribed', 5000, 'Subscribed', from);
  const id = sub.msg.subscribed!.id;
  // Half made: programs attached, pins in place, no record yet (it is written once the ack is applied).
  expect(savedIds(d)).not.toContain(id);
  expect(pinnedIds(dl)).toContain(id);
  expect(cgroupProgs(cg2.path).length).toBeGreaterThan(0);
  await d.kill9();
  const err = await attaching;
  expect(err).toBeDefined();
  expect(err!.code).not.toBe(grpc.status.OK);
  expect(err!.code).not.toBe(grpc.status.UNKNOWN);

  cp.ackMode = 'auto';
  const sync = await restart();
  expect(sync.attachments.map((a) => a.id)).not.toContain(id);
  expect(sync.attachments.map((a) => a.id).sort()).toEqual([tcId, cgId].sort());
  expect((await d.api.listAll()).map((a) => a.id)).not.toContain(id);
  expect(pinnedIds(dl)).not.toContain(id);
  expect(savedIds(d)).not.toContain(id);
  expect(cgroupProgs(cg2.path)).toEqual([]);
  expect(await dl.canConnect('203.0.113.20', { cgroup: cg2 })).toBe(true);
  // The target is free again.
  const again = await d.api.attach({ cgroup_path: cg2.path });
  await d.api.detach(again.id);
});

test('pins that cannot be re-opened: attached again under the same id, the old filter enforcing until the new one is in place', async () => {
  await d.kill9();
  const before = tcxProgIds(dl.host, dl.wlVeth.a);
  expect(before).toHaveLength(1);
  // A pin goes missing (the host map still holds the trie at the attachment's slot: still enforcing).
  rmSync(join(dl.bpffsRoot, tcId, 'rules_v6'));
  // The address learned through DNS outlived its TTL while the daemon was down (its saved
  // expiry is moved into the past): from then on only the traffic the old maps saw (within
  // the 5 min grace) can keep it.
  const file = join(d.dataDir, 'attachments', `${tcId}.json`);
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { policy: { learned: { address: string; expiresAt: number }[] } };
  const learned = saved.policy.learned.find((l) => l.address === `${NAMES['allowed.test']}/32`);
  expect(learned).toBeDefined();
  learned!.expiresAt = Date.now() - 1000;
  writeFileSync(file, JSON.stringify(saved));
  expect(await dl.canConnect('203.0.113.20')).toBe(false);
  const sync = await restart();
  expect(sync.attachments.map((a) => a.id).sort()).toEqual([tcId, cgId].sort());
  // The same host program on the same link, now bound to a new slot: no second program.
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual(before);
  expect(pinnedIds(dl).sort()).toEqual([tcId, cgId].sort()); // nothing set aside is left
  expect(existsSync(join(dl.bpffsRoot, tcId, 'rules_v6'))).toBe(true);
  // The saved policy is in the new slot's tries. The address learned from DNS long ago has
  // outlived its TTL, but the old trie saw traffic to it within the grace period: that last-seen
  // time is carried into the new one, so it stays allowed (a move does not cut a connection that
  // is still in use) and stays until the grace runs out.
  expect(await dl.canConnect('203.0.113.30')).toBe(true);
  expect(await dl.canConnect('203.0.113.20')).toBe(false);
  expect(pinnedAllowV4(dl, tcId)).toContain(`${NAMES['allowed.test']}/32`);
  expect(await dl.canConnect(NAMES['allowed.test'])).toBe(true);
});

test('a target that vanished while the daemon was down is unsubscribed with REMOVED on restart', async () => {
  await d.kill9();
  rmdirSync(cg.path);
  const from = cp.events.length;
  const sync = await restart();
  expect(sync.attachments.map((a) => a.id)).toEqual([tcId]);
  const un = await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === cgId, 5000, 'Unsubscribed', from);
  expect(un.msg.unsubscribed!.reason).toBe('UNSUBSCRIBE_REASON_REMOVED');
  expect((await d.api.listAll()).map((a) => a.id)).toEqual([tcId]);
  expect(pinnedIds(dl)).toEqual([tcId]);
  expect(savedIds(d)).toEqual([tcId]);
});
