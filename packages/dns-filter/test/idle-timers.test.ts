// A filter that has nothing pending holds no timer (a daemon runs one filter per attachment:
// 1,000 idle filters used to run ~70,000 timer callbacks a second), and the timers that do
// run while something is pending still enforce their deadlines. Loopback only.

import dgram from 'node:dgram';

import { createDnsFilter } from '@netfence/dns-filter';

import { createQueryStats } from '../src/query-stats';
import { createUpstreamPool } from '../src/upstream-pool';
import { parseUpstream } from '../src/upstream-server';
import { encodeName } from '../src/wire';
import { dig, filterStarter, loopbackAddress, startFakeUpstream, answer, Packet, type FakeUpstream } from './helpers';

jest.setTimeout(20000);

/** A query for `name` A IN (RD set). */
function queryFor(name: string): Buffer {
  const header = Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, encodeName(name), Buffer.from([0, 1, 0, 1])]);
}

/** A UDP socket that never answers. */
async function silentUpstream(address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return s;
}

describe('with fake timers', () => {
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  test('an idle filter (with a logger, an upstream, TCP) holds no timer', async () => {
    const logger = { info: jest.fn(), warn: jest.fn(), error: jest.fn(), debug: jest.fn() };
    const f = await createDnsFilter({ address: loopbackAddress(), mode: 'allowlist', allow: ['exact.test'], upstreams: ['127.0.0.1:9'], logger, onResolved: async () => {} });
    try {
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      await f.close();
    }
  });

  test("the upstream pool's timeout sweep runs while an attempt is pending, and stops after", async () => {
    const addr = loopbackAddress();
    const silent = await silentUpstream(addr);
    const stats = createQueryStats();
    const server = parseUpstream(`${addr}:${silent.address().port}`);
    const pool = createUpstreamPool({ servers: [server], attemptTimeoutMs: 100, maxAttempts: 1, backoffMs: 1000, maxBackoffMs: 1000, socketsPerFamily: 1, counters: stats.counters });
    try {
      expect(jest.getTimerCount()).toBe(0);
      const results: unknown[] = [];
      pool.query(queryFor('exact.test'), 'exact.test', 1, 1, (a) => results.push(a));
      expect(jest.getTimerCount()).toBe(1);
      jest.advanceTimersByTime(60);
      expect(results).toEqual([]);
      jest.advanceTimersByTime(80); // past the 100 ms attempt deadline
      expect(results).toEqual([undefined]);
      expect(stats.counters.upstreamTimeouts).toBe(1);
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      pool.close();
      silent.close();
    }
  });
});

describe('with real timers', () => {
  let up: FakeUpstream;
  beforeAll(async () => {
    up = await startFakeUpstream(async (req) => answer(req, [{ name: req.questions[0]!.name, type: Packet.TYPE.A, address: '203.0.113.30' }]));
  });
  afterAll(() => up.stop());
  const start = filterStarter(() => ({ address: loopbackAddress(), mode: 'allowlist', allow: ['*.test'], upstreams: [up.upstream] }));

  test('a hook that never settles gives SERVFAIL at hookTimeoutMs, and the next query is still answered', async () => {
    let hang = true;
    const f = await start({ hookTimeoutMs: 200, onResolved: () => (hang ? new Promise<void>(() => {}) : undefined) });
    const t0 = Date.now();
    const r = await dig(f.address.address, f.address.port, 'a.test');
    expect(r.status).toBe('SERVFAIL');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(f.stats().hookFailures).toBe(1);
    hang = false;
    expect((await dig(f.address.address, f.address.port, 'b.test')).status).toBe('NOERROR');
  });
});
