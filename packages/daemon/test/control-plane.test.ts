// netfenced driven by a control plane written with @grpc/grpc-js (not our code): the
// netfence.v1 stream semantics (sync, subscribe/ack, commands, results), the ack timeout
// rollback, a control plane restart, and targets that disappear.

import { existsSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LabCgroup } from '@netfence/lab';
import {
  cgroupProgs,
  createDaemonLab,
  eventually,
  pinnedAllowV4,
  pinnedIds,
  portInUse,
  savedIds,
  startDaemon,
  startForwardedControlPlane,
  tcxProgIds,
  writeDaemonConfig,
  type DaemonLab,
  type DaemonProcess,
} from './support/daemon-lab';
import { eventsOf, grpc, type GrpcError, type PolicyMsg, type RecordedEvent, type TestControlPlane } from './support/grpc';

jest.setTimeout(60_000);

const ACK: PolicyMsg = { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] };

let dl: DaemonLab;
let cp: TestControlPlane;
let d: DaemonProcess;

beforeAll(async () => {
  dl = await createDaemonLab();
  const f = await startForwardedControlPlane(dl, 'grpcjs', { ackPolicy: () => ACK });
  cp = f.cp;
  d = await startDaemon(dl, writeDaemonConfig(dl, 'cp', { control_plane: { url: f.url, subscribe_ack_timeout: '1500ms', heartbeat_interval: '1s' } }));
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

let nonceSeq = 0;
/** Sends a command with a nonce and waits for its CommandResult. */
async function command(id: string, cmd: Record<string, unknown>) {
  const nonce = `n${++nonceSeq}`;
  const from = cp.events.length;
  cp.send({ id, nonce, ...cmd });
  const r = await cp.waitFor((e) => e.msg.event === 'command_result' && e.msg.command_result!.nonce === nonce, 5000, `result of ${nonce}`, from);
  return r.msg.command_result!;
}

interface DenyEventMsg {
  attachment_id: string;
  destination: string;
  port: number;
  protocol: number;
  reason: string;
  dry_run: boolean;
}

/** The events of a DaemonEvent.deny_events batch (the extension), as proto-loader decodes them. */
function denyEventsOf(e: RecordedEvent): DenyEventMsg[] {
  return (e.msg as unknown as { deny_events?: { events: DenyEventMsg[] } }).deny_events?.events ?? [];
}

async function listed(id: string) {
  return (await d.api.listAll()).find((a) => a.id === id);
}

/** What a rejected command must leave as it was: the kernel map, the listed modes, the traffic verdicts. */
async function snapshot(id: string): Promise<() => Promise<void>> {
  const mapBefore = pinnedAllowV4(dl, id).sort();
  const infoBefore = await listed(id);
  return async () => {
    expect(pinnedAllowV4(dl, id).sort()).toEqual(mapBefore);
    const infoAfter = await listed(id);
    expect(infoAfter?.mode).toBe(infoBefore?.mode);
    expect(infoAfter?.dns_mode).toBe(infoBefore?.dns_mode);
  };
}

test('the first message of the stream is a SyncRequest, answered with SyncAck', async () => {
  const first = await cp.waitFor((e) => e.stream === 1);
  expect(first.msg.event).toBe('sync');
  expect(first.msg.sync!.daemon_id).toMatch(/^nfd-/);
  expect(first.msg.sync!.attachments).toEqual([]);
  await eventually(async () => (await d.api.status()).control_plane_state === 'CONNECTION_STATE_CONNECTED', 'CONNECTED');
});

describe('a cgroup attachment driven by commands', () => {
  let cg: LabCgroup;
  let id: string;
  let dnsAddress: string;

  beforeAll(async () => {
    cg = dl.cgroup('cmd');
    const from = cp.events.length;
    const r = await d.api.attach({ cgroup_path: cg.path, metadata: { tenant: 'acme' } });
    id = r.id;
    dnsAddress = r.dns_address;
    const sub = await cp.waitFor((e) => e.msg.event === 'subscribed', 1000, 'Subscribed', from);
    expect(sub.msg.subscribed).toMatchObject({ id, target: cg.path, type: 'ATTACHMENT_TYPE_CGROUP', mode: 'POLICY_MODE_DISABLED', dns_address: dnsAddress, metadata: { tenant: 'acme' } });
  });

  test('Subscribed -> SubscribedAck was applied before Attach returned', async () => {
    expect((await listed(id))?.mode).toBe('POLICY_MODE_ALLOWLIST');
    expect(pinnedAllowV4(dl, id)).toEqual(['203.0.113.30/32']);
    expect(cgroupProgs(cg.path).length).toBeGreaterThanOrEqual(5);
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
  });

  test('AllowCIDR / RemoveCIDR with a nonce: applied, CommandResult ok', async () => {
    expect(await command(id, { allow_cidr: { cidr: '203.0.113.20/32' } })).toMatchObject({ ok: true, attachment_id: id, error_code: '' });
    expect(pinnedAllowV4(dl, id).sort()).toEqual(['203.0.113.20/32', '203.0.113.30/32']);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true);
    expect(await command(id, { remove_cidr: '203.0.113.20/32' })).toMatchObject({ ok: true });
    expect(pinnedAllowV4(dl, id)).toEqual(['203.0.113.30/32']);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
  });

  test('SetMode BLOCK_ALL / DENYLIST + DenyCIDR / back to ALLOWLIST', async () => {
    expect(await command(id, { set_mode: { mode: 'POLICY_MODE_BLOCK_ALL' } })).toMatchObject({ ok: true });
    expect((await listed(id))?.mode).toBe('POLICY_MODE_BLOCK_ALL');
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(false);
    expect(await command(id, { deny_cidr: { cidr: '203.0.113.40/32' } })).toMatchObject({ ok: true });
    expect(await command(id, { set_mode: { mode: 'POLICY_MODE_DENYLIST' } })).toMatchObject({ ok: true });
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(false);
    expect(await command(id, { remove_cidr: '203.0.113.40/32' })).toMatchObject({ ok: true });
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(true);
    expect(await command(id, { set_mode: { mode: 'POLICY_MODE_ALLOWLIST' } })).toMatchObject({ ok: true });
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(false);
  });

  test('SetDnsMode + AllowDomain / RemoveDomain reach the attachment DNS server', async () => {
    expect(await command(id, { set_dns_mode: { mode: 'DNS_MODE_ALLOWLIST' } })).toMatchObject({ ok: true });
    expect((await dl.dig(dnsAddress, 'allowed.test', { cgroup: cg })).status).toBe('REFUSED');
    expect(await command(id, { allow_domain: { domain: 'allowed.test', include_subdomains: true } })).toMatchObject({ ok: true });
    const r = await dl.dig(dnsAddress, 'www.allowed.test', { cgroup: cg });
    expect(r).toEqual({ status: 'NOERROR', answers: ['203.0.113.11'] });
    expect(pinnedAllowV4(dl, id)).toContain('203.0.113.11/32');
    expect(await command(id, { remove_domain: 'allowed.test' })).toMatchObject({ ok: true });
    expect((await dl.dig(dnsAddress, 'www.allowed.test', { cgroup: cg })).status).toBe('REFUSED');
    expect((await listed(id))?.dns_mode).toBe('DNS_MODE_ALLOWLIST');
  });

  test('an invalid command gets CommandResult ok=false with a code, and changes nothing', async () => {
    const expectUnchanged = await snapshot(id);
    const bad = await command(id, { allow_cidr: { cidr: '203.0.113.300/32' } });
    expect(bad.ok).toBe(false);
    expect(bad.error_code).toMatch(/^NETFENCE_ERR_/);
    expect(bad.error_message).not.toBe('');
    // BulkUpdate with one bad CIDR among good ones: nothing of it applies.
    const bulk = await command(id, {
      bulk_update: { mode: 'POLICY_MODE_DENYLIST', allow_cidrs: [{ cidr: '203.0.113.20/32' }, { cidr: 'not-a-cidr' }], deny_cidrs: [{ cidr: '203.0.113.30/32' }] },
    });
    expect(bulk.ok).toBe(false);
    expect(bulk.error_code).toMatch(/^NETFENCE_ERR_/);
    const badMode = await command(id, { set_mode: { mode: 'POLICY_MODE_UNSPECIFIED' } });
    expect(badMode.ok).toBe(false);
    await expectUnchanged();
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
  });

  test('AllowCIDR with a TTL: the entry leaves the kernel map when the TTL lapses', async () => {
    expect(await command(id, { allow_cidr: { cidr: '203.0.113.40/32', ttl: { seconds: 1, nanos: 0 } } })).toMatchObject({ ok: true });
    expect(pinnedAllowV4(dl, id)).toContain('203.0.113.40/32');
    await eventually(() => !pinnedAllowV4(dl, id).includes('203.0.113.40/32'), 'the TTL to lapse', 5000);
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(false);
    expect(pinnedAllowV4(dl, id)).toContain('203.0.113.30/32');
  });

  test('a drop is streamed to the control plane as a deny event (extension), with the attachment and destination', async () => {
    const from = cp.events.length;
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
    const ev = await cp.waitFor(
      (e) => e.msg.event === 'deny_events' && denyEventsOf(e).some((x) => x.attachment_id === id && x.destination === '203.0.113.20'),
      5000,
      'DenyEvents',
      from,
    );
    const drop = denyEventsOf(ev).find((x) => x.destination === '203.0.113.20')!;
    expect(drop).toMatchObject({ protocol: 6, dry_run: false });
    expect(drop.reason).toBe('not_allowed');
  });

  test('dry-run (extension): nothing is dropped, every would-be drop is reported; off again enforces', async () => {
    expect(await command(id, { set_dry_run: { dry_run: true } })).toMatchObject({ ok: true });
    expect((await listed(id))?.dry_run).toBe(true);
    const from = cp.events.length;
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true); // would be dropped: reported, not dropped
    const ev = await cp.waitFor(
      (e) => e.msg.event === 'deny_events' && denyEventsOf(e).some((x) => x.destination === '203.0.113.20' && x.dry_run),
      5000,
      'a dry-run DenyEvent',
      from,
    );
    expect(denyEventsOf(ev).find((x) => x.destination === '203.0.113.20')).toMatchObject({ attachment_id: id, dry_run: true });
    expect(await command(id, { set_dry_run: { dry_run: false } })).toMatchObject({ ok: true });
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
  });

  test('a BulkUpdate larger than the allow map: MAP_FULL reported to the control plane, kernel and state unchanged', async () => {
    const expectUnchanged = await snapshot(id);
    // 65,537 distinct /32s in 10.200.0.0/16 and beyond: one more than the default 65,536 entries.
    const allow = Array.from({ length: 65_537 }, (_, i) => ({ cidr: `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32` }));
    const r = await command(id, { bulk_update: { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: allow } });
    expect(r.ok).toBe(false);
    expect(r.error_code).toBe('NETFENCE_ERR_MAP_FULL');
    await expectUnchanged();
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
  }, 60_000);

  test('a command for an unknown id does not break the stream', async () => {
    const streamsBefore = new Set(cp.events.map((e) => e.stream)).size;
    cp.send({ id: 'att-000000000000', allow_cidr: { cidr: '203.0.113.20/32' } });
    const unknown = await command('att-000000000000', { set_mode: { mode: 'POLICY_MODE_BLOCK_ALL' } });
    expect(unknown.ok).toBe(false);
    expect(unknown.error_code).toBe('NETFENCE_ERR_NOT_FOUND');
    // The same stream still carries commands for known ids.
    const ok = await command(id, { allow_cidr: { cidr: '203.0.113.40/32' } });
    expect(ok.ok).toBe(true);
    expect(new Set(cp.events.map((e) => e.stream)).size).toBe(streamsBefore);
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(true);
  });

  test('BulkUpdate replaces the whole state (missing dns = DNS disabled)', async () => {
    expect(await command(id, { bulk_update: { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.20/32' }] } })).toMatchObject({ ok: true });
    expect(pinnedAllowV4(dl, id)).toEqual(['203.0.113.20/32']);
    const info = await listed(id);
    expect(info).toMatchObject({ mode: 'POLICY_MODE_ALLOWLIST', dns_mode: 'DNS_MODE_DISABLED' });
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(false);
  });

  test('heartbeats carry counters for the attachment', async () => {
    const hb = await cp.waitFor((e) => e.msg.event === 'heartbeat' && e.msg.heartbeat!.stats.some((s) => s.id === id), 5000, 'Heartbeat');
    const stats = hb.msg.heartbeat!.stats.find((s) => s.id === id) as unknown as { packets_allowed: string; packets_blocked: string };
    expect(Number(stats.packets_allowed) + Number(stats.packets_blocked)).toBeGreaterThan(0);
  });

  test('control plane restart: the daemon reconnects with a SyncRequest listing the attachment; filters enforce meanwhile', async () => {
    cp.bulkOnSync.set(id, { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.20/32' }, { cidr: '203.0.113.40/32' }] });
    const streamsBefore = Math.max(...cp.events.map((e) => e.stream));
    await cp.stop();
    await eventually(async () => (await d.api.status()).control_plane_state !== 'CONNECTION_STATE_CONNECTED', 'the daemon to notice');
    // Down: the last state keeps enforcing.
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(false);
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(false);
    const from = cp.events.length;
    await cp.start();
    const sync = await cp.waitFor((e) => e.stream > streamsBefore, 15_000, 'a new stream', from);
    expect(sync.msg.event).toBe('sync');
    expect(sync.msg.sync!.attachments.map((a) => a.id)).toContain(id);
    expect(sync.msg.sync!.attachments.find((a) => a.id === id)).toMatchObject({ type: 'ATTACHMENT_TYPE_CGROUP', mode: 'POLICY_MODE_ALLOWLIST', target: cg.path });
    // The BulkUpdate sent after SyncAck is applied.
    await eventually(() => pinnedAllowV4(dl, id).includes('203.0.113.40/32'), 'the BulkUpdate after the resync');
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(true);
    await eventually(async () => (await d.api.status()).control_plane_state === 'CONNECTION_STATE_CONNECTED', 'CONNECTED');
    cp.bulkOnSync.delete(id);
  });

  test('cgroup removal: the daemon unsubscribes with REMOVED and forgets the attachment', async () => {
    const from = cp.events.length;
    rmdirSync(cg.path);
    const un = await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === id, 5000, 'Unsubscribed', from);
    expect(un.msg.unsubscribed!.reason).toBe('UNSUBSCRIBE_REASON_REMOVED');
    expect(await listed(id)).toBeUndefined();
    expect(pinnedIds(dl)).not.toContain(id);
    expect(savedIds(d)).not.toContain(id);
  });
});

test('interface removal: the daemon unsubscribes with REMOVED and forgets the attachment', async () => {
  const v = dl.extraVeth();
  const { id } = await d.api.attach({ interface_name: v.a });
  expect(tcxProgIds(dl.host, v.a)).toHaveLength(1);
  const from = cp.events.length;
  dl.host.exec('ip', ['link', 'del', v.a]);
  const un = await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === id, 5000, 'Unsubscribed', from);
  expect(un.msg.unsubscribed!.reason).toBe('UNSUBSCRIBE_REASON_REMOVED');
  expect(await listed(id)).toBeUndefined();
  await eventually(() => !pinnedIds(dl).includes(id), 'pins removed');
  expect(savedIds(d)).not.toContain(id);
});

test('Detach sends Unsubscribed DETACHED and removes the kernel objects', async () => {
  const cg = dl.cgroup('det');
  const { id } = await d.api.attach({ cgroup_path: cg.path });
  expect(cgroupProgs(cg.path).length).toBeGreaterThan(0);
  const from = cp.events.length;
  await d.api.detach(id);
  const un = await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === id, 5000, 'Unsubscribed', from);
  expect(un.msg.unsubscribed!.reason).toBe('UNSUBSCRIBE_REASON_DETACHED');
  expect(cgroupProgs(cg.path)).toEqual([]);
  expect(pinnedIds(dl)).not.toContain(id);
});

describe('no SubscribedAck within subscribe_ack_timeout: DEADLINE_EXCEEDED and a complete rollback', () => {
  afterEach(() => {
    cp.ackMode = 'auto';
  });

  async function attachWithoutAck(target: { interface_name?: string; cgroup_path?: string }) {
    cp.ackMode = 'never';
    const from = cp.events.length;
    const t0 = Date.now();
    let err: GrpcError | undefined;
    try {
      await d.api.attach(target);
    } catch (e) {
      err = e as GrpcError;
    }
    const elapsed = Date.now() - t0;
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(5000);
    const sub = eventsOf(cp, 'subscribed').filter((e) => cp.events.indexOf(e) >= from);
    expect(sub).toHaveLength(1);
    return sub[0]! as RecordedEvent;
  }

  function assertNothingLeft(id: string, dnsAddress: string) {
    expect(pinnedIds(dl)).not.toContain(id);
    expect(existsSync(join(dl.bpffsRoot, id))).toBe(false);
    expect(savedIds(d)).not.toContain(id);
    expect(portInUse(dl.host, Number(dnsAddress.split(':')[1]))).toBe(false);
  }

  test('TC: no pins, no record, DNS port released, no filter on the interface, traffic unaffected', async () => {
    const sub = await attachWithoutAck({ interface_name: dl.wlVeth.a });
    const { id, dns_address } = sub.msg.subscribed!;
    assertNothingLeft(id, dns_address);
    expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
    expect(await listed(id)).toBeUndefined();
    expect(await dl.canConnect('203.0.113.20')).toBe(true);
    // The control plane is told the subscription is off.
    await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === id, 3000, 'Unsubscribed');
    // The same target attaches fine afterwards.
    cp.ackMode = 'auto';
    const ok = await d.api.attach({ interface_name: dl.wlVeth.a });
    expect(tcxProgIds(dl.host, dl.wlVeth.a)).toHaveLength(1);
    await d.api.detach(ok.id);
    expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
  });

  test('cgroup: no pins, no record, DNS port released, no programs on the cgroup, traffic unaffected', async () => {
    const cg = dl.cgroup('noack');
    const sub = await attachWithoutAck({ cgroup_path: cg.path });
    const { id, dns_address } = sub.msg.subscribed!;
    assertNothingLeft(id, dns_address);
    expect(cgroupProgs(cg.path)).toEqual([]);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(true);
  });
});
