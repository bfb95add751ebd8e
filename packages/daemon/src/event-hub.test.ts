import { EventHub, RING_SIZE, SUBSCRIBER_QUEUE, type HubEvent } from './event-hub';

const drop = (attachmentId: string, i: number): HubEvent => ({ timeMs: 1_700_000_000_000 + i, attachmentId, kind: 'drop', drop: { destination: `203.0.113.${i % 250}`, port: i, protocol: 6, reason: 'not_allowed', dryRun: false, hook: 'tc', learnedFrom: 'x.test' } });

test('recent: the ring keeps the last RING_SIZE events, oldest first, filtered by attachment', () => {
  const hub = new EventHub();
  for (let i = 0; i < RING_SIZE + 10; i++) hub.publish(drop(i % 2 ? 'b' : 'a', i));
  const all = hub.recent('', RING_SIZE * 2);
  expect(all).toHaveLength(RING_SIZE);
  expect(all[0]!.timeMs).toBe(1_700_000_000_000 + 10);
  expect(all.at(-1)!.timeMs).toBe(1_700_000_000_000 + RING_SIZE + 9);
  expect(hub.recent('a', 3).map((e) => e.attachmentId)).toEqual(['a', 'a', 'a']);
  expect(hub.recent('a', 0)).toEqual([]);
});

test('watch: recent first, then live events of its attachment only; a slow reader misses events, counted, and its queue stays bounded', async () => {
  const hub = new EventHub();
  hub.publish(drop('a', 1));
  const ac = new AbortController();
  const it = hub.watch({ attachmentId: 'a', recent: 10, noFollow: false, signal: ac.signal });
  const first = await it.next();
  expect(first.value?.event.case).toBe('drop');
  expect(first.value?.attachmentId).toBe('a');
  // Flood while the reader is not reading: only SUBSCRIBER_QUEUE are held for it.
  for (let i = 0; i < 2 * SUBSCRIBER_QUEUE + 500; i++) hub.publish(drop(i % 2 ? 'b' : 'a', i));
  hub.publish(drop('b', 99)); // another attachment: never queued here
  const held = SUBSCRIBER_QUEUE;
  const aCount = SUBSCRIBER_QUEUE + 250;
  expect(hub.droppedForSlowSubscribers).toBe(aCount - held);
  let n = 0;
  let missed = 0n;
  for (let i = 0; i < held; i++) {
    const r = await it.next();
    n++;
    missed += r.value!.missed;
    expect(r.value!.attachmentId).toBe('a');
  }
  expect(n).toBe(held);
  hub.publish(drop('a', 7)); // the first event after the gap says how many were missed
  const after = await it.next();
  expect(after.value!.missed + missed).toBe(BigInt(aCount - held));
  ac.abort();
  expect((await it.next()).done).toBe(true);
  expect(hub.subscriberCount).toBe(0);
});

test('watch with noFollow: the recent events and the end, no subscriber left', async () => {
  const hub = new EventHub();
  for (let i = 0; i < 5; i++) hub.publish(drop('a', i));
  const got = [];
  for await (const e of hub.watch({ attachmentId: '', recent: 3, noFollow: true, signal: new AbortController().signal })) got.push(e);
  expect(got.map((e) => (e.event.case === 'drop' ? e.event.value.port : -1))).toEqual([2, 3, 4]);
  expect(hub.subscriberCount).toBe(0);
});
