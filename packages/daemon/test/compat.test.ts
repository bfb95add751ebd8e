// netfence.v1 drop-in: the real daemon started the way a netfence.v1 host starts it (no config
// at all, a netfence.v1 config file, netfence.v1 environment variables), driven through the
// netfence.v1 CLI surface (the actual `netfenced` entry point, run from source), with stdout
// compared byte for byte against spec/netfence-v1-compat.md. Needs root (run under the lock).

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ephemeralDataDir } from '../src/config';
import { createDaemonApi } from './support/grpc';
import { createDaemonLab, eventually, HOST_ADDR, REPO, sleep, startForwardedControlPlane, UPSTREAM, type DaemonLab } from './support/daemon-lab';
import type { TestControlPlane } from './support/grpc';

jest.setTimeout(180_000);

const REGISTER = join(REPO, 'tools', 'swc-register.cjs');
const MAIN = join(REPO, 'packages', 'cli', 'src', 'main.ts');
const VERSION = (require('../package.json') as { version: string }).version;
/** Nothing a test does may reach the machine's own daemon socket. */
const DEFAULT_SOCKET = '/var/run/netfence.sock';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `netfenced ARGS` (the real entry point) to completion. */
function netfenced(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  expect(args).not.toContain(DEFAULT_SOCKET);
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['-r', REGISTER, MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? 128, stdout, stderr });
    });
  });
}

interface Started {
  readonly socket: string;
  readonly log: () => string;
  /** `netfenced -s SOCKET ARGS` against this daemon. */
  cli(...args: string[]): Promise<Run>;
  stop(): Promise<number | null>;
}

