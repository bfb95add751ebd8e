// The CLI against a real DaemonService server on a unix socket (the daemon's own
// routes, over a stand-in Daemon object: these tests are about the CLI surface;
// the daemon's behaviour is tested end to end in packages/daemon/test).
import http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { AttachmentInfoSchema, AttachmentType, ConnectionState, DaemonStatusSchema, DnsMode, FirewallEventSchema, PolicyMode } from '@netfence/proto';
import { autoAttachRulesFromPb, autoAttachRulesToPb, DaemonError, daemonRoutes, type Daemon } from '@netfence/daemon';
import { writeFileSync } from 'node:fs';
import { EXIT, runCli } from './cli';

function fakeDaemon(): Daemon & { attached: Map<string, string>; metadata: Map<string, Record<string, string>>; xdp: Set<string>; pageSizes: number[] } {
  const attached = new Map<string, string>();
  const metadata = new Map<string, Record<string, string>>();
  /** Attached with xdp: listed at hook xdp, or on a bridge (`br*`) fallen back to TC. */
  const xdp = new Set<string>();
  const pageSizes: number[] = [];
  let n = 0;
  /** The auto-attach rules, validated as the daemon validates them. */
  let rules = autoAttachRulesToPb([]);
  return {
    getAutoAttachRules: () => rules,
    setAutoAttachRules(msg) {
      rules = autoAttachRulesToPb(autoAttachRulesFromPb(msg));
      return rules;
    },
    attached,
    metadata,
    xdp,
    pageSizes,
    controlPlaneUrl: 'http://127.0.0.1:1',
    async start() {},
    async close() {},
    async attach(input) {
      const target = input.interfaceName ?? input.cgroupPath!;
      if (target === 'nope0') throw new DaemonError('NETFENCE_ERR_NOT_FOUND', 'interface "nope0" does not exist');
      if ([...attached.values()].includes(target)) throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', `${target} is already attached`);
      const id = `att-${String(++n).padStart(3, '0')}`;
      attached.set(id, target);
      metadata.set(id, { ...input.metadata });
      if (input.xdp) xdp.add(id);
      return { id, dnsAddress: `127.0.0.1:${11000 + n}` };
    },
    async detach(id) {
      if (!attached.delete(id)) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `no attachment "${id}"`);
    },
    list(pageSize, pageToken) {
      pageSizes.push(pageSize);
      const ids = [...attached.keys()].sort();
      const start = pageToken ? ids.indexOf(pageToken) + 1 : 0;
      const size = pageSize || 100;
      const page = ids.slice(start, start + size);
      return {
        attachments: page.map((id) =>
          create(AttachmentInfoSchema, {
            id,
            target: attached.get(id)!,
            type: target(id).startsWith('/') ? AttachmentType.CGROUP : AttachmentType.TC,
            mode: id === 'att-002' ? PolicyMode.BLOCK_ALL : PolicyMode.ALLOWLIST,
            dnsMode: DnsMode.PROXY,
            dnsAddress: `127.0.0.1:${11000 + Number(id.slice(4))}`,
            packetsAllowed: id === 'att-001' ? 123456n : 5n,
            packetsBlocked: 2n,
            awaitingAck: id === 'att-002',
            hook: target(id).startsWith('/') ? 'cgroup' : xdp.has(id) && !target(id).startsWith('br') ? 'xdp' : 'tc',
            xdpFallback: xdp.has(id) && target(id).startsWith('br') ? 'the kernel refused native XDP: ENOTSUP' : '',
          }),
        ),
        nextPageToken: start + size < ids.length ? page[page.length - 1]! : '',
        totalCount: ids.length,
      };
    },
    status() {
      return create(DaemonStatusSchema, { ...statusOverride, version: '0.1.0', daemonId: 'd1', hostname: 'h', controlPlaneState: ConnectionState.CONNECTED, controlPlaneAddress: 'http://cp.test:9000', attachmentCount: attached.size });
    },
    async *watchEvents(o) {
      const all = [
        create(FirewallEventSchema, { time: timestampFromMs(Date.UTC(2026, 0, 1)), attachmentId: 'att-1', event: { case: 'drop', value: { destination: '203.0.113.10', port: 8080, protocol: 6, reason: 'deny_cidr', learnedFrom: 'allowed.test', hook: 'connect4' } } }),
        create(FirewallEventSchema, { time: timestampFromMs(Date.UTC(2026, 0, 1)), attachmentId: 'att-2', event: { case: 'dns', value: { name: 'evil.test', qtype: 'A', verdict: 'blocked', reason: 'rule', rcode: 'REFUSED' } } }),
      ];
      for (const e of all.filter((e) => !o.attachmentId || e.attachmentId === o.attachmentId).slice(-o.recent)) yield e;
    },
  };
  function target(id: string) {
    return attached.get(id) ?? '';
  }
}

