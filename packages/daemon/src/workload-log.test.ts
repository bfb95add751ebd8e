import { Writable } from 'node:stream';
import pino from 'pino';
import { createWorkloadLog } from './workload-log';

function capture(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, sink), lines, bytes: () => bytes };
}

test('a flood of 1,000,000 lines from one attachment over 20 s writes a few hundred lines, with the suppressed counted', () => {
  const c = capture();
  let t = 0;
  const wl = createWorkloadLog(c.logger, { now: () => t, summaryIntervalMs: 3_600_000 });
  for (let i = 0; i < 1_000_000; i++) {
    t = Math.floor(i / 50); // 50 lines a millisecond: 20 s of flood
    wl.write('dns', 'att-flood', 'info', { event: 'dns', query: { name: `x${i}.test` } }, 'dns query not answered');
  }
  wl.close();
  const written = c.lines.filter((l) => l.msg === 'dns query not answered');
  expect(written.length).toBeLessThanOrEqual(20 + 20 * 10 + 1);
  expect(written.length).toBeGreaterThan(100);
  const summary = c.lines.filter((l) => l.msg === 'log lines suppressed (rate limit)');
  const suppressed = written.reduce((n, l) => n + ((l.suppressed as number) ?? 0), 0) + summary.reduce((n, l) => n + (l.suppressed as number), 0);
  expect(written.length + suppressed).toBe(1_000_000); // every line is either written or counted
  expect(summary[0]).toMatchObject({ kind: 'dns', attachment: 'att-flood' });
  expect(wl.suppressedTotal).toBe(1_000_000 - written.length);
  expect(c.bytes()).toBeLessThan(100_000);
});

test('one attachment flooding does not take the log lines of another', () => {
  const c = capture();
  const t = 0;
  const wl = createWorkloadLog(c.logger, { now: () => t });
  for (let i = 0; i < 10_000; i++) wl.write('drop', 'att-a', 'info', { attachment: 'att-a' }, 'dropped');
  wl.write('drop', 'att-b', 'info', { attachment: 'att-b' }, 'dropped');
  wl.close();
  expect(c.lines.filter((l) => l.attachment === 'att-b' && l.msg === 'dropped')).toHaveLength(1);
});

test('a level that is off is neither written nor counted; loggerFor limits a library logger and its children', () => {
  const c = capture('info');
  const wl = createWorkloadLog(c.logger, { now: () => 0 });
  for (let i = 0; i < 1000; i++) wl.write('dns', 'att-a', 'debug', {}, 'dns query');
  expect(wl.suppressedTotal).toBe(0);
  const lib = wl.loggerFor('dns', 'att-a').child!({ component: 'dns-filter' });
  for (let i = 0; i < 1000; i++) lib.warn({ err: new Error('boom') }, 'onResolved failed');
  wl.close();
  const warns = c.lines.filter((l) => l.msg === 'onResolved failed');
  expect(warns.length).toBe(20);
  expect(warns[0]).toMatchObject({ attachment: 'att-a', component: 'dns-filter' });
  expect(wl.suppressedTotal).toBe(980);
});