/** `netfenced -s SOCKET start [ARGS]` in the lab's host namespace with exactly `env`; resolves once it serves. */
async function startNetfenced(dl: DaemonLab, name: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<Started> {
  const dir = join(dl.tmp, name);
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, 'netfence.sock');
  const logFile = join(dir, `daemon.${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = dl.host.spawn(process.execPath, ['-r', REGISTER, MAIN, '-s', socket, 'start', ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  let dead: number | null | undefined;
  void exited.then((c) => (dead = c));
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const stop = async () => {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  running.add(stop);
  void exited.then(() => running.delete(stop));
  dl.lab.defer(async () => {
    if (dead === undefined) await stop();
  });
  const api = createDaemonApi(socket);
  try {
    const end = Date.now() + 60_000;
    for (;;) {
      if (dead !== undefined) throw new Error(`netfenced exited (${dead}) during start:\n${log()}`);
      if (existsSync(socket) && (await api.status().then(() => true, () => false))) break;
      if (Date.now() > end) throw new Error(`netfenced did not serve ${socket}:\n${log()}`);
      await sleep(100);
    }
  } finally {
    api.close();
  }
  return { socket, log, stop, cli: (...a: string[]) => netfenced(['-s', socket, ...a]) };
}

/** The ID and DNS address of `Attached successfully` output, after checking its exact shape. */
function parseAttached(r: Run): { id: string; dns: string } {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const m = /^Attached successfully\n {2}ID: {10}(att-[0-9a-f]{12})\n {2}DNS Address: ([0-9.]+:\d+)\n$/.exec(r.stdout);
  if (!m) throw new Error(`not the netfence.v1 attach output: ${JSON.stringify(r.stdout)}`);
  return { id: m[1]!, dns: m[2]! };
}

/** The spec's table, built here cell by cell: each column as wide as its widest cell plus two spaces (the last unpadded). */
function v1Table(rows: string[][]): string {
  const all = [['ID', 'TARGET', 'TYPE', 'MODE', 'DNS MODE', 'DNS ADDR', 'PKTS OK', 'PKTS BLOCK'], ...rows];
  const w = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return `${all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(w[i]! - c.length + 2))).join('')).join('\n')}\n\nTotal: ${rows.length} attachments\n`;
}

/**
 * The v1 table of one attachment, byte for byte. The counters keep moving while a test runs
 * (ARP and NDP count as allowed), so the row's counters are read from the output itself and
 * must be decimal integers no smaller than `floor` (read earlier); the rest, alignment
 * included, must be exactly the spec's format.
 */
function expectV1Row(out: { code: number; stderr: string; stdout: string }, row: string[], floor: { packetsAllowed: string; packetsBlocked: string }): void {
  expect([out.code, out.stderr]).toEqual([0, '']);
  const cells = (out.stdout.split('\n')[1] ?? '').trim().split(/\s{2,}/);
  const [ok, block] = cells.slice(-2);
  expect(ok).toMatch(/^\d+$/);
  expect(block).toMatch(/^\d+$/);
  expect(BigInt(ok!)).toBeGreaterThanOrEqual(BigInt(floor.packetsAllowed));
  expect(BigInt(block!)).toBeGreaterThanOrEqual(BigInt(floor.packetsBlocked));
  expect(out.stdout).toBe(v1Table([[...row, ok!, block!]]));
}

function v1Status(s: { daemonId: string; attachments: number; state: string; url?: string }, extra = ''): string {
  return (
    `Netfence Daemon Status\n  Version:           ${VERSION}\n  Daemon ID:         ${s.daemonId}\n  Hostname:          ${hostname()}\n` +
    `  Attachments:       ${s.attachments}\n  Control Plane:     ${s.state}\n${s.url ? `  Control Plane URL: ${s.url}\n` : ''}${extra}`
  );
}

async function daemonId(d: Started): Promise<string> {
  const r = await d.cli('status', '--json');
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as { daemonId: string }).daemonId;
}

/** Counters from `list --json` (the table shows them too; they move with traffic). */
async function listed(d: Started, id: string) {
  const r = await d.cli('list', '--json');
  return (JSON.parse(r.stdout) as { attachments: { id: string; mode: string; packetsAllowed: string; packetsBlocked: string; awaitingAck: boolean }[] }).attachments.find((a) => a.id === id);
}

let dl: DaemonLab;
let cp: TestControlPlane;
let cpUrl: string;

beforeAll(async () => {
  dl = await createDaemonLab();
  const f = await startForwardedControlPlane(dl, 'compat', { ackPolicy: () => ({ mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] }) });
  cp = f.cp;
  cpUrl = f.url;
});

/** Stops of the daemons still running. */
const running = new Set<() => Promise<number | null>>();

// The tests share the lab's veth: whatever a failed test left (a daemon, a pinned filter) is
// removed before the next one, so one failure cannot make the next test fail.
afterEach(async () => {
  for (const stop of [...running]) await stop();
  if (existsSync(dl.bpffsRoot)) for (const e of readdirSync(dl.bpffsRoot)) rmSync(join(dl.bpffsRoot, e), { recursive: true, force: true });
});

afterAll(async () => {
  await dl?.close();
});

describe('netfence.v1 config that netfenced refuses at start, naming the cause', () => {
  // Config is checked before anything is opened; the environment still points every path into the test's own directories.
  const safe = () => ({ NETFENCE_BPFFS_ROOT: `${dl.bpffsRoot}-refused`, NETFENCE_DATA_DIR: join(dl.tmp, 'refused') });

  it('an ack timeout that cannot be meant, from the environment: exit 2, the variable named, not the file', async () => {
    const file = join(dl.tmp, 'refused.yaml');
    writeFileSync(file, 'control_plane:\n  subscribe_ack_timeout: 5s\n');
    const r = await netfenced(['-s', join(dl.tmp, 'refused.sock'), 'start', '-c', file], { ...safe(), NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: '5000000000' });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('NETFENCE_ERR_CONFIG');
    expect(r.stderr).toContain('environment variable NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: control_plane.subscribe_ack_timeout');
    expect(r.stderr).not.toContain(file);
  });

  it('a host name in dns.upstream: exit 2, dns.upstream named', async () => {
    const file = join(dl.tmp, 'refused-upstream.yaml');
    writeFileSync(file, 'dns:\n  upstream: "resolver.example.test:53"\n');
    const r = await netfenced(['-s', join(dl.tmp, 'refused.sock'), 'start', '--config', file], safe());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: dns.upstream: "resolver.example.test:53" names a host`);
  });
});

