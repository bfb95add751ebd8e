// The package installed with dpkg on this machine (purged after, also on failure): the commands
// print the version, the installed unit verifies, and the installed daemon, started from the
// installed paths on the installed config and policy with only the unit's capabilities, attaches
// a cgroup in a lab network namespace. The unit itself is never enabled or started here.
// Kernel test: run it under the shared lock (flock /tmp/nf-kernel.lock npx jest test/install.test.ts).
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, ensureBpffs, type Lab } from '@netfence/lab';
import { buildDeb, run, sh, unitValues, VERSION } from './support';

let built: { dir: string; deb: string } | undefined;
let installed = false;
let lab: Lab | undefined;
let daemon: ChildProcess | undefined;
let scratch = '';
let bpffsRoot = '';

function installedVersion(): string | undefined {
  const r = run('dpkg-query', ['-W', '-f', '${db:Status-Status} ${Version}', 'netfence']);
  return r.status === 0 && r.stdout.startsWith('installed ') ? r.stdout.slice('installed '.length) : undefined;
}

beforeAll(() => {
  const before = run('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}', 'netfence']);
  // Never replace (and then purge) a netfence someone installed on this machine.
  if (before.status === 0 && !/^[pu]n/.test(before.stdout.trim()))
    throw new Error(`a netfence package is already on this machine (dpkg status ${before.stdout.trim()}): remove it first (dpkg --purge netfence)`);
  built = buildDeb();
  installed = true; // from here on, afterAll purges whatever dpkg managed to install
  sh('dpkg', ['-i', built.deb], { timeoutMs: 120_000 });
}, 300_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
  await lab?.close();
  if (bpffsRoot) rmSync(bpffsRoot, { recursive: true, force: true });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  if (installed) {
    const r = run('dpkg', ['--purge', 'netfence'], { timeoutMs: 120_000 });
    if (r.status !== 0) throw new Error(`dpkg --purge netfence failed: ${r.stderr}`);
  }
  if (built) rmSync(built.dir, { recursive: true, force: true });
}, 120_000);

test('dpkg records the package with its conffiles, and the installed commands print the version', () => {
  expect(installedVersion()).toBe(VERSION);
  const conffiles = sh('dpkg-query', ['-W', '-f', '${Conffiles}', 'netfence']);
  expect(conffiles).toMatch(/^ \/etc\/netfence\/config\.yaml [0-9a-f]{32}$/m);
  expect(conffiles).toMatch(/^ \/etc\/netfence\/policy\.yaml [0-9a-f]{32}$/m);
  for (const cmd of ['netfenced', 'netfence', 'netfence-dns', 'netfence-controlplane']) expect(sh(`/usr/bin/${cmd}`, ['--version']).trim()).toBe(VERSION);
  expect(sh('dpkg', ['-L', 'netfence'])).toMatch(/^\/usr\/lib\/netfence\/node_modules\/@netfence\/bpf-programs\/bpf\/tc_filter\.bpf\.o$/m);
  expect(existsSync('/var/lib/netfence')).toBe(true); // postinst made the state directory
});

test('the installed unit passes systemd-analyze verify; installing neither enabled nor started it', () => {
  const r = run('systemd-analyze', ['verify', '/lib/systemd/system/netfenced.service']);
  expect({ status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: '' });
  expect(existsSync('/etc/systemd/system/multi-user.target.wants/netfenced.service')).toBe(false);
});

test('the installed daemon, with only the unit\'s capabilities, starts on the installed config and policy in a lab namespace, attaches a cgroup block-all, detaches and stops', async () => {
  ensureBpffs();
  lab = createLab();
  const ns = lab.netns('pkg');
  const cg = lab.cgroup('pkg');
  scratch = mkdtempSync(join(tmpdir(), 'nf-pkg-run-'));
  bpffsRoot = `/sys/fs/bpf/nf${lab.id}pkg`;
  const socket = join(scratch, 'netfence.sock');
  // The capabilities the unit grants, as setpriv's bounding set (CAP_BPF -> +bpf).
  const unit = readFileSync('/lib/systemd/system/netfenced.service', 'utf8');
  const caps = unitValues(unit, 'CapabilityBoundingSet')[0]!.split(' ').map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`);
  // The installed config and policy, with the paths this test owns put over them through the
  // environment (which overrides the file); the upstream is a lab address with no route.
  const env = {
    ...process.env,
    NETFENCE_SOCKET: socket,
    NETFENCE_DATA_DIR: join(scratch, 'data'),
    NETFENCE_BPFFS_ROOT: bpffsRoot,
    NETFENCE_DNS_UPSTREAM: '10.200.254.53',
  };
  const stderr: string[] = [];
  daemon = ns.spawn('setpriv', ['--no-new-privs', '--inh-caps=-all', `--bounding-set=-all,${caps.join(',')}`, '/usr/bin/netfenced', 'start', '--config', '/etc/netfence/config.yaml'], { env });
  daemon.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => daemon!.once('exit', (code) => resolve(code)));
  const logs = () => stderr.join('').slice(-4000);

  for (let i = 0; i < 200 && !existsSync(socket) && daemon.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  if (!existsSync(socket)) throw new Error(`the installed daemon did not come up:\n${logs()}`);
  const cli = (...args: string[]) => sh('/usr/bin/netfenced', ['--socket', socket, ...args], { timeoutMs: 30_000 });

  const status = JSON.parse(cli('status', '--json')) as { version: string; controlPlaneMode: string };
  expect(status).toMatchObject({ version: VERSION, controlPlaneMode: 'embedded' });

  const attached = cli('attach', '--cgroup', cg.path, '--metadata', 'tenant=nfpkg');
  expect(attached).toMatch(/^Attached successfully\n {2}ID: +(\S+)\n/);
  const id = /ID: +(\S+)/.exec(attached)![1]!;
  expect(readdirSync(bpffsRoot)).toContain(id);
  // The installed default policy fails closed: the attachment blocks everything.
  const listed = JSON.parse(cli('list', '--json')) as { attachments: { id: string; mode: string; target: string }[] };
  expect(listed.attachments.find((a) => a.id === id)).toMatchObject({ mode: 'block-all', target: cg.path });

  expect(cli('detach', '--id', id)).toBe(`Detached ${id}\n`);
  expect(readdirSync(bpffsRoot)).not.toContain(id);

  daemon.kill('SIGTERM');
  expect({ code: await exited, logs: (await exited) === 0 ? '' : logs() }).toEqual({ code: 0, logs: '' });
}, 120_000);
