// Layout v1 -> the host-wide program set, with traffic running. Layout-v1 attachments are made
// with the fixture objects exactly as the old daemon made them (test/support/layout-v1-pins.ts):
// one TC (TCX ingress on the workload veth) and one cgroup attachment, each allowing
// 203.0.113.0/24 but denying 203.0.113.20. While UDP flows from the workload (TC) and from a
// process in the cgroup to an allowed and a denied address, (1) a datapath re-opens them in
// this process, (2) the built netfenced starts on saved records and migrates them: no datagram
// to the denied address arrives, none to the allowed one is lost or refused, the v1 pins and
// programs are gone, and the new slot holds an exact copy (config, both lists, last-seen times,
// deadlines, the DNS limit with its bucket, the counters).

import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createArrayMap, createPerCpuArrayMap, numPossibleCpus, openPinnedMap, withNetns } from '@netfence/bpf-loader';
import { CODECS, STATS, decodeDnsLimit, type AttachmentConfig } from '@netfence/bpf-programs';
import { applyCommand, emptyState, type PolicyCommand } from '@netfence/policy-engine';
import type { LabCgroup } from '@netfence/lab';
import { createBpfDatapath } from '../src/bpf-datapath';
import type { BpfAttachment } from '../src/bpf-attachment';
import { openRuleTries, readRules, closeRuleTries } from '../src/slot-state';
import { createStateStore, type AttachmentRecord } from '../src/state-store';
import { cgroupProgs, createDaemonLab, HOST_ADDR, sleep, startDaemon, startForwardedControlPlane, tcxProgIds, writeDaemonConfig, type DaemonLab } from './support/daemon-lab';
import { pinV1Cgroup, pinV1Tc, type V1State } from './support/layout-v1-pins';
import { sendUdpStream, startUdpSink, type SendCounts, type SinkCounts } from './support/udp-traffic';

jest.setTimeout(120_000);

const ALLOWED = '203.0.113.10';
const DENIED = '203.0.113.20';
const TRAFFIC_SECS = 6;
const DNS_LIMIT = { rateQps: 1000, burst: 2000 };

let dl: DaemonLab;
beforeAll(async () => {
  dl = await createDaemonLab();
});
afterAll(async () => {
  await dl?.close();
});

/** A v1 state: allowlist, 203.0.113.0/24 allowed but .20 denied, an untouched entry with a last-seen time, one with a deadline, IPv6 too. */
function v1State(attachmentId: number, nowS: number, lastSeenNs: bigint): V1State {
  const config: AttachmentConfig = { mode: 'ALLOWLIST', attachmentId, dnsServer: { v4: HOST_ADDR, port: 11999 } };
  return {
    config,
    allow: [
      { cidr: '203.0.113.0/24' },
      { cidr: '203.0.113.30/32', lastSeenNs }, // no traffic goes there: its time must come over as it is
      { cidr: '203.0.113.40/32', expiresS: nowS + 3600 },
      { cidr: '2001:db8::/32', expiresS: nowS + 7200 },
    ],
    deny: [`${DENIED}/32`, '2001:db8::bad/128'],
    dnsLimit: { ...DNS_LIMIT, tatNs: 123_456_789n },
    stats: { [STATS.SEVERED]: 7n },
  };
}

/** Both streams at once (TC from the workload namespace, cgroup from a process in it), counted at the sink. */
async function runTraffic(cg: LabCgroup, during: () => Promise<void>): Promise<{ sink: SinkCounts; tc: SendCounts; cgroup: SendCounts }> {
  const sink = await startUdpSink(dl, [ALLOWED, DENIED], TRAFFIC_SECS + 4);
  const tc = sendUdpStream(dl, { ns: dl.wl }, 'tc', [ALLOWED, DENIED], TRAFFIC_SECS);
  const cgroup = sendUdpStream(dl, { ns: dl.host, cgroup: cg }, 'cg', [ALLOWED, DENIED], TRAFFIC_SECS);
  await sleep(1500);
  await during();
  return { tc: await tc, cgroup: await cgroup, sink: await sink.counts };
}

/** No datagram to the denied address got through; every one to the allowed address was sent and arrived. */
function expectNoWrongVerdict(r: { sink: SinkCounts; tc: SendCounts; cgroup: SendCounts }): void {
  process.stderr.write(`[migration] traffic: ${JSON.stringify(r)}\n`);
  for (const tag of ['tc', 'cg'] as const) {
    const sent = tag === 'tc' ? r.tc : r.cgroup;
    expect(sent[ALLOWED]!.sent).toBeGreaterThan(500);
    expect([tag, 'allowed refused', sent[ALLOWED]!.failed]).toEqual([tag, 'allowed refused', 0]);
    expect([tag, 'allowed lost', sent[ALLOWED]!.sent - (r.sink[`${tag}@${ALLOWED}`] ?? 0)]).toEqual([tag, 'allowed lost', 0]);
    expect([tag, 'denied delivered', r.sink[`${tag}@${DENIED}`] ?? 0]).toEqual([tag, 'denied delivered', 0]);
  }
  expect(r.cgroup[DENIED]!.failed).toBe(r.cgroup[DENIED]!.sent + r.cgroup[DENIED]!.failed); // every send refused at the socket
}