describe('netfenced with no config file, no control plane URL and no policy file (netfence.v1 defaults)', () => {
  it('starts with an empty policy (every attachment block-all), says so, and keeps enforcing across a restart with data_dir ""', async () => {
    // Every netfence.v1 key has its netfence.v1 default. Netfence's own bpffs_root points into the
    // lab, and data_dir is given netfence.v1's default ("") explicitly: Netfence's default
    // (/var/lib/netfence, a documented difference) is the machine's, not a test's. Empty: kept for
    // this boot under /run/netfence, per bpffs root.
    const env = { NETFENCE_BPFFS_ROOT: dl.bpffsRoot, NETFENCE_DATA_DIR: '' };
    const stateDir = ephemeralDataDir(dl.bpffsRoot);
    expect(stateDir.startsWith('/run/netfence/')).toBe(true);
    rmSync(stateDir, { recursive: true, force: true });
    dl.lab.defer(() => {
      rmSync(stateDir, { recursive: true, force: true });
      if (existsSync('/run/netfence') && readdirSync('/run/netfence').length === 0) rmdirSync('/run/netfence');
    });
    let d = await startNetfenced(dl, 'defaults', [], env);
    expect(d.log()).toContain('no control plane URL and no policy file: embedded control plane with an empty policy, every attachment is block-all');
    const id0 = await daemonId(d);
    const s = await d.cli('status');
    expect(s).toEqual({
      code: 0,
      stderr: '',
      stdout: v1Status({ daemonId: id0, attachments: 0, state: 'connected' }, '  Policy:            none (embedded control plane, empty policy: every attachment is block-all)\n'),
    });
    expect(JSON.parse((await d.cli('status', '--json')).stdout)).toMatchObject({ controlPlaneMode: 'embedded-empty' });

    const a = parseAttached(await d.cli('attach', '-i', dl.wlVeth.a));
    expect(a.dns).toMatch(/^127\.0\.0\.1:(1[01]\d{3})$/); // dns.listen_addr and the port range defaults
    expect(await dl.canConnect('203.0.113.30')).toBe(false);
    const c = (await listed(d, a.id))!;
    expect(Number(c.packetsBlocked)).toBeGreaterThan(0);
    expectV1Row(await d.cli('list'), [a.id, dl.wlVeth.a, 'tc', 'block-all', 'disabled', a.dns], c);
    expect(existsSync(join(stateDir, 'attachments', `${a.id}.json`))).toBe(true);

    expect(await d.stop()).toBe(0);
    expect(await dl.canConnect('203.0.113.30')).toBe(false); // pinned, daemon down
    d = await startNetfenced(dl, 'defaults', [], env);
    expect(await daemonId(d)).toBe(id0); // the same state was found again
    const after = await listed(d, a.id);
    expect(after?.mode).toBe('block-all');
    expect(await dl.canConnect('203.0.113.30')).toBe(false);
    expect(await d.cli('detach', '--id', a.id)).toEqual({ code: 0, stderr: '', stdout: `Detached ${a.id}\n` });
    expect(await d.stop()).toBe(0);
  });
});

