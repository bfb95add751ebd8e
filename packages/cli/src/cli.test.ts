// The CLI against a real DaemonService server on a unix socket (the daemon's own
// routes, over a stand-in Daemon object: these tests are about the CLI surface;
// the daemon's behaviour is tested end to end in packages/daemon/test).
import http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { AttachmentInfoSchema, AttachmentType, ConnectionState, DaemonStatusSchema, PolicyMode } from '@netfence/proto';
import { DaemonError, daemonRoutes, type Daemon } from '@netfence/daemon';
import { EXIT, runCli } from './cli';

function fakeDaemon(): Daemon & { attached: Map<string, string> } {
  const attached = new Map<string, string>();
  let n = 0;
  return {
    attached,
    controlPlaneUrl: 'http://127.0.0.1:1',
    async start() {},
    async close() {},
    async attach(input) {
      const target = input.interfaceName ?? input.cgroupPath!;
      if (target === 'nope0') throw new DaemonError('NETFENCE_ERR_NOT_FOUND', 'interface "nope0" does not exist');
      if ([...attached.values()].includes(target)) throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', `${target} is already attached`);
      const id = `att-${String(++n).padStart(3, '0')}`;
      attached.set(id, target);
      return { id, dnsAddress: `127.0.0.1:${11000 + n}` };
    },
    async detach(id) {
      if (!attached.delete(id)) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `no attachment "${id}"`);
    },
    list(pageSize, pageToken) {
      const ids = [...attached.keys()].sort();
      const start = pageToken ? ids.indexOf(pageToken) + 1 : 0;
      const size = pageSize || 100;
      const page = ids.slice(start, start + size);
      return {
        attachments: page.map((id) =>
          create(AttachmentInfoSchema, { id, target: attached.get(id)!, type: AttachmentType.TC, mode: PolicyMode.ALLOWLIST, packetsAllowed: 5n, packetsBlocked: 2n }),
        ),
        nextPageToken: start + size < ids.length ? page[page.length - 1]! : '',
        totalCount: ids.length,
      };
    },
    status() {
      return create(DaemonStatusSchema, { version: '0.1.0', daemonId: 'd1', hostname: 'h', controlPlaneState: ConnectionState.CONNECTED, controlPlaneAddress: 'x', attachmentCount: attached.size });
    },
  };
}

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
    expect(listed.attachments[0]).toMatchObject({ type: 'tc', mode: 'allowlist', packetsAllowed: '5' });
    const one = await run('list', '--page-size', '2', '--json');
    expect(JSON.parse(one.stdout).attachments).toHaveLength(2);
    expect(JSON.parse(one.stdout).nextPageToken).toBe('att-002');
    const human = await run('list');
    expect(human.stdout).toBe('');
    expect(human.stderr).toContain('3 of 3 attachment(s)');
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

  it('prints help with exit 0', async () => {
    const h = await run('--help');
    expect(h.code).toBe(EXIT.OK);
    expect(h.stdout).toContain('attach');
  });
});