const V1_PINS = ['nf_config', 'allow_v4', 'allow_v6', 'deny_v4', 'deny_v6', 'stats', 'dns_limit', 'sever_cfg'];

function expectOnlyNewPins(root: string, id: string): void {
  const left = readdirSync(join(root, id)).filter((n) => V1_PINS.includes(n));
  expect([id, left]).toEqual([id, []]);
  expect(existsSync(join(root, `${id}_aside`))).toBe(false);
}

test('a datapath re-opening layout-v1 pins moves them to slots with an exact copy of their state, traffic judged right throughout', async () => {
  const root = dl.bpffsRoot;
  const cg = dl.cgroup('mig-a');
  const nowS = Number(process.hrtime.bigint() / 1_000_000_000n);
  const seen = process.hrtime.bigint() - 30_000_000_000n;
  const states = { tc: v1State(41, nowS, seen), cg: v1State(42, nowS, seen) };
  // The TC target lives in the lab's host namespace: ifindex and TCX links are made there.
  const inHost = <T>(fn: () => T): T => withNetns(dl.host.path, fn);
  const ifindex = dl.host.ifindex(dl.wlVeth.a);
  const v1TcProg = inHost(() => pinV1Tc(root, 'att-v1tc', { ifindex, direction: 'ingress' }, states.tc));
  const v1CgProgs = pinV1Cgroup(root, 'att-v1cg', cg.path, states.cg);
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([v1TcProg]);

  const dp = createBpfDatapath({ root, mapSizes: { allow: 64, deny: 64, ringbufBytes: 4096 }, dnsRateLimit: DNS_LIMIT, onEvent: () => undefined, logger: pino({ level: 'silent' }) });
  const atts: BpfAttachment[] = [];
  try {
    const traffic = await runTraffic(cg, async () => {
      atts.push(inHost(() => dp.reopen({ kind: 'tc', id: 'att-v1tc', numericId: 41, ifindex, direction: 'ingress', l3: false }) as BpfAttachment));
      atts.push(dp.reopen({ kind: 'cgroup', id: 'att-v1cg', numericId: 42, cgroupPath: cg.path }) as BpfAttachment);
    });
    expectNoWrongVerdict(traffic);

    // v1 pins, programs and the v1 ring are gone; the host programs hold the hooks.
    for (const id of ['att-v1tc', 'att-v1cg']) expectOnlyNewPins(root, id);
    expect(existsSync(join(root, 'events'))).toBe(false);
    const tcNow = tcxProgIds(dl.host, dl.wlVeth.a);
    expect(tcNow).toHaveLength(1);
    expect(tcNow).not.toEqual([v1TcProg]);
    const cgNow = cgroupProgs(cg.path);
    expect(cgNow).toHaveLength(9);
    expect(cgNow.filter((p) => v1CgProgs.includes((p as unknown as { id: number }).id))).toEqual([]);

    // The new slots hold exact copies.
    const config = openPinnedMap(join(root, '_host', 'nf_config'));
    const limits = openPinnedMap(join(root, '_host', 'dns_limit'));
    const stats = openPinnedMap(join(root, '_host', 'stats'));
    try {
      for (const [a, s] of [[atts[0]!, states.tc], [atts[1]!, states.cg]] as const) {
        const slot = a.place.slot;
        const got = createArrayMap(config, CODECS.config).get(slot);
        expect(got).toMatchObject({ ...s.config, active: true, dryRun: false, dnsFilter: false });
        const key = Buffer.alloc(4);
        key.writeUInt32LE(slot, 0);
        const lim = limits.lookup(key)!;
        expect(decodeDnsLimit(lim)).toEqual(DNS_LIMIT);
        expect(lim.readBigUInt64LE(16)).toBe(123_456_789n); // the bucket came along (no DNS traffic moved it)
        expect(a.counters().allowed).toBeGreaterThan(0n);
        expect(createPerCpuArrayMap(stats, CODECS.stats).getSummed(slot)[STATS.SEVERED]).toBe(7n * BigInt(numPossibleCpus()));
        const tries = openRuleTries(a.place.dir);
        try {
          const rules = new Map(readRules(tries).map((r) => [r.cidr.text, r]));
          expect([...rules.keys()].sort()).toEqual(['2001:db8::/32', '2001:db8::bad/128', '203.0.113.0/24', '203.0.113.20/32', '203.0.113.30/32', '203.0.113.40/32']);
          expect(rules.get('203.0.113.30/32')).toMatchObject({ allow: true, deny: false, lastSeenNs: seen, expiresS: 0 });
          expect(rules.get('203.0.113.40/32')).toMatchObject({ allow: true, deny: false, expiresS: nowS + 3600, shadowDenyLen: undefined });
          expect(rules.get('2001:db8::/32')).toMatchObject({ allow: true, expiresS: nowS + 7200 });
          expect(rules.get('203.0.113.20/32')).toMatchObject({ allow: false, deny: true });
          expect(rules.get('203.0.113.0/24')!.lastSeenNs).toBeGreaterThan(seen); // the traffic stamped it
        } finally {
          closeRuleTries(tries);
        }
        expect(a.readView()).toEqual({ mode: 'allowlist', dryRun: false, allow: new Set(s.allow.map((x) => x.cidr)), deny: new Set(s.deny) });
      }
    } finally {
      config.close();
      limits.close();
      stats.close();
    }
  } finally {
    for (const a of atts) a.destroy();
    await dp.close();
  }
  expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
  expect(cgroupProgs(cg.path)).toEqual([]);
});

