// Behaviour against an in-memory router transport (createRouterTransport).
import { Code, ConnectError } from '@connectrpc/connect';
import { PolicyMode, UnsubscribeReason } from '@netfence/proto';
import type { ControlCommand, DaemonEvent } from '@netfence/proto';
import { FakeControlPlane, sleep, waitUntil } from '../test/fake-control-plane';
import { ControlPlaneClientError, createControlPlaneClient } from './index';
import type { ControlPlaneClient, ControlPlaneClientOptions, ControlPlaneConnectionState, StateChangeInfo } from './index';

const clients: ControlPlaneClient[] = [];
const planes: FakeControlPlane[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const p of planes.splice(0)) p.dispose();
});

interface Harness {
  cp: FakeControlPlane;
  client: ControlPlaneClient;
  received: ControlCommand[];
  states: { state: ControlPlaneConnectionState; info: StateChangeInfo }[];
  attachments: { id: string; target: string }[];
}

function setup(over: Partial<ControlPlaneClientOptions> = {}, cp = new FakeControlPlane()): Harness {
  planes.push(cp);
  const received: ControlCommand[] = [];
  const states: Harness['states'] = [];
  const attachments: { id: string; target: string }[] = [];
  const client = createControlPlaneClient({
    url: 'http://in-memory',
    daemonId: 'd-1',
    hostname: 'host-1',
    metadata: { zone: 'z1' },
    syncState: () => ({ attachments: attachments.map((a) => ({ ...a })) }),
    onCommand: async (cmd) => {
      received.push(cmd);
    },
    heartbeatIntervalMs: 0,
    subscribeAckTimeoutMs: 500,
    backoff: { initialMs: 5, maxMs: 40, jitter: false },
    closeTimeoutMs: 300,
    transport: cp.transport(),
    onStateChange: (state, info) => states.push({ state, info }),
    ...over,
  });
  clients.push(client);
  return { cp, client, received, states, attachments };
}

const isCase = (e: DaemonEvent | undefined, c: string): boolean => e?.event.case === c;