let statusOverride: { controlPlaneMode?: string; controlPlaneAddress?: string; attachmentsAwaitingAck?: number } = { controlPlaneMode: 'remote' };

describe('netfenced CLI', () => {
  let dir: string;
  let socket: string;
  let server: http2.Http2Server;
  let daemon: ReturnType<typeof fakeDaemon>;
  const sessions = new Set<http2.ServerHttp2Session>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nf-cli-'));
    socket = join(dir, 'd.sock');
    daemon = fakeDaemon();
    server = http2.createServer(connectNodeAdapter({ routes: daemonRoutes(daemon) }));
    server.on('session', (s) => sessions.add(s));
    await new Promise<void>((r) => server.listen(socket, () => r()));
  });
  afterAll(async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(...argv: string[]) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(['--socket', socket, ...argv], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s), env: {} });
    return { code, stdout, stderr };
  }

  it('events: drop events with learnedFrom and DNS decisions, one line each, --json one object per line, --id filters', async () => {
    const h = await run('events');
    expect(h).toEqual({
      code: EXIT.OK,
      stderr: '',
      stdout: '2026-01-01T00:00:00.000Z att-1 drop 203.0.113.10:8080/tcp deny_cidr learned-from=allowed.test hook=connect4\n2026-01-01T00:00:00.000Z att-2 dns evil.test A blocked REFUSED rule\n',
    });
    const j = await run('events', '--id', 'att-1', '--json');
    expect(j.code).toBe(EXIT.OK);
    expect(j.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      { time: '2026-01-01T00:00:00.000Z', attachmentId: 'att-1', type: 'drop', destination: '203.0.113.10', port: 8080, protocol: 'tcp', reason: 'deny_cidr', learnedFrom: 'allowed.test', dryRun: false, hook: 'connect4' },
    ]);
    expect((await run('events', '--recent', '5000')).code).toBe(EXIT.USAGE);
  });

  it('attaches, lists (all pages), shows status and detaches, with --json on stdout only', async () => {
    const a = await run('attach', '--interface', 'veth1', '--metadata', 'tenant=acme,job=ci-1', '--json');
    expect(a.code).toBe(EXIT.OK);
    expect(JSON.parse(a.stdout)).toEqual({ id: 'att-001', dnsAddress: '127.0.0.1:11001' });
    await run('attach', '--cgroup', '/sys/fs/cgroup/x');
    await run('attach', '--interface', 'veth2');
    const l = await run('list', '--page-size', '2', '--all', '--json');
    expect(l.code).toBe(EXIT.OK);
    const listed = JSON.parse(l.stdout) as { attachments: { id: string; type: string; mode: string; packetsAllowed: string }[]; totalCount: number };
    expect(listed.attachments.map((x) => x.id)).toEqual(['att-001', 'att-002', 'att-003']);
    expect(listed.totalCount).toBe(3);
    expect(listed.attachments[0]).toMatchObject({ type: 'tc', mode: 'allowlist', packetsAllowed: '123456' });
    const one = await run('list', '--page-size', '2', '--json');
    expect(JSON.parse(one.stdout).attachments).toHaveLength(2);
    expect(JSON.parse(one.stdout).nextPageToken).toBe('att-002');
    const human = await run('list');
    expect(human.stderr).toBe('');
    expect(human.stdout).toContain('Total: 3 attachments');
    const s = await run('status', '--json');
    expect(JSON.parse(s.stdout)).toMatchObject({ daemonId: 'd1', controlPlaneState: 'connected', attachmentCount: 3 });
    expect((await run('detach', '--id', 'att-002')).code).toBe(EXIT.OK);
    expect(daemon.attached.has('att-002')).toBe(false);
  });

  it('maps daemon refusals to exit 1 with the gRPC code named', async () => {
    const nf = await run('attach', '--interface', 'nope0');
    expect(nf.code).toBe(EXIT.REJECTED);
    expect(nf.stderr).toMatch(/does not exist \(NotFound\)/);
    const dup = await run('attach', '--interface', 'veth1');
    expect(dup.code).toBe(EXIT.REJECTED);
    expect(dup.stderr).toMatch(/AlreadyExists/);
    const d = await run('detach', '--id', 'att-999');
    expect(d.code).toBe(EXIT.REJECTED);
  });

  it('rejects bad usage with exit 2 before calling the daemon', async () => {
    expect((await run('attach')).code).toBe(EXIT.USAGE);
    expect((await run('attach', '--interface', 'a', '--cgroup', '/b')).code).toBe(EXIT.USAGE);
    const m = await run('attach', '--interface', 'a', '--metadata', 'novalue');
    expect(m.code).toBe(EXIT.USAGE);
    expect(m.stderr).toContain('novalue');
    expect((await run('list', '--page-size', '0')).code).toBe(EXIT.USAGE);
    expect((await run('frobnicate')).code).toBe(EXIT.USAGE);
    expect((await run('attach', '--interface', 'a', '--direction', 'sideways')).code).toBe(EXIT.USAGE);
  });

  it('reports an unreachable daemon with exit 3', async () => {
    let stderr = '';
    const code = await runCli(['--socket', join(dir, 'missing.sock'), 'status'], { stdout: () => undefined, stderr: (s) => (stderr += s), env: {} });
    expect(code).toBe(EXIT.UNREACHABLE);
    expect(stderr).toMatch(/error:/);
  });

  it('prints attach, list, status and detach on stdout in exactly the netfence.v1 formats', async () => {
    const a = await run('attach', '-i', 'veth9');
    expect(a).toEqual({ code: EXIT.OK, stderr: '', stdout: 'Attached successfully\n  ID:          att-004\n  DNS Address: 127.0.0.1:11004\n' });
    const l = await run('list');
    expect(l.stderr).toBe('');
    expect(l.stdout).toBe(
      [
        'ID       TARGET  TYPE  MODE       DNS MODE  DNS ADDR         PKTS OK  PKTS BLOCK',
        'att-001  veth1   tc    allowlist  proxy     127.0.0.1:11001  123456   2',
        'att-003  veth2   tc    allowlist  proxy     127.0.0.1:11003  5        2',
        'att-004  veth9   tc    allowlist  proxy     127.0.0.1:11004  5        2',
        '',
        'Total: 3 attachments',
        '',
      ].join('\n'),
    );
    expect(daemon.pageSizes[daemon.pageSizes.length - 1]).toBe(100); // --page-size defaults to 100
    statusOverride = { controlPlaneMode: 'remote' };
    const s = await run('status');
    expect(s.stdout).toBe(
      'Netfence Daemon Status\n  Version:           0.1.0\n  Daemon ID:         d1\n  Hostname:          h\n  Attachments:       3\n  Control Plane:     connected\n  Control Plane URL: http://cp.test:9000\n',
    );
    statusOverride = { controlPlaneMode: 'embedded-empty', attachmentsAwaitingAck: 1 };
    const e = await run('status');
    expect(e.stdout).toBe(
      'Netfence Daemon Status\n  Version:           0.1.0\n  Daemon ID:         d1\n  Hostname:          h\n  Attachments:       3\n  Control Plane:     connected\n  Policy:            none (embedded control plane, empty policy: every attachment is block-all)\n',
    );
    expect(JSON.parse((await run('status', '--json')).stdout)).toMatchObject({ controlPlaneMode: 'embedded-empty', attachmentsAwaitingAck: 1 });
    statusOverride = { controlPlaneMode: 'remote' };
    const d = await run('detach', '--id', 'att-004');
    expect(d).toEqual({ code: EXIT.OK, stderr: '', stdout: 'Detached att-004\n' });
    const gone = await run('detach', '--id', 'att-004');
    expect(gone.code).toBe(EXIT.REJECTED);
    expect(gone.stdout).toBe('');
    expect(gone.stderr).toMatch(/^error: /);
  });

  it('shows block-all with a hyphen and an attachment awaiting its ack in --json', async () => {
    daemon.attached.set('att-002', '/sys/fs/cgroup/x');
    const l = await run('list', '--json');
    const rows = JSON.parse(l.stdout).attachments as { id: string; mode: string; type: string; awaitingAck: boolean }[];
    expect(rows.find((r) => r.id === 'att-002')).toMatchObject({ mode: 'block-all', type: 'cgroup', awaitingAck: true });
    expect(rows.find((r) => r.id === 'att-001')).toMatchObject({ awaitingAck: false });
    expect((await run('list')).stdout).toContain('\natt-002  /sys/fs/cgroup/x  cgroup  block-all  proxy ');
    daemon.attached.delete('att-002');
  });

  it('takes the short flags -s, -i, -g and keeps every pair of a repeated --metadata', async () => {
    let stdout = '';
    const code = await runCli(['-s', socket, 'attach', '-g', '/sys/fs/cgroup/nf-short', '--metadata', 'tenant=acme', '--metadata', 'job=ci-7,env=prod'], { stdout: (x) => (stdout += x), stderr: () => undefined, env: {} });
    expect(code).toBe(EXIT.OK);
    const id = /ID: +(\S+)/.exec(stdout)![1]!;
    expect(daemon.metadata.get(id)).toEqual({ tenant: 'acme', job: 'ci-7', env: 'prod' });
    expect((await run('detach', '--id', id)).code).toBe(EXIT.OK);
  });

  it('attach --xdp asks the daemon for XDP; list --json shows the hook and a fallback, the table stays netfence.v1', async () => {
    const x = JSON.parse((await run('attach', '-i', 'vethx', '--xdp', '--json')).stdout) as { id: string };
    const b = JSON.parse((await run('attach', '-i', 'brx', '--xdp', '--json')).stdout) as { id: string };
    const t = JSON.parse((await run('attach', '-i', 'vetht', '--json')).stdout) as { id: string };
    expect([...daemon.xdp].sort()).toEqual([x.id, b.id].sort());
    const rows = JSON.parse((await run('list', '--json')).stdout).attachments as { id: string; hook: string; xdpFallback?: string }[];
    const row = (id: string) => rows.find((r) => r.id === id)!;
    expect(row(x.id)).toMatchObject({ hook: 'xdp' });
    expect(row(x.id).xdpFallback).toBeUndefined();
    expect(row(b.id)).toMatchObject({ hook: 'tc', xdpFallback: 'the kernel refused native XDP: ENOTSUP' });
    expect(row(t.id)).toMatchObject({ hook: 'tc' });
    expect((await run('list')).stdout.split('\n')[0]).toBe('ID       TARGET  TYPE  MODE       DNS MODE  DNS ADDR         PKTS OK  PKTS BLOCK');
    const cg = await run('attach', '-g', '/sys/fs/cgroup/nf-x', '--xdp');
    expect(cg.code).toBe(EXIT.USAGE);
    expect(cg.stderr).toContain('--xdp applies to --interface only');
    for (const id of [x.id, b.id, t.id]) expect((await run('detach', '--id', id)).code).toBe(EXIT.OK);
  });

  it('auto-attach set FILE replaces the rules (YAML or JSON) and prints them as the config writes them; get round-trips; a bad rule changes nothing', async () => {
    const yaml = join(dir, 'rules.yaml');
    writeFileSync(yaml, 'auto_attach:\n  - interface: "tap*"\n    kind: tap\n    metadata: { vm_id: "{name}" }\n  - cgroup: /sys/fs/cgroup/jobs/*\n');
    const s = await run('auto-attach', 'set', yaml);
    expect(s).toEqual({ code: EXIT.OK, stderr: '', stdout: 'auto_attach:\n  - interface: tap*\n    kind: tap\n    metadata:\n      vm_id: "{name}"\n  - cgroup: /sys/fs/cgroup/jobs/*\n' });
    const g = await run('auto-attach', 'get');
    expect(g.stdout).toBe(s.stdout);
    writeFileSync(yaml, g.stdout);
    expect((await run('auto-attach', 'set', yaml)).stdout).toBe(s.stdout);
    const json = join(dir, 'rules.json');
    writeFileSync(json, JSON.stringify([{ interface: 'nfv*' }, { interface: 'x', kind: 'bond' }]));
    const bad = await run('auto-attach', 'set', json);
    expect(bad.code).toBe(EXIT.REJECTED);
    expect(bad.stderr).toMatch(/rules\.json\[1\.kind\].*\(InvalidArgument\)/);
    expect(JSON.parse((await run('auto-attach', 'get', '--json')).stdout)).toEqual({
      autoAttach: [
        { interface: 'tap*', kind: 'tap', metadata: { vm_id: '{name}' }, xdp: false },
        { cgroup: '/sys/fs/cgroup/jobs/*', metadata: {} },
      ],
    });
    const missing = await run('auto-attach', 'set', join(dir, 'nope.yaml'));
    expect(missing.code).toBe(EXIT.USAGE);
    expect(missing.stderr).toContain('cannot read');
  });

  it('prints its version from package.json with --version', async () => {
    const v = await run('--version');
    expect(v.code).toBe(EXIT.OK);
    expect(v.stdout).toBe(`${(require('../package.json') as { version: string }).version}\n`);
  });

  it('prints help with exit 0', async () => {
    const h = await run('--help');
    expect(h.code).toBe(EXIT.OK);
    expect(h.stdout).toContain('attach');
  });
});