/** The record the old daemon would have saved for a v1 attachment with this policy. */
function record(id: string, numericId: number, t: { kind: 'tc'; ifindex: number; target: string } | { kind: 'cgroup'; target: string; cgroupId: string }, dnsPort: number): AttachmentRecord {
  const cmds: PolicyCommand[] = [{ type: 'setMode', mode: 'allowlist' }, { type: 'allowCidr', entry: { cidr: '203.0.113.0/24' } }, { type: 'denyCidr', entry: { cidr: `${DENIED}/32` } }];
  const policy = cmds.reduce((s, c) => applyCommand(s, c, Date.now()), emptyState());
  return {
    version: 1,
    id,
    numericId,
    kind: t.kind,
    target: t.target,
    identity: t.kind === 'tc' ? { ifindex: t.ifindex } : { cgroupId: t.cgroupId },
    ...(t.kind === 'tc' ? { tcDirection: 'ingress' as const, l3: false } : {}),
    metadata: { k: id },
    dnsAddress: `${HOST_ADDR}:${dnsPort}`,
    attachedAt: new Date().toISOString(),
    policy,
  };
}

test('netfenced starting on layout-v1 pins and their records migrates them while traffic runs, and manages them afterwards', async () => {
  const root = `${dl.bpffsRoot}-b`;
  dl.lab.defer(() => rmSync(root, { recursive: true, force: true }));
  const cg = dl.cgroup('mig-b');
  const state: V1State = { config: { mode: 'ALLOWLIST', attachmentId: 0 }, allow: [{ cidr: '203.0.113.0/24' }], deny: [`${DENIED}/32`], dnsLimit: DNS_LIMIT };
  const ifindex = dl.host.ifindex(dl.wlVeth.a);
  withNetns(dl.host.path, () => pinV1Tc(root, 'att-b1tc', { ifindex, direction: 'ingress' }, { ...state, config: { ...state.config, attachmentId: 1 } }));
  pinV1Cgroup(root, 'att-b1cg', cg.path, { ...state, config: { ...state.config, attachmentId: 2 } });
  const { url } = await startForwardedControlPlane(dl, 'mig');
  const cfgPath = writeDaemonConfig(dl, 'mig', { bpffs_root: root, control_plane: { url }, dns: { rate_limit_qps: DNS_LIMIT.rateQps, rate_limit_burst: DNS_LIMIT.burst } });
  const dataDir = (JSON.parse(readFileSync(cfgPath, 'utf8')) as { data_dir: string }).data_dir;
  const store = createStateStore(dataDir, undefined);
  store.save(record('att-b1tc', 1, { kind: 'tc', ifindex, target: dl.wlVeth.a }, 11990));
  store.save(record('att-b1cg', 2, { kind: 'cgroup', target: cg.path, cgroupId: String(statSync(cg.path, { bigint: true }).ino) }, 11991));

  let d: Awaited<ReturnType<typeof startDaemon>> | undefined;
  try {
    const traffic = await runTraffic(cg, async () => {
      d = await startDaemon(dl, cfgPath);
    });
    expectNoWrongVerdict(traffic);
    expect(d!.logTail(200)).toMatch(/migrated a layout-v1 attachment/);
    for (const id of ['att-b1tc', 'att-b1cg']) expectOnlyNewPins(root, id);
    expect(existsSync(join(root, 'events'))).toBe(false);
    const listed = await d!.api.listAll();
    expect(listed.map((a) => [a.id, a.mode]).sort()).toEqual([
      ['att-b1cg', 'POLICY_MODE_ALLOWLIST'],
      ['att-b1tc', 'POLICY_MODE_ALLOWLIST'],
    ]);
    // Managed: detach removes the filter.
    for (const id of ['att-b1tc', 'att-b1cg']) await d!.api.detach(id);
    expect(tcxProgIds(dl.host, dl.wlVeth.a)).toEqual([]);
    expect(cgroupProgs(cg.path)).toEqual([]);
  } finally {
    await d?.stop();
  }
});