describe('netfenced from a netfence.v1 config file', () => {
  it('accepts every key of the spec table, and the CLI prints exactly the netfence.v1 formats', async () => {
    const dir = join(dl.tmp, 'v1file');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'netfence.yaml');
    writeFileSync(
      file,
      [
        'dns:',
        `  listen_addr: ${HOST_ADDR}`,
        '  port_min: 12000',
        '  port_max: 12010',
        `  upstream: "${UPSTREAM}"`,
        'control_plane:',
        `  url: ${cpUrl}`,
        '  subscribe_ack_timeout: 1m30s',
        `data_dir: ${join(dir, 'data')}`,
        'log_level: WARNING',
        `socket: ${join(dir, 'from-file.sock')}`,
        'metadata:',
        '  site: lab',
        '',
      ].join('\n'),
    );
    const d = await startNetfenced(dl, 'v1file', ['-c', file], { NETFENCE_BPFFS_ROOT: dl.bpffsRoot });
    expect(d.log()).not.toMatch(/"level":30/); // log_level WARNING = warn: no info lines
    const id0 = await daemonId(d);
    expect(await d.cli('status')).toEqual({ code: 0, stderr: '', stdout: v1Status({ daemonId: id0, attachments: 0, state: 'connected', url: cpUrl }) });
    expect((await netfenced(['--socket', d.socket, 'list'])).stdout).toBe(v1Table([]));

    const from = cp.events.length;
    const a = parseAttached(await d.cli('attach', '--interface', dl.wlVeth.a, '--metadata', 'tenant=acme', '--metadata', 'job=ci-42,env=test'));
    expect(a.dns).toMatch(new RegExp(`^${HOST_ADDR.replace(/\./g, '\\.')}:120(0\\d|10)$`));
    const sub = await cp.waitFor((e) => e.msg.event === 'subscribed' && e.msg.subscribed!.id === a.id, 5000, 'Subscribed', from);
    expect(sub.msg.subscribed!.metadata).toEqual({ tenant: 'acme', job: 'ci-42', env: 'test' });
    expect(await dl.canConnect('203.0.113.30', { timeoutSec: 5 })).toBe(true); // the ack's allowlist applied before Attach returned
    expect(await dl.canConnect('203.0.113.40')).toBe(false);
    const c = (await listed(d, a.id))!;
    expectV1Row(await d.cli('list', '--page-size', '5', '--all'), [a.id, dl.wlVeth.a, 'tc', 'allowlist', 'disabled', a.dns], c);
    expect(Number(c.packetsBlocked)).toBeGreaterThan(0);
    expect((await d.cli('status')).stdout).toBe(v1Status({ daemonId: id0, attachments: 1, state: 'connected', url: cpUrl }));

    const dup = await d.cli('attach', '-i', dl.wlVeth.a);
    expect(dup.code).toBe(1);
    expect(dup.stdout).toBe('');
    expect(dup.stderr).toMatch(/^error: .*already attached/);
    const usage = await d.cli('attach', '-i', dl.wlVeth.a, '-g', '/sys/fs/cgroup');
    expect(usage.code).toBe(2);
    expect(usage.stdout).toBe('');
    expect(await d.cli('detach', '--id', a.id)).toEqual({ code: 0, stderr: '', stdout: `Detached ${a.id}\n` });
    const gone = await d.cli('detach', '--id', a.id);
    expect([gone.code, gone.stdout]).toEqual([1, '']);
    expect(await d.stop()).toBe(0);
    const down = await netfenced(['-s', d.socket, 'status']);
    expect([down.code, down.stdout]).toEqual([3, '']);
  });
});

