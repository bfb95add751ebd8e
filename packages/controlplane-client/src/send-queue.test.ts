import { create } from '@bufbuild/protobuf';
import { DaemonEventSchema, DenyEventSchema, HeartbeatSchema, UnsubscribedSchema } from '@netfence/proto';
import { backoffCeiling, backoffDelay, resolveBackoff } from './backoff';
import { ControlPlaneClientError } from './controlplane-client-error';
import { SendQueue } from './send-queue';

const unsub = (id: string) => ({
  kind: 'unsubscribed' as const,
  event: create(DaemonEventSchema, { event: { case: 'unsubscribed', value: create(UnsubscribedSchema, { id }) } }),
});
const sub = (id: string) => ({
  kind: 'subscribed' as const,
  subscribeId: id,
  event: create(DaemonEventSchema, { event: { case: 'subscribed', value: { id } } }),
});

describe('SendQueue', () => {
  test('drains reliable FIFO, then the latest heartbeat, then deny batches', () => {
    const q = new SendQueue({ maxReliable: 10, maxPendingDenyEvents: 10, denyBatchSize: 2 });
    q.setHeartbeat(create(HeartbeatSchema, { stats: [{ id: 'old' }] }));
    q.pushDenyEvents([create(DenyEventSchema, { destination: '203.0.113.1' })]);
    q.pushReliable(unsub('u1'));
    q.pushReliable(sub('s1'));
    q.setHeartbeat(create(HeartbeatSchema, { stats: [{ id: 'new' }] }));
    expect(q.hasWork(false)).toBe(true);
    const out = [];
    for (let e = q.take(false); e; e = q.take(false)) out.push(e.event);
    expect(out.map((e) => e.event.case)).toEqual(['unsubscribed', 'subscribed', 'heartbeat']);
    const hb = out[2];
    expect(hb?.event.case === 'heartbeat' && hb.event.value.stats[0]?.id).toBe('new');
    expect(q.stats().heartbeatsCoalesced).toBe(1);
    // a partial deny batch waits for a flush
    expect(q.hasWork(false)).toBe(false);
    expect(q.take(true)?.event.event.case).toBe('denyEvents');
    expect(q.hasWork(true)).toBe(false);
  });

  test('bounded: unforced reliable pushes throw QUEUE_FULL, forced ones get in; deny events drop and count', () => {
    const q = new SendQueue({ maxReliable: 1, maxPendingDenyEvents: 3, denyBatchSize: 2 });
    q.pushReliable(unsub('a'));
    expect(() => q.pushReliable(unsub('b'))).toThrow(ControlPlaneClientError);
    expect(() => q.pushReliable(unsub('b'))).toThrow(/^NETFENCE_ERR_QUEUE_FULL: /);
    q.pushReliable(unsub('c'), true);
    expect(q.reliableLength).toBe(2);
    const ev = create(DenyEventSchema, {});
    expect(q.pushDenyEvents([ev, ev])).toBe(2);
    expect(q.pushDenyEvents([ev, ev, ev])).toBe(1);
    expect(q.stats()).toMatchObject({ denyEventsPending: 3, denyEventsDropped: 2 });
    expect(q.denyBatchFull).toBe(true);
  });

  test('withdraws a queued Subscribed and re-queues at the front', () => {
    const q = new SendQueue({ maxReliable: 10, maxPendingDenyEvents: 1, denyBatchSize: 1 });
    q.pushReliable(sub('x'));
    q.pushReliable(unsub('y'));
    expect(q.hasSubscribed('x')).toBe(true);
    expect(q.removeSubscribed('x')).toBe(true);
    expect(q.removeSubscribed('x')).toBe(false);
    q.unshiftReliable([sub('r1'), sub('r2')]);
    const ids = [];
    for (let e = q.take(false); e; e = q.take(false)) ids.push(e.item?.subscribeId ?? 'unsub');
    expect(ids).toEqual(['r1', 'r2', 'unsub']);
  });
});

describe('backoff', () => {
  test('ceiling doubles up to maxMs; full jitter stays within [0, ceiling]', () => {
    const b = resolveBackoff({ initialMs: 250, maxMs: 30_000 });
    expect([0, 1, 2, 3, 6, 7, 8, 100, 5000].map((a) => backoffCeiling(b, a))).toEqual([
      250, 500, 1000, 2000, 16_000, 30_000, 30_000, 30_000, 30_000,
    ]);
    expect(backoffDelay(b, 3, () => 0.5)).toBe(1000);
    expect(backoffDelay(b, 3, () => 0)).toBe(0);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(b, 4);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(4000);
    }
    expect(backoffDelay(resolveBackoff({ initialMs: 10, jitter: false }), 2)).toBe(40);
  });
});
