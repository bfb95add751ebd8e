// The eBPF datapath on its own, against the real kernel in a lab cgroup: policy entries go
// through the typed map views (written, read back as the canonical prefixes the policy engine
// uses), and the datapath stops tracking an attachment once its fds are closed or destroyed
// (its `live` set used to only grow, one entry per attach for the life of the daemon); and a
// removed allow entry's established connections are reset by the host-wide sever iterators.

import pino from 'pino';
import { createBpfDatapath } from '../src/bpf-datapath';
import { createDaemonLab, waitForLine, type DaemonLab } from './support/daemon-lab';

jest.setTimeout(60_000);

let dl: DaemonLab;
beforeAll(async () => {
  dl = await createDaemonLab();
});
afterAll(async () => {
  await dl?.close();
});

/** A datapath on the lab's bpffs root, small maps, no event consumer. */
const labDatapath = (extra: Partial<Parameters<typeof createBpfDatapath>[0]> = {}) =>
  createBpfDatapath({ root: dl.bpffsRoot, mapSizes: { allow: 64, deny: 64, ringbufBytes: 4096 }, onEvent: () => undefined, logger: pino({ level: 'silent' }), ...extra });

test('typed map views round-trip policy entries, and closed attachments are forgotten', async () => {
  const dp = labDatapath({ dnsRateLimit: { rateQps: 100, burst: 200 } });
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

test('an attach made in BLOCK_ALL (an auto attach) blocks from the attach on, before any command; one made DISABLED (an Attach call, before its ack) passes', async () => {
  const dp = labDatapath();
  const blocked = dl.cgroup('init-block');
  const open = dl.cgroup('init-open');
  try {
    const a = await dp.attach({ kind: 'cgroup', id: 'att-ib1', numericId: 21, cgroupPath: blocked.path }, 'BLOCK_ALL');
    const b = await dp.attach({ kind: 'cgroup', id: 'att-ib2', numericId: 22, cgroupPath: open.path });
    expect(a.readView().mode).toBe('block_all');
    expect(b.readView().mode).toBe('disabled');
    expect(await dl.canConnect('203.0.113.20', { cgroup: blocked })).toBe(false);
    expect(await dl.canConnect('203.0.113.20', { cgroup: open })).toBe(true);
    a.destroy();
    b.destroy();
  } finally {
    await dp.close();
  }
});

test('severing: removing an allow entry and severing it resets the cgroup workload\'s established TCP connection (host-wide iterators, sever_cfg naming the slot)', async () => {
  const dp = labDatapath();
  const cg = dl.cgroup('sever');
  const other = dl.cgroup('sever-other');
  const server = dl.net.spawn('python3', ['-c', SERVER_PY], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(server, 'ready', 10_000);
  try {
    const a = await dp.attach({ kind: 'cgroup', id: 'att-sv1', numericId: 11, cgroupPath: cg.path });
    const b = await dp.attach({ kind: 'cgroup', id: 'att-sv2', numericId: 12, cgroupPath: other.path });
    for (const x of [a, b]) x.apply([{ op: 'add', map: 'allow', cidr: '203.0.113.40/32' }, { op: 'setMode', mode: 'allowlist', dryRun: false }]);
    const client = (c: typeof cg) => dl.host.spawn('python3', ['-c', CLIENT_PY], { cgroup: c, stdio: ['ignore', 'pipe', 'inherit'] });
    const mine = client(cg);
    const theirs = client(other);
    await Promise.all([waitForLine(mine, 'connected', 10_000), waitForLine(theirs, 'connected', 10_000)]);
    const ended = (c: typeof mine) => new Promise<string>((resolve) => {
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      c.once('exit', () => resolve(out));
    });
    const mineEnded = ended(mine);
    a.apply([{ op: 'delete', map: 'allow', cidr: '203.0.113.40/32' }]);
    await a.sever('203.0.113.40/32');
    let timer: NodeJS.Timeout | undefined;
    const out = await Promise.race([mineEnded, new Promise<string>((r) => (timer = setTimeout(() => r('still connected'), 5000)))]);
    clearTimeout(timer);
    expect(out).toMatch(/error (103|104)/); // ECONNABORTED (bpf_sock_destroy) or ECONNRESET
    // The other attachment's connection, still allowed by its own slot, is untouched.
    expect(theirs.exitCode).toBeNull();
    theirs.kill();
    a.destroy();
    b.destroy();
  } finally {
    server.kill();
    await dp.close();
  }
});

const SERVER_PY = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('203.0.113.40', 8081)); s.listen(16)
print('ready', flush=True)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
`;

const CLIENT_PY = `
import socket
c = socket.create_connection(('203.0.113.40', 8081), timeout=5); c.settimeout(None)
print('connected', flush=True)
try:
    print('eof' if c.recv(1) == b'' else 'data', flush=True)
except OSError as e:
    print('error', e.errno, flush=True)
`;