describe('netfenced from netfence.v1 environment variables, with subscribe_ack_timeout 0', () => {
  it('attaches without waiting, blocks all traffic until the delayed SubscribedAck is applied, then applies it', async () => {
    const dir = join(dl.tmp, 'v1env');
    const env = {
      NETFENCE_BPFFS_ROOT: dl.bpffsRoot,
      NETFENCE_DATA_DIR: join(dir, 'data'),
      NETFENCE_DNS_LISTEN_ADDR: HOST_ADDR,
      NETFENCE_DNS_PORT_MIN: '13000',
      NETFENCE_DNS_PORT_MAX: '13010',
      NETFENCE_DNS_UPSTREAM: UPSTREAM,
      NETFENCE_CONTROL_PLANE_URL: cpUrl,
      NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: '0',
      NETFENCE_LOG_LEVEL: 'DEBUG',
    };
    const d = await startNetfenced(dl, 'v1env', [], env);
    cp.ackMode = 'never';
    let a: { id: string; dns: string };
    try {
      const from = cp.events.length;
      a = parseAttached(await d.cli('attach', '-i', dl.wlVeth.a, '--metadata', 'tenant=acme'));
      expect(a.dns).toMatch(/:130(0\d|10)$/);
      await cp.waitFor((e) => e.msg.event === 'subscribed' && e.msg.subscribed!.id === a.id, 5000, 'Subscribed', from);
      const waiting = (await listed(d, a.id))!;
      expect(waiting).toMatchObject({ mode: 'block-all', awaitingAck: true });
      expect(JSON.parse((await d.cli('status', '--json')).stdout)).toMatchObject({ attachmentsAwaitingAck: 1, attachmentCount: 1 });
      // The filter blocks all (never passes all) while the ack is outstanding.
      expect(await dl.canConnect('203.0.113.30')).toBe(false);
      expect(await dl.canConnect('203.0.113.40')).toBe(false);
      const w = (await listed(d, a.id))!;
      expect(Number(w.packetsBlocked)).toBeGreaterThan(0);
      expectV1Row(await d.cli('list'), [a.id, dl.wlVeth.a, 'tc', 'block-all', 'disabled', a.dns], w);

      cp.send({ id: a.id, subscribed_ack: { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '203.0.113.30/32' }] } });
      await eventually(async () => (await listed(d, a.id))?.awaitingAck === false, 'the ack applied');
      expect((await listed(d, a.id))!.mode).toBe('allowlist');
      expect(JSON.parse((await d.cli('status', '--json')).stdout)).toMatchObject({ attachmentsAwaitingAck: 0 });
      expect(await dl.canConnect('203.0.113.30', { timeoutSec: 5 })).toBe(true);
      expect(await dl.canConnect('203.0.113.40')).toBe(false);

      // Detached while its ack is outstanding: the late ack changes nothing, and Unsubscribed
      // is the last word the control plane hears about it (said once: no Subscribed can follow it).
      const cg = dl.cgroup('late');
      const b = parseAttached(await d.cli('attach', '-g', cg.path)).id;
      await cp.waitFor((e) => e.msg.event === 'subscribed' && e.msg.subscribed!.id === b, 5000, 'Subscribed');
      expect(await d.cli('detach', '--id', b)).toEqual({ code: 0, stderr: '', stdout: `Detached ${b}\n` });
      await cp.waitFor((e) => e.msg.event === 'unsubscribed' && e.msg.unsubscribed!.id === b, 5000, 'Unsubscribed');
      cp.send({ id: b, subscribed_ack: { mode: 'POLICY_MODE_DISABLED' } });
      await sleep(300);
      const aboutB = cp.events.filter((e) => e.msg.subscribed?.id === b || e.msg.unsubscribed?.id === b);
      expect(aboutB.map((e) => e.msg.event)).toEqual(['subscribed', 'unsubscribed']);
      const now = (await listed(d, a.id))!;
      expectV1Row(await d.cli('list'), [a.id, dl.wlVeth.a, 'tc', 'allowlist', 'disabled', a.dns], now);
    } finally {
      cp.ackMode = 'auto';
    }
    expect(await d.cli('detach', '--id', a.id)).toMatchObject({ code: 0 });
    // NETFENCE_LOG_LEVEL=DEBUG is debug: a command for an unknown id is logged at that level.
    cp.send({ id: 'att-000000000000', set_mode: { mode: 'POLICY_MODE_BLOCK_ALL' } });
    await eventually(() => /"level":20,.*command for an unknown attachment ignored/.test(d.log()), 'a debug line');
    expect(await d.stop()).toBe(0);
  });
});
