// The eBPF datapath on its own, against the real kernel in a lab cgroup: policy entries go
// through the typed map views (written, read back as the canonical prefixes the policy engine
// uses), and the datapath stops tracking an attachment once its fds are closed or destroyed
// (its `live` set used to only grow, one entry per attach for the life of the daemon).

import pino from 'pino';
import { createBpfDatapath } from '../src/bpf-datapath';
import { createDaemonLab, type DaemonLab } from './support/daemon-lab';

jest.setTimeout(60_000);

let dl: DaemonLab;
beforeAll(async () => {
  dl = await createDaemonLab();
});
afterAll(async () => {
  await dl?.close();
});

test('typed map views round-trip policy entries, and closed attachments are forgotten', async () => {
  const dp = createBpfDatapath({
    root: dl.bpffsRoot,
    mapSizes: { allow: 64, deny: 64, ringbufBytes: 4096 },
    dnsRateLimit: { rateQps: 100, burst: 200 },
    onEvent: () => undefined,
    logger: pino({ level: 'silent' }),
  });
  const cg = dl.cgroup('dp');
  const params = { kind: 'cgroup' as const, id: 'att-dp1', numericId: 7, cgroupPath: cg.path };
  try {
    const a = await dp.attach(params);
    expect(dp.liveAttachments).toBe(1);
    a.apply([
      { op: 'setMode', mode: 'allowlist', dryRun: false },
      { op: 'add', map: 'allow', cidr: '203.0.113.0/24' },
      { op: 'add', map: 'allow', cidr: '2001:db8::/32' },
      { op: 'add', map: 'deny', cidr: '198.51.100.7/32' },
    ]);
    a.setAllowDeadlines(new Map([['203.0.113.0/24', Date.now() + 60_000]]));
    expect(a.readView()).toEqual({ mode: 'allowlist', dryRun: false, allow: new Set(['203.0.113.0/24', '2001:db8::/32']), deny: new Set(['198.51.100.7/32']) });
    expect(a.lastSeenMs('203.0.113.0/24')).toBeUndefined();
    a.close();
    expect(dp.liveAttachments).toBe(0);

    // Re-opened from its pins: same entries, tracked again until destroyed.
    const b = dp.reopen(params);
    expect(dp.liveAttachments).toBe(1);
    expect(b.readView().allow).toEqual(new Set(['203.0.113.0/24', '2001:db8::/32']));
    b.apply([{ op: 'delete', map: 'allow', cidr: '2001:db8::/32' }]);
    expect(b.readView().allow).toEqual(new Set(['203.0.113.0/24']));
    b.destroy();
    expect(dp.liveAttachments).toBe(0);
    expect(dp.pinnedIds()).toEqual([]);

    for (let i = 0; i < 3; i++) (await dp.attach({ ...params, id: `att-dp${i + 2}` })).destroy();
    expect(dp.liveAttachments).toBe(0);
  } finally {
    await dp.close();
  }
});
