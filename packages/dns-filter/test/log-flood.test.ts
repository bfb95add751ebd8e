// Log amplification (issue 15): a workload flooding the filter cannot make it write a log
// line per packet. Every line is accounted for: written, or counted as suppressed (on the
// next written line of its kind, or in a 'log lines suppressed' summary).

import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';

import dns2 from 'dns2';

import { forwardingFilterStarter, sleep } from './helpers';

const { Packet } = dns2;

jest.setTimeout(120000);

const start = forwardingFilterStarter('203.0.113.10');

interface Line {
  level: string;
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function captureLogger(): { lines: Line[]; logger: { info: (o: unknown, m?: string) => void; warn: (o: unknown, m?: string) => void; error: (o: unknown, m?: string) => void; debug: (o: unknown, m?: string) => void } } {
  const lines: Line[] = [];
  const at = (level: string) => (obj: unknown, msg?: string) => lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

/**
 * Sends `count` packets made by `make(i)` from one UDP socket, keeping at most `window`
 * unanswered (a reply, or 200 ms of silence, frees the window). Returns replies received.
 */
async function flood(address: string, port: number, count: number, make: (i: number) => Buffer, window = 1000): Promise<number> {
  const sock = dgram.createSocket('udp4');
  let replies = 0;
  sock.on('message', () => replies++);
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  sock.setRecvBufferSize(8 * 1024 * 1024);
  try {
    for (let sent = 0; sent < count; ) {
      const waitFrom = Date.now();
      while (sent - replies > window && Date.now() - waitFrom < 200) await sleep(1);
      const batch = Math.min(200, count - sent);
      for (let i = 0; i < batch; i++) sock.send(make(sent + i), port, address);
      sent += batch;
      await new Promise((r) => setImmediate(r));
    }
    const end = Date.now() + 2000;
    while (replies < count && Date.now() < end) await sleep(10);
    return replies;
  } finally {
    sock.close();
  }
}

/** Random bytes that parse as a query header (QR=0), so most get a FORMERR or NOTIMP answer. */
function garbage(): Buffer {
  const b = randomBytes(12 + Math.floor(Math.random() * 40));
  b[2]! &= 0x7f;
  return b;
}

function query(i: number): Buffer {
  const q = new Packet();
  q.header.id = i & 0xffff;
  q.header.rd = 1;
  q.questions.push({ name: `n${i}.flood.test`, type: Packet.TYPE.A, class: Packet.CLASS.IN } as never);
  return q.toBuffer();
}

/** Lines with `msg`, and every line's share of the suppressed count of `kind`. */
function account(lines: Line[], msg: string, kind: string): { written: number; suppressed: number; summaries: number } {
  const written = lines.filter((l) => l.msg === msg);
  const summaries = lines.filter((l) => l.msg === 'log lines suppressed' && l.obj.kind === kind);
  const sum = (ls: Line[]): number => ls.reduce((n, l) => n + (typeof l.obj.suppressed === 'number' ? l.obj.suppressed : 0), 0);
  return { written: written.length, suppressed: sum(written) + sum(summaries), summaries: summaries.length };
}

test('100,000 garbage UDP packets: the lines a failing query listener causes are capped, the rest counted', async () => {
  const { lines, logger } = captureLogger();
  let calls = 0;
  const f = await start({
    logger,
    onQuery: () => {
      calls++;
      throw new Error('listener bug');
    },
  });
  const t0 = Date.now();
  const replies = await flood(f.address.address, f.address.port, 100_000, garbage);
  const elapsedSec = (Date.now() - t0) / 1000;
  const stats = f.stats();
  await f.close(); // writes the last summary
  const a = account(lines, 'query listener threw', 'query-listener');
  // most of the flood was answered (FORMERR/NOTIMP), so the listener ran that often
  expect(replies).toBeGreaterThan(50_000);
  expect(calls).toBeGreaterThanOrEqual(replies);
  // burst 20, then 10 a second
  expect(a.written).toBeLessThanOrEqual(20 + Math.ceil(elapsedSec * 10) + 1);
  expect(a.summaries).toBeGreaterThanOrEqual(1);
  // nothing lost: every line is written or counted
  expect(a.written + a.suppressed).toBe(calls);
  expect(stats.logSuppressed).toBe(calls - a.written);
  expect(lines.length).toBeLessThan(200);
});

test('onResolved failures: one line per failure at most up to the rate, the rest counted', async () => {
  const { lines, logger } = captureLogger();
  let failures = 0;
  const f = await start({
    logger,
    logRateLimit: { perSecond: 5, burst: 10, summaryIntervalMs: 100 },
    onResolved: () => {
      failures++;
      return Promise.reject(new Error('map full'));
    },
  });
  const t0 = Date.now();
  const replies = await flood(f.address.address, f.address.port, 3000, query, 200);
  const elapsedSec = (Date.now() - t0) / 1000;
  await sleep(250); // a summary interval passes: the quiet kind gets its summary line
  const beforeClose = account(lines, 'onResolved failed', 'hook-failed');
  await f.close();
  const a = account(lines, 'onResolved failed', 'hook-failed');
  expect(replies).toBeGreaterThan(2500);
  expect(f.stats().hookFailures).toBe(failures);
  expect(a.written).toBeLessThanOrEqual(10 + Math.ceil(elapsedSec * 5) + 1);
  expect(beforeClose.summaries).toBeGreaterThanOrEqual(1); // from the timer, not from close()
  expect(a.written + a.suppressed).toBe(failures);
  // the written lines keep the failure and the name under a named key
  const first = lines.find((l) => l.msg === 'onResolved failed');
  expect(first?.obj.dns).toMatchObject({ name: expect.stringMatching(/\.flood\.test$/) });
});