describe('createControlPlaneClient (router transport)', () => {
  test('first message is a SyncRequest; state goes connecting -> connected', async () => {
    const h = setup();
    h.attachments.push({ id: 'a1', target: 'veth0' });
    const s = await h.cp.waitForStream(1);
    await s.waitForEvents(1);
    const first = s.events[0];
    expect(first?.event.case).toBe('sync');
    if (first?.event.case !== 'sync') throw new Error('unreachable');
    expect(first.event.value.daemonId).toBe('d-1');
    expect(first.event.value.hostname).toBe('host-1');
    expect(first.event.value.metadata).toEqual({ zone: 'z1' });
    expect(first.event.value.attachments.map((a) => a.id)).toEqual(['a1']);
    await waitUntil(() => h.client.state === 'connected');
    expect(h.states.map((x) => x.state)).toEqual(['connecting', 'connected']);
    // The SyncAck is delivered to the handler like any command.
    await waitUntil(() => h.received.length === 1);
    expect(h.received[0]?.command.case).toBe('syncAck');
  });

  test('subscribe resolves with the SubscribedAck, which does not reach onCommand', async () => {
    const h = setup();
    const cmd = await h.client.subscribe({ id: 'a1', target: 'veth0', dnsAddress: '10.200.0.1:53', metadata: { k: 'v' } });
    expect(cmd.id).toBe('a1');
    expect(cmd.command.case).toBe('subscribedAck');
    const s = h.cp.last;
    expect(s.cases()).toEqual(['sync', 'subscribed']);
    const sub = s.events[1];
    if (sub?.event.case !== 'subscribed') throw new Error('expected subscribed');
    expect(sub.event.value.dnsAddress).toBe('10.200.0.1:53');
    expect(sub.event.value.metadata).toEqual({ k: 'v' });
    await sleep(20);
    expect(h.received.map((c) => c.command.case)).toEqual(['syncAck']);
  });

  test('slow ack (before the timeout) resolves', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => 150;
    const h = setup({ subscribeAckTimeoutMs: 400 }, cp);
    const t0 = Date.now();
    const cmd = await h.client.subscribe({ id: 'slow' });
    expect(cmd.id).toBe('slow');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  test('ack never sent: rejects NETFENCE_ERR_ACK_TIMEOUT at the timeout; a late ack goes to onCommand', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => false;
    const h = setup({ subscribeAckTimeoutMs: 120 }, cp);
    const t0 = Date.now();
    const err = await h.client.subscribe({ id: 'never' }).catch((e: unknown) => e);
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(ControlPlaneClientError);
    expect((err as ControlPlaneClientError).code).toBe('NETFENCE_ERR_ACK_TIMEOUT');
    expect(took).toBeGreaterThanOrEqual(110);
    expect(took).toBeLessThan(400);
    expect(h.client.stats().subscribesPending).toBe(0);
    // Nobody waits any more: the ack is a plain command for the daemon to judge.
    h.cp.last.send({ id: 'never', command: { case: 'subscribedAck', value: {} } });
    await waitUntil(() => h.received.some((c) => c.command.case === 'subscribedAck'));
  });

  test('subscribe while the control plane is unreachable waits within the same timeout', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    const h = setup({ subscribeAckTimeoutMs: 300 }, cp);
    const p = h.client.subscribe({ id: 'w1' });
    await sleep(80);
    cp.down = false;
    const cmd = await p;
    expect(cmd.id).toBe('w1');
    expect(h.cp.last.cases().slice(0, 2)).toEqual(['sync', 'subscribed']);

    cp.down = true;
    h.cp.endAll();
    const t0 = Date.now();
    const err = await h.client.subscribe({ id: 'w2' }).catch((e: unknown) => e);
    expect((err as ControlPlaneClientError).code).toBe('NETFENCE_ERR_ACK_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    // The withdrawn Subscribed is not sent on the next stream.
    cp.down = false;
    const n = cp.streams.length;
    await cp.waitForStream(n + 1);
    await sleep(30);
    expect(cp.last.cases()).toEqual(['sync']);
  });

  test('duplicate subscribe for a pending id is refused; empty id is refused', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => 100;
    const h = setup({}, cp);
    const p1 = h.client.subscribe({ id: 'dup' });
    await expect(h.client.subscribe({ id: 'dup' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_ALREADY_PENDING' });
    await expect(h.client.subscribe({ id: '' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_INVALID_ARGUMENT' });
    await expect(p1).resolves.toMatchObject({ id: 'dup' });
  });

  test('applyAck runs in command order and its outcome is the CommandResult', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => false;
    const order: string[] = [];
    const h = setup(
      {
        onCommand: async (cmd) => {
          await sleep(15);
          order.push(`cmd:${cmd.command.case}:${cmd.id}`);
        },
      },
      cp,
    );
    const s = await cp.waitForStream(1);
    const p = h.client.subscribe(
      { id: 'a1' },
      {
        applyAck: async (cmd) => {
          await sleep(5);
          order.push(`ack:${cmd.id}`);
        },
      },
    );
    await waitUntil(() => s.cases().includes('subscribed'));
    s.send({ id: 'other', command: { case: 'setMode', value: { mode: PolicyMode.BLOCK_ALL } } });
    s.send({ id: 'a1', nonce: 'n-ack', command: { case: 'subscribedAck', value: { mode: PolicyMode.ALLOWLIST } } });
    s.send({ id: 'a1', command: { case: 'allowCidr', value: { cidr: '10.200.0.0/24' } } });
    await p;
    expect(order.slice(0, 2)).toEqual(['cmd:syncAck:', 'cmd:setMode:other']);
    expect(order[2]).toBe('ack:a1');
    await waitUntil(() => order.length === 4);
    expect(order[3]).toBe('cmd:allowCidr:a1');
    await waitUntil(() => s.cases().includes('commandResult'));
    const res = s.events.find((e) => e.event.case === 'commandResult');
    if (res?.event.case !== 'commandResult') throw new Error('no result');
    expect(res.event.value).toMatchObject({ nonce: 'n-ack', attachmentId: 'a1', ok: true });

    // applyAck failure: subscribe rejects with that error, the result carries its code.
    const p2 = h.client.subscribe(
      { id: 'a2' },
      {
        applyAck: () => {
          throw Object.assign(new Error('bad cidr'), { code: 'NETFENCE_ERR_INVALID_CIDR' });
        },
      },
    );
    await waitUntil(() => s.cases().filter((c) => c === 'subscribed').length === 2);
    s.send({ id: 'a2', nonce: 'n2', command: { case: 'subscribedAck', value: {} } });
    await expect(p2).rejects.toMatchObject({ code: 'NETFENCE_ERR_INVALID_CIDR' });
    await waitUntil(() => s.cases().filter((c) => c === 'commandResult').length === 2);
    const res2 = s.events.filter((e) => e.event.case === 'commandResult')[1];
    if (res2?.event.case !== 'commandResult') throw new Error('no result');
    expect(res2.event.value).toMatchObject({ nonce: 'n2', ok: false, errorCode: 'NETFENCE_ERR_INVALID_CIDR', errorMessage: 'bad cidr' });
  });

  test('commands are delivered in order, one at a time; nonce -> CommandResult ok/error', async () => {
    let running = 0;
    let maxRunning = 0;
    const seen: string[] = [];
    const h = setup({
      onCommand: async (cmd) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(cmd.id === 'slow' ? 30 : 1);
        running--;
        seen.push(cmd.id);
        if (cmd.id === 'bad') throw Object.assign(new Error('invalid cidr 300.0.0.0/8'), { code: 'NETFENCE_ERR_INVALID_CIDR' });
        if (cmd.id === 'plain-fail') throw new Error('boom');
      },
    });
    const s = await h.cp.waitForStream(1);
    await waitUntil(() => h.client.state === 'connected');
    s.send({ id: 'slow', nonce: 'n1', command: { case: 'setMode', value: { mode: PolicyMode.ALLOWLIST } } });
    s.send({ id: 'fast', command: { case: 'removeCidr', value: '10.200.0.0/24' } });
    s.send({ id: 'bad', nonce: 'n2', command: { case: 'allowCidr', value: { cidr: '300.0.0.0/8' } } });
    s.send({ id: 'plain-fail', nonce: 'n3', command: { case: 'removeDomain', value: 'x.test' } });
    s.send({ id: 'unknown-id', command: { case: 'setDryRun', value: { dryRun: true } } });
    await waitUntil(() => seen.length === 6);
    expect(seen).toEqual(['', 'slow', 'fast', 'bad', 'plain-fail', 'unknown-id']);
    expect(maxRunning).toBe(1);
    await waitUntil(() => s.cases().filter((c) => c === 'commandResult').length === 3);
    const results = s.events.flatMap((e) => (e.event.case === 'commandResult' ? [e.event.value] : []));
    expect(results.map((r) => [r.nonce, r.attachmentId, r.ok, r.errorCode])).toEqual([
      ['n1', 'slow', true, ''],
      ['n2', 'bad', false, 'NETFENCE_ERR_INVALID_CIDR'],
      ['n3', 'plain-fail', false, 'NETFENCE_ERR_COMMAND_FAILED'],
    ]);
    // A failing handler or an unknown id does not break the stream.
    expect(h.client.state).toBe('connected');
    expect(h.cp.streams.length).toBe(1);
  });

  test('unsubscribe withdraws a waiting subscribe: it rejects NETFENCE_ERR_UNSUBSCRIBED, is not re-sent after a reconnect, and its late ack goes to onCommand', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => false;
    const h = setup({ subscribeAckTimeoutMs: 1000 }, cp);
    const s1 = await cp.waitForStream(1);
    const p = h.client.subscribe({ id: 'w1', target: 'veth1' }).catch((e: unknown) => e);
    await waitUntil(() => s1.cases().includes('subscribed'));
    h.client.unsubscribe('w1', UnsubscribeReason.REMOVED);
    const err = await p;
    expect((err as ControlPlaneClientError).code).toBe('NETFENCE_ERR_UNSUBSCRIBED');
    expect(h.client.stats().subscribesPending).toBe(0);
    await waitUntil(() => s1.cases().includes('unsubscribed'));
    s1.end();
    const s2 = await cp.waitForStream(2);
    await s2.waitForEvents(1);
    await sleep(20);
    expect(s2.cases()).toEqual(['sync']); // no Subscribed after its Unsubscribed
    s2.send({ id: 'w1', command: { case: 'subscribedAck', value: {} } });
    await waitUntil(() => h.received.some((c) => c.id === 'w1' && c.command.case === 'subscribedAck'));
  });

  test('stream ended by the server: reconnect, fresh SyncRequest first, pending Subscribed re-sent after it', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => false;
    const h = setup({ subscribeAckTimeoutMs: 1000 }, cp);
    h.attachments.push({ id: 'a0', target: 'veth0' });
    const s1 = await cp.waitForStream(1);
    const p = h.client.subscribe({ id: 'a1', target: 'veth1' });
    await waitUntil(() => s1.cases().includes('subscribed'));
    h.attachments.push({ id: 'a1', target: 'veth1' });
    h.client.unsubscribe('gone', UnsubscribeReason.REMOVED);
    await waitUntil(() => s1.cases().includes('unsubscribed'));
    s1.end();
    const s2 = await cp.waitForStream(2);
    await s2.waitForEvents(2);
    expect(s2.cases()).toEqual(['sync', 'subscribed']);
    const sync = s2.events[0];
    if (sync?.event.case !== 'sync') throw new Error('no sync');
    expect(sync.event.value.attachments.map((a) => a.id)).toEqual(['a0', 'a1']);
    s2.send({ id: 'a1', command: { case: 'subscribedAck', value: {} } });
    await expect(p).resolves.toMatchObject({ id: 'a1' });
    expect(h.states.map((x) => x.state)).toEqual(['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
    expect(h.states[2]?.info.error?.code).toBe('NETFENCE_ERR_UNAVAILABLE');
    // Sent (and possibly lost) Unsubscribed is not repeated: the SyncRequest supersedes it.
    await sleep(20);
    expect(s2.cases().includes('unsubscribed')).toBe(false);
  });

  test('messages while disconnected are queued and go out after the SyncRequest, in order; heartbeats coalesce', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    let hb = 0;
    const h = setup(
      {
        heartbeatStats: () => {
          hb++;
          return [{ id: 'a1', packetsAllowed: BigInt(hb), packetsBlocked: 2n }];
        },
        queue: { denyFlushMs: 10 },
      },
      cp,
    );
    await waitUntil(() => h.states.some((x) => x.state === 'disconnected'));
    h.client.unsubscribe('u1', UnsubscribeReason.DETACHED);
    h.client.sendHeartbeat();
    const sub = h.client.subscribe({ id: 's1' });
    h.client.sendHeartbeat();
    h.client.unsubscribe('u2', UnsubscribeReason.ERROR, 'target vanished');
    h.client.sendDenyEvents([{ attachmentId: 's1', destination: '203.0.113.9', port: 443, protocol: 6, reason: 'not_allowed' }]);
    h.client.sendHeartbeat();
    expect(h.client.stats()).toMatchObject({ reliable: 3, heartbeatPending: true, heartbeatsCoalesced: 2, denyEventsPending: 1 });
    cp.down = false;
    const s = await cp.waitForStream(1);
    await sub;
    await s.waitForEvents(6);
    expect(s.cases()).toEqual(['sync', 'unsubscribed', 'subscribed', 'unsubscribed', 'heartbeat', 'denyEvents']);
    const hbEv = s.events[4];
    if (hbEv?.event.case !== 'heartbeat') throw new Error('no heartbeat');
    expect(hbEv.event.value.stats[0]?.packetsAllowed).toBe(3n);
    const u2 = s.events[3];
    if (u2?.event.case !== 'unsubscribed') throw new Error('no unsubscribed');
    expect(u2.event.value).toMatchObject({ id: 'u2', reason: UnsubscribeReason.ERROR, error: 'target vanished' });
  });

  test('heartbeat timer sends cumulative stats', async () => {
    const h = setup({
      heartbeatIntervalMs: 20,
      heartbeatStats: () => [{ id: 'a1', packetsAllowed: 5n, dnsQueriesBlocked: 1n }],
    });
    const s = await h.cp.waitForStream(1);
    await waitUntil(() => s.cases().filter((c) => c === 'heartbeat').length >= 2);
    const ev = s.events.find((e) => e.event.case === 'heartbeat');
    if (ev?.event.case !== 'heartbeat') throw new Error('no heartbeat');
    expect(ev.event.value.stats[0]).toMatchObject({ id: 'a1', packetsAllowed: 5n, dnsQueriesBlocked: 1n });
  });

  test('deny events are batched, flushed after denyFlushMs, and dropped (counted) beyond the bound', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    const h = setup({ queue: { denyBatchSize: 3, maxPendingDenyEvents: 8, denyFlushMs: 40 } }, cp);
    const ev = (i: number): { attachmentId: string; destination: string; count: bigint } => ({
      attachmentId: 'a1',
      destination: `203.0.113.${i}`,
      count: 1n,
    });
    expect(h.client.sendDenyEvents(Array.from({ length: 10 }, (_, i) => ev(i)))).toBe(8);
    expect(h.client.stats().denyEventsDropped).toBe(2);
    cp.down = false;
    const s = await cp.waitForStream(1);
    await waitUntil(() => s.cases().filter((c) => c === 'denyEvents').length === 3);
    const batches = s.events.flatMap((e) => (e.event.case === 'denyEvents' ? [e.event.value.events.length] : []));
    expect(batches).toEqual([3, 3, 2]);
    // A partial batch waits for the flush timer.
    const t0 = Date.now();
    h.client.sendDenyEvents([ev(50)]);
    await waitUntil(() => s.cases().filter((c) => c === 'denyEvents').length === 4);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(30);
  });

  test('queue bound: Subscribed/Unsubscribed beyond it are refused with NETFENCE_ERR_QUEUE_FULL, never dropped silently', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    const h = setup({ queue: { maxQueuedEvents: 2 } }, cp);
    h.client.unsubscribe('u1', UnsubscribeReason.REMOVED);
    h.client.unsubscribe('u2', UnsubscribeReason.REMOVED);
    let thrown: unknown;
    try {
      h.client.unsubscribe('u3', UnsubscribeReason.REMOVED);
    } catch (e) {
      thrown = e;
    }
    expect((thrown as ControlPlaneClientError).code).toBe('NETFENCE_ERR_QUEUE_FULL');
    await expect(h.client.subscribe({ id: 's' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_QUEUE_FULL' });
    // Command results are always accepted.
    h.client.sendCommandResult({ nonce: 'x', attachmentId: 'a', ok: true });
    expect(h.client.stats().reliable).toBe(3);
    cp.down = false;
    const s = await cp.waitForStream(1);
    await s.waitForEvents(4);
    expect(s.cases()).toEqual(['sync', 'unsubscribed', 'unsubscribed', 'commandResult']);
  });

  test('backoff grows exponentially up to maxMs and resets after a stable connection (no SyncAck)', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    cp.autoSyncAck = false; // only the stable-link rule can reset the backoff here
    const h = setup({ backoff: { initialMs: 5, maxMs: 40, jitter: false }, stableAfterMs: 50 }, cp);
    await waitUntil(() => h.states.filter((x) => x.state === 'disconnected').length >= 6, 3000);
    const delays = h.states.filter((x) => x.state === 'disconnected').map((x) => x.info.retryInMs);
    expect(delays.slice(0, 6)).toEqual([5, 10, 20, 40, 40, 40]);
    cp.down = false;
    (await cp.waitForStream(1)).send({ id: 'x', command: { case: 'removeCidr', value: '203.0.113.0/24' } });
    await waitUntil(() => h.client.state === 'connected', 2000);
    await sleep(80); // longer than stableAfterMs
    const before = h.states.length;
    cp.endAll();
    await waitUntil(() => h.states.length > before);
    expect(h.states[before]?.info.retryInMs).toBe(5);
  });

  test('a SyncAck resets the backoff: a drop right after a resync retries after the base delay', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    // stableAfterMs far beyond the test: only the SyncAck can reset the backoff
    const h = setup({ backoff: { initialMs: 5, maxMs: 40, jitter: false }, stableAfterMs: 60_000 }, cp);
    await waitUntil(() => h.states.filter((x) => x.state === 'disconnected').length >= 5, 3000);
    cp.down = false;
    await waitUntil(() => h.received.some((c) => c.command.case === 'syncAck'), 2000);
    const before = h.states.length;
    cp.endAll(); // the control plane restarts moments after the resync
    await waitUntil(() => h.states.slice(before).some((x) => x.state === 'disconnected'));
    const drop = h.states.slice(before).find((x) => x.state === 'disconnected');
    expect(drop?.info.retryInMs).toBe(5);
    expect(drop?.info.attempt).toBe(1);
  });

  test('a link that never gets its SyncAck keeps the grown backoff (anti-flap)', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    cp.autoSyncAck = false;
    const h = setup({ backoff: { initialMs: 5, maxMs: 40, jitter: false }, stableAfterMs: 60_000 }, cp);
    await waitUntil(() => h.states.filter((x) => x.state === 'disconnected').length >= 5, 3000);
    cp.down = false;
    // the stream is accepted and a command arrives (so the link counts as connected), but no SyncAck
    const s = await cp.waitForStream(1);
    s.send({ id: 'x', command: { case: 'removeCidr', value: '203.0.113.0/24' } });
    await waitUntil(() => h.client.state === 'connected', 2000);
    const before = h.states.length;
    s.end();
    await waitUntil(() => h.states.slice(before).some((x) => x.state === 'disconnected'));
    const drop = h.states.slice(before).find((x) => x.state === 'disconnected');
    expect(drop?.info.retryInMs).toBe(40);
  });

  test('full jitter keeps delays within the ceiling', async () => {
    const cp = new FakeControlPlane();
    cp.down = true;
    const h = setup({ backoff: { initialMs: 4, maxMs: 16, jitter: true } }, cp);
    await waitUntil(() => h.states.filter((x) => x.state === 'disconnected').length >= 6, 3000);
    const delays = h.states.filter((x) => x.state === 'disconnected').map((x) => x.info.retryInMs ?? -1);
    const ceilings = [4, 8, 16, 16, 16, 16];
    delays.slice(0, 6).forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(ceilings[i] as number);
    });
  });

  test('bearer token and extra headers go on the stream and on QueryDns', async () => {
    const cp = new FakeControlPlane();
    cp.requiredToken = 's3cret';
    let n = 0;
    const h = setup({ bearerToken: () => `s3cret`, headers: { 'x-netfence-test': 'yes' } }, cp);
    const s = await cp.waitForStream(1);
    expect(s.headers.get('authorization')).toBe('Bearer s3cret');
    expect(s.headers.get('x-netfence-test')).toBe('yes');
    cp.dns = async (req) => {
      n++;
      return { allow: req.domain === 'ok.test', ips: ['203.0.113.7'], ttlSeconds: 30 };
    };
    const res = await h.client.queryDns({ id: 'a1', domain: 'ok.test', queryType: 'A' });
    expect(res).toMatchObject({ allow: true, ips: ['203.0.113.7'], ttlSeconds: 30 });
    expect(n).toBe(1);
    expect(cp.dnsHeaders[0]?.get('authorization')).toBe('Bearer s3cret');
  });

  test('a wrong token: the stream fails with NETFENCE_ERR_UNAUTHENTICATED and keeps retrying', async () => {
    const cp = new FakeControlPlane();
    cp.requiredToken = 'right';
    const h = setup({ bearerToken: 'wrong' }, cp);
    await waitUntil(() => h.states.filter((x) => x.state === 'disconnected').length >= 2);
    expect(h.states.find((x) => x.state === 'disconnected')?.info.error?.code).toBe('NETFENCE_ERR_UNAUTHENTICATED');
    expect(cp.streams.length).toBe(0);
    await expect(h.client.queryDns({ domain: 'x.test' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_UNAUTHENTICATED' });
  });

  test('queryDns deadline -> NETFENCE_ERR_DEADLINE; other failures keep their rpc code', async () => {
    const cp = new FakeControlPlane();
    const h = setup({ dnsQueryDeadlineMs: 1000 }, cp);
    cp.dns = async (_req, ctx) => {
      await new Promise((r) => {
        const t = setTimeout(r, 500);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          r(undefined);
        });
      });
      return { allow: true };
    };
    const t0 = Date.now();
    const err = await h.client.queryDns({ domain: 'slow.test' }, { deadlineMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlPlaneClientError);
    expect((err as ControlPlaneClientError).code).toBe('NETFENCE_ERR_DEADLINE');
    expect((err as ControlPlaneClientError).rpcCode).toBe(Code.DeadlineExceeded);
    expect(Date.now() - t0).toBeLessThan(400);
    cp.dns = async () => {
      throw new ConnectError('nope', Code.InvalidArgument);
    };
    const err2 = await h.client.queryDns({ domain: 'x.test' }).catch((e: unknown) => e);
    expect(err2).toMatchObject({ code: 'NETFENCE_ERR_RPC', rpcCode: Code.InvalidArgument });
    expect((err2 as Error).message).toMatch(/^NETFENCE_ERR_RPC: /);
    expect((err2 as Error).cause).toBeInstanceOf(ConnectError);
  });

  test('close: flushes queued messages, rejects pending subscribes, is idempotent; later calls fail CLOSED', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = () => false;
    const h = setup({}, cp);
    const s = await cp.waitForStream(1);
    await waitUntil(() => h.client.state === 'connected');
    const pending = h.client.subscribe({ id: 'p1' }).catch((e: unknown) => e);
    h.client.unsubscribe('bye', UnsubscribeReason.DETACHED);
    const c1 = h.client.close();
    const c2 = h.client.close();
    expect(c1).toBe(c2);
    await c1;
    expect(((await pending) as ControlPlaneClientError).code).toBe('NETFENCE_ERR_CLOSED');
    expect(s.cases()).toContain('unsubscribed');
    expect(s.requestEnded).toBe(true);
    expect(h.client.state).toBe('disconnected');
    expect(h.client.closed).toBe(true);
    expect(() => h.client.unsubscribe('x', UnsubscribeReason.DETACHED)).toThrow(/NETFENCE_ERR_CLOSED/);
    await expect(h.client.subscribe({ id: 'q' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_CLOSED' });
    await expect(h.client.queryDns({ domain: 'a.test' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_CLOSED' });
    await h.client[Symbol.asyncDispose]();
    await sleep(30);
    expect(cp.streams.length).toBe(1);
  });

  test('Symbol.asyncDispose closes the client', async () => {
    const cp = new FakeControlPlane();
    planes.push(cp);
    let ref: ControlPlaneClient | undefined;
    {
      const c = createControlPlaneClient({
        url: 'http://x',
        daemonId: 'd',
        hostname: 'h',
        syncState: () => ({ attachments: [] }),
        onCommand: () => undefined,
        transport: cp.transport(),
      });
      ref = c;
      await c[Symbol.asyncDispose]();
    }
    expect(ref.closed).toBe(true);
  });

  test('options are validated', () => {
    const base = {
      daemonId: 'd',
      hostname: 'h',
      syncState: () => ({ attachments: [] }),
      onCommand: () => undefined,
    };
    const codeOf = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return (e as ControlPlaneClientError).code;
      }
      return undefined;
    };
    expect(codeOf(() => createControlPlaneClient({ ...base, url: 'not a url' }))).toBe('NETFENCE_ERR_INVALID_ARGUMENT');
    expect(codeOf(() => createControlPlaneClient({ ...base, url: 'ftp://x' }))).toBe('NETFENCE_ERR_INVALID_ARGUMENT');
    expect(codeOf(() => createControlPlaneClient({ ...base, url: 'http://x', tls: { caFile: '/x' } }))).toBe('NETFENCE_ERR_INVALID_ARGUMENT');
    expect(codeOf(() => createControlPlaneClient({ ...base, url: 'http://x', backoff: { initialMs: -1 } }))).toBe(
      'NETFENCE_ERR_INVALID_ARGUMENT',
    );
    expect(codeOf(() => createControlPlaneClient({ ...base, url: 'https://x', tls: { caFile: '/nonexistent/ca.pem' } }))).toBe(
      'NETFENCE_ERR_TLS',
    );
    expect(codeOf(() => createControlPlaneClient({ ...base, url: 'https://x', tls: { cert: 'x' } }))).toBe('NETFENCE_ERR_TLS');
  });
});
