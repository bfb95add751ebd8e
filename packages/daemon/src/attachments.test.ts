// The attachment runtime's scheduling, on an in-memory datapath (the kernel side of the
// runtime is covered end to end in test/): what reaches the datapath, and when expiry runs.
import { applyCommand, emptyState } from '@netfence/policy-engine';
import pino from 'pino';
import { AttachmentRuntime } from './attachments';
import { memoryDatapath } from '../test/support/memory-datapath';
import type { AttachmentRecord, StateStore } from './state-store';

const store: StateStore = {
  dir: '/nonexistent',
  daemonId: () => 'nfd-test',
  loadAll: () => ({ records: [], problems: [] }),
  save: () => undefined,
  saveAsync: () => Promise.resolve(),
  write: () => undefined,
  flushed: () => Promise.resolve(),
  remove: () => undefined,
};

function runtime() {
  let policy = emptyState();
  for (const cmd of [
    { type: 'setMode', mode: 'allowlist' },
    { type: 'setDnsMode', mode: 'allowlist' },
    { type: 'allowDomain', entry: { domain: 'example.com', includeSubdomains: true } },
  ] as const)
    policy = applyCommand(policy, cmd, Date.now());
  const record: AttachmentRecord = {
    version: 1,
    id: 'att-000000000001',
    numericId: 1,
    kind: 'cgroup',
    target: '/sys/fs/cgroup/nf-test',
    identity: { cgroupId: '1' },
    metadata: {},
    dnsAddress: '127.0.0.1:11000',
    attachedAt: new Date().toISOString(),
    policy,
  };
  const m = memoryDatapath();
  const rt = new AttachmentRuntime(record, m.dp, { store, logger: pino({ level: 'silent' }), minTtlSec: 0, maxTtlSec: 3600, graceMs: 0, now: () => Date.now() });
  return { rt, ...m };
}

describe('attachment runtime', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());

  it('a DNS answer adds only its own new addresses to the datapath', async () => {
    const { rt, applied, view } = runtime();
    await rt.applyCommand({ type: 'setMode', mode: 'allowlist' }); // sync the kernel view
    applied.length = 0;
    await rt.learn({ name: 'a.example.com', addresses: ['203.0.113.1', '203.0.113.2'], ttlSec: 60 });
    await rt.learn({ name: 'b.example.com', addresses: ['203.0.113.2', '203.0.113.3'], ttlSec: 60 });
    await rt.learn({ name: 'a.example.com', addresses: ['203.0.113.1'], ttlSec: 120 }); // a refresh: nothing for the kernel
    expect(applied).toEqual([
      [
        { op: 'add', map: 'allow', cidr: '203.0.113.1/32' },
        { op: 'add', map: 'allow', cidr: '203.0.113.2/32' },
      ],
      [{ op: 'add', map: 'allow', cidr: '203.0.113.3/32' }],
    ]);
    expect([...view.allow].sort()).toEqual(['203.0.113.1/32', '203.0.113.2/32', '203.0.113.3/32']);
    expect(rt.state.learned).toHaveLength(4);
    await rt.shutdown();
  });

  it('the kernel is given a deadline for each allow CIDR whose only source has a TTL', async () => {
    const { rt, deadlines } = runtime();
    const t = Date.now();
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '198.51.100.0/24', ttlMs: 60_000 } });
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '198.51.100.7/32', ttlMs: 30_000 } });
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '203.0.113.0/24' } });
    expect([...deadlines()]).toEqual([
      ['198.51.100.0/24', t + 60_000],
      ['198.51.100.7/32', t + 30_000],
    ]);
    // a TTL extended moves the deadline; made permanent, it has none
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '198.51.100.0/24', ttlMs: 120_000 } });
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '198.51.100.7/32' } });
    expect([...deadlines()]).toEqual([['198.51.100.0/24', t + 120_000]]);
    // an address that is also learned from DNS: its expiry is the daemon's, with grace
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '203.0.113.9/32', ttlMs: 5_000 } });
    expect(deadlines().get('203.0.113.9/32')).toBe(t + 5_000);
    await rt.learn({ name: 'a.example.com', addresses: ['203.0.113.9'], ttlSec: 60 });
    expect(deadlines().has('203.0.113.9/32')).toBe(false);
    await rt.shutdown();
  });

  it('learned addresses are swept at most once a second; a CIDR TTL still expires on time', async () => {
    const { rt, applied, view } = runtime();
    // 20 answers whose TTLs lapse 100 ms apart, over 2 s
    for (let i = 1; i <= 20; i++) await rt.learn({ name: `h${i}.example.com`, addresses: [`203.0.113.${i}`], ttlSec: i / 10 });
    await rt.applyCommand({ type: 'allowCidr', entry: { cidr: '198.51.100.0/24', ttlMs: 1250 } });
    applied.length = 0;
    await jest.advanceTimersByTimeAsync(1300);
    // the CIDR went at its time, not at the next learned sweep
    expect(view.allow.has('198.51.100.0/24')).toBe(false);
    expect(rt.state.allowCidrs).toEqual([]);
    await jest.advanceTimersByTimeAsync(2000);
    expect(rt.state.learned).toEqual([]);
    expect(view.allow.size).toBe(0);
    const sweeps = applied.filter((ops) => ops.some((o) => o.op === 'delete'));
    // without the limit: one sweep per 100 ms (20); with it: about one a second, plus the CIDR's
    expect(sweeps.length).toBeGreaterThanOrEqual(3);
    expect(sweeps.length).toBeLessThanOrEqual(5);
    await rt.shutdown();
  });
});
