import { createLogRateLimiter, startSuppressedSummaries } from './log-rate-limiter';

describe('createLogRateLimiter', () => {
  it('lets a burst through, then suppresses and reports the count on the next written line', () => {
    let t = 0;
    const rl = createLogRateLimiter({ perSecond: 2, burst: 3, now: () => t });
    const permits = Array.from({ length: 10 }, () => rl.take('a'));
    expect(permits.filter((p) => p.ok)).toHaveLength(3);
    expect(rl.suppressedTotal).toBe(7);
    t += 500; // one token back
    expect(rl.take('a')).toEqual({ ok: true, suppressed: 7 });
    expect(rl.take('a')).toEqual({ ok: false });
  });

  it('keeps keys apart: one noisy key does not silence another', () => {
    const rl = createLogRateLimiter({ perSecond: 1, burst: 1, now: () => 0 });
    rl.take('noisy');
    for (let i = 0; i < 100; i++) rl.take('noisy');
    expect(rl.take('quiet')).toEqual({ ok: true, suppressed: 0 });
  });

  it('drain hands out pending counts once', () => {
    const rl = createLogRateLimiter({ perSecond: 1, burst: 1, now: () => 0 });
    for (let i = 0; i < 5; i++) rl.take('a');
    expect(rl.drain()).toEqual([{ key: 'a', suppressed: 4 }]);
    expect(rl.drain()).toEqual([]);
  });

  it('tracks at most maxKeys keys and still reports what a forgotten key suppressed', () => {
    const rl = createLogRateLimiter({ perSecond: 1, burst: 1, maxKeys: 3, now: () => 0 });
    rl.take('a');
    rl.take('a'); // suppressed
    for (const k of ['b', 'c', 'd', 'e']) rl.take(k);
    expect(rl.drain()).toEqual([{ key: 'a', suppressed: 1 }]);
    // 'a' was forgotten: it starts with a full bucket again
    expect(rl.take('a')).toEqual({ ok: true, suppressed: 0 });
  });

  it('a shared total caps many keys together; what it stops is counted under each key', () => {
    let t = 0;
    const rl = createLogRateLimiter({ perSecond: 10, burst: 10, total: { perSecond: 2, burst: 5 }, now: () => t });
    const written = Array.from({ length: 100 }, (_, i) => rl.take(`client-${i}`)).filter((p) => p.ok).length;
    expect(written).toBe(5);
    expect(rl.suppressedTotal).toBe(95);
    t += 1000; // two shared tokens back
    expect(rl.take('client-7')).toEqual({ ok: true, suppressed: 1 });
    expect(rl.take('client-8')).toEqual({ ok: true, suppressed: 1 });
    expect(rl.take('client-9')).toEqual({ ok: false });
    expect(rl.drain().reduce((n, d) => n + d.suppressed, 0)).toBe(94);
  });

  it('refuses settings that would disable it', () => {
    expect(() => createLogRateLimiter({ total: { perSecond: 0 } })).toThrow(RangeError);
    expect(() => createLogRateLimiter({ perSecond: 0 })).toThrow(RangeError);
    expect(() => createLogRateLimiter({ burst: 0 })).toThrow(RangeError);
    expect(() => createLogRateLimiter({ total: { perSecond: 1, burst: 0 } })).toThrow(RangeError);
  });

  it('summaries: stop() hands out what is pending once; stopping again writes nothing', () => {
    const rl = createLogRateLimiter({ perSecond: 1, burst: 1, now: () => 0 });
    for (let i = 0; i < 4; i++) rl.take('k');
    const written: Array<[string, number]> = [];
    const summaries = startSuppressedSummaries(rl, 60_000, (key, n) => written.push([key, n]));
    summaries.stop();
    summaries.stop();
    expect(written).toEqual([['k', 3]]);
    expect(() => startSuppressedSummaries(rl, 0, () => {})).toThrow(RangeError);
  });
});
