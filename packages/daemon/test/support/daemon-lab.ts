// The lab every daemon test runs in (the topology of tools/demo.sh):
//
//   wl (workload) --veth-- host (netfenced runs here) --veth-- net ("internet")
//   10.200.1.2              10.200.1.1 | 10.200.2.1            10.200.2.2 (dnsmasq) + 203.0.113.0/24 (TCP :8080)
//
// Cgroup workloads run in the host namespace inside a lab cgroup (the cgroup sever iterator
// sees only its own netns). No namespace has a default route; nothing leaves the lab.

import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab, type LabCgroup, type LabNetns, type LabVeth } from '@netfence/lab';
import { createDaemonApi, type DaemonApi } from './grpc';

export const REPO = join(__dirname, '../../../..');
export const CLI = join(REPO, 'packages/cli/dist/main.js');

/** The daemon runs as the built `netfenced` binary: fail with a clear message when it is missing. */
export function requireBuiltCli(): void {
  for (const f of [CLI, join(REPO, 'packages/daemon/dist/index.js')]) {
    if (!existsSync(f))
      throw new Error(`${f} is missing: the daemon tests run the built netfenced binary. Build first: cd ${REPO} && NX_DAEMON=false npx nx run-many -t build`);
  }
}

/** Names dnsmasq answers in the lab, and the web servers behind them. */
export const NAMES = {
  'allowed.test': '203.0.113.10',
  'www.allowed.test': '203.0.113.11',
  'evil.test': '203.0.113.20',
} as const;
export const SERVERS = ['203.0.113.10', '203.0.113.11', '203.0.113.20', '203.0.113.30', '203.0.113.40'] as const;
export const SERVER_PORT = 8080;
export const HOST_ADDR = '10.200.1.1';
export const WL_ADDR = '10.200.1.2';
export const UPSTREAM = '10.200.2.2:53';
/**
 * dnsmasq also synthesises an A record for every name `h-10-200-X-Y.synth.test` (X in 64..127):
 * as many distinct addresses as a benchmark needs, never contacted.
 */
export const SYNTH_DOMAIN = 'synth.test';

/**
 * The embedded control plane's policy the daemon tests share: one policy `web` (tenant web,
 * allowlist with DNS allowlist) with `rules` (rule lines), then any `more` policies (YAML).
 */
export function webPolicy(rules: readonly string[] = ['ALLOW allowed.test', 'DENY evil.test', 'ALLOW 203.0.113.30/32'], more = ''): string {
  return `version: 1
policies:
  - name: web
    match: { tenant: web }
    mode: allowlist
    dns:
      mode: allowlist
    rules:
${rules.map((r) => `      - ${r}\n`).join('')}${more}`;
}

/**
 * A python script that floods a DNS server over UDP from one socket, as fast as one process
 * sends: argv host, port, n, garbage. Packet i is an A query for `n<i>.refused.test` (a name
 * the test policies refuse), or with garbage 1 every odd one is 1..40 random bytes instead.
 * Prints "sent failed seconds" (failed: the send was refused, e.g. EPERM over the attachment's
 * DNS rate limit in the kernel).
 */
export const DNS_FLOOD_PY = `
import socket, struct, os, sys, time
host, port, n, garbage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1'
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def q(i):
    name = b'n%d.refused.test' % i
    return struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p for p in name.split(b'.')) + b'\\x00\\x00\\x01\\x00\\x01'
sent = failed = 0
t0 = time.monotonic()
for i in range(n):
    try:
        s.sendto(os.urandom(1 + i % 40) if garbage and i % 2 else q(i), (host, port)); sent += 1
    except OSError:
        failed += 1
print(sent, failed, time.monotonic() - t0)
`;

export function synthName(i: number): { name: string; address: string } {
  if (!Number.isInteger(i) || i < 0 || i >= 64 * 256) throw new Error(`synthName: ${i} is outside 0..${64 * 256 - 1}`);
  const address = `10.200.${64 + (i >> 8)}.${i & 255}`;
  return { name: `h-${address.replace(/\./g, '-')}.${SYNTH_DOMAIN}`, address };
}

export interface DaemonLab {
  readonly lab: Lab;
  readonly host: LabNetns;
  readonly wl: LabNetns;
  readonly net: LabNetns;
  /** host end (in host) of the workload veth. */
  readonly wlVeth: LabVeth;
  readonly tmp: string;
  readonly bpffsRoot: string;
  /** Adds another veth host<->wl (for TC targets beyond the first); addresses optional. */
  extraVeth(): LabVeth;
  cgroup(label: string): LabCgroup;
  /** Runs a command in a namespace (optionally inside a cgroup) without blocking the event loop. */
  run(ns: LabNetns, cmd: string, args: readonly string[], opts?: { cgroup?: LabCgroup; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** TCP connect from the workload (TC: wl namespace; cgroup: host namespace inside the cgroup). true when it connected. */
  canConnect(addr: string, opts?: { cgroup?: LabCgroup; port?: number; timeoutSec?: number }): Promise<boolean>;
  /** dig through a DNS server; returns status and answers. */
  dig(server: string, name: string, opts?: { cgroup?: LabCgroup }): Promise<{ status: string; answers: string[] }>;
  close(): Promise<void>;
}

export async function createDaemonLab(): Promise<DaemonLab> {
  requireBuiltCli();
  const lab = createLab();
  const tmp = mkdtempSync(join(tmpdir(), 'nfdaemon-test-'));
  const bpffsRoot = `/sys/fs/bpf/nf${randomBytes(4).toString('hex')}`;
  lab.defer(() => rmSync(tmp, { recursive: true, force: true }));
  lab.defer(() => rmSync(bpffsRoot, { recursive: true, force: true }));
  try {
    const host = lab.netns('h');
    const wl = lab.netns('w');
    const net = lab.netns('n');
    const wlVeth = lab.veth(host, wl, { addrA: [`${HOST_ADDR}/24`], addrB: [`${WL_ADDR}/24`] });
    lab.veth(host, net, { addrA: ['10.200.2.1/24'], addrB: ['10.200.2.2/24'] });
    for (const a of SERVERS) net.exec('ip', ['addr', 'add', `${a}/32`, 'dev', 'lo']);
    for (const r of ['203.0.113.0/24', '10.200.2.0/24']) wl.exec('ip', ['route', 'add', r, 'via', HOST_ADDR]);
    host.exec('ip', ['route', 'add', '203.0.113.0/24', 'via', '10.200.2.2']);
    net.exec('ip', ['route', 'add', '10.200.1.0/24', 'via', '10.200.2.1']);
    host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);

    const dnsmasqArgs = ['--no-daemon', '--user=root', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=10.200.2.2', '--port=53', `--pid-file=${join(tmp, 'dnsmasq.pid')}`, '--log-facility=/dev/null', `--synth-domain=${SYNTH_DOMAIN},10.200.64.0/18,h-`];
    for (const [name, ip] of Object.entries(NAMES)) dnsmasqArgs.push(`--address=/${name}/${ip}`);
    net.spawn('dnsmasq', dnsmasqArgs, { stdio: 'ignore' });
    const server = net.spawn('node', ['-e', `require('net').createServer((s) => { s.on('error', () => {}); s.end('ok\\n'); }).listen(${SERVER_PORT}, '0.0.0.0', () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await waitForLine(server, 'ready', 10_000);
    // dnsmasq up?
    for (let i = 0; ; i++) {
      const r = net.tryExec('dig', ['+time=1', '+tries=1', '+short', '@10.200.2.2', 'allowed.test', 'A']);
      if (r.stdout.trim() === NAMES['allowed.test']) break;
      if (i > 50) throw new Error(`dnsmasq did not come up: ${r.stdout} ${r.stderr}`);
      await sleep(100);
    }

    const dl: DaemonLab = {
      lab,
      host,
      wl,
      net,
      wlVeth,
      tmp,
      bpffsRoot,
      extraVeth: () => lab.veth(host, wl),
      cgroup: (label) => lab.cgroup(label),
      run(ns, cmd, args, opts = {}) {
        return new Promise((resolve) => {
          const child = ns.spawn(cmd, args, { cgroup: opts.cgroup, stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
          child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
          const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
          child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
          });
        });
      },
      async canConnect(addr, opts = {}) {
        const r = await dl.run(opts.cgroup ? host : wl, 'nc', ['-z', '-w', String(opts.timeoutSec ?? 1), addr, String(opts.port ?? SERVER_PORT)], { cgroup: opts.cgroup });
        return r.code === 0;
      },
      async dig(srv, name, opts = {}) {
        const i = srv.lastIndexOf(':');
        const r = await dl.run(opts.cgroup ? host : wl, 'dig', ['+time=2', '+tries=1', `@${srv.slice(0, i)}`, '-p', srv.slice(i + 1), name, 'A'], { cgroup: opts.cgroup });
        const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? 'NO_ANSWER';
        const answers = [...r.stdout.matchAll(/\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!);
        return { status, answers };
      },
      close: () => lab.close(),
    };
    return dl;
  } catch (e) {
    await lab.close();
    throw e;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function waitForLine(child: ChildProcess, text: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms; got ${buf}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (c) => {
      clearTimeout(timer);
      reject(new Error(`exited (${c}) before "${text}"; got ${buf}`));
    });
  });
}

/** Polls until `fn` returns a truthy value. */
export async function eventually<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 50): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// The daemon process

export interface DaemonConfigOverrides {
  readonly control_plane?: Record<string, unknown>;
  readonly policy_file?: string;
  readonly [k: string]: unknown;
}

export interface DaemonProcess {
  readonly socket: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly pid: number;
  readonly api: DaemonApi;
  /** Runs the netfenced CLI against this daemon's socket (async; the test process never blocks). */
  cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Last lines of the daemon's log. */
  logTail(n?: number): string;
  /** SIGKILL: no cleanup at all. */
  kill9(): Promise<void>;
  /** SIGTERM and wait; the exit code (null when it had to be killed after 15 s). */
  stop(): Promise<number | null>;
}

/** Writes the daemon config (JSON is YAML) for this lab. */
export function writeDaemonConfig(dl: DaemonLab, name: string, over: DaemonConfigOverrides): string {
  const dir = join(dl.tmp, name);
  const cfg = {
    socket: join(dir, 'netfence.sock'),
    data_dir: join(dir, 'data'),
    bpffs_root: dl.bpffsRoot,
    log_level: 'debug',
    target_watch_interval: '200ms',
    metrics: { listen: '' },
    ...over,
    dns: { listen_addr: HOST_ADDR, upstream: [UPSTREAM], port_min: 11000, port_max: 11999, ...((over.dns as object) ?? {}) },
  };
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'netfence.yaml');
  writeFileSync(path, JSON.stringify(cfg, null, 2));
  return path;
}

/** Starts `netfenced start --config` in the lab's host namespace and waits until it serves its socket. */
export function startDaemon(dl: DaemonLab, configPath: string): Promise<DaemonProcess> {
  return launchDaemon(configPath, (cmd, args, opts) => dl.host.spawn(cmd, args, opts));
}

/** Starts `netfenced start --config` with `spawnIn` (which puts it in the right namespace) and waits until it serves. */
export async function launchDaemon(configPath: string, spawnIn: (cmd: string, args: readonly string[], opts: SpawnOptions) => ChildProcess): Promise<DaemonProcess> {
  requireBuiltCli();
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as { socket: string; data_dir: string };
  const logFile = `${configPath}.${Date.now()}.log`;
  const fd = openSync(logFile, 'a');
  // NF_DAEMON_NODE_ARGS: node options for the daemon only (profiling a benchmark: --perf-basic-prof for `perf record`).
  const prof = process.env.NF_DAEMON_NODE_ARGS ? process.env.NF_DAEMON_NODE_ARGS.split(' ').filter(Boolean) : [];
  const child = spawnIn('node', [...prof, CLI, 'start', '--config', configPath], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const api = createDaemonApi(cfg.socket);
  const logTail = (n = 30) => {
    try {
      return readFileSync(logFile, 'utf8').trim().split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  };
  const d: DaemonProcess = {
    socket: cfg.socket,
    configPath,
    dataDir: cfg.data_dir,
    logFile,
    pid: child.pid!,
    api,
    cli: (args) =>
      new Promise((resolve) => {
        const c = spawn('node', [CLI, '--socket', cfg.socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
        c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
      }),
    logTail,
    async kill9() {
      api.close();
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      api.close();
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  let dead: number | null | undefined;
  void exited.then((c) => (dead = c));
  const end = Date.now() + 20_000;
  for (;;) {
    if (dead !== undefined) throw new Error(`netfenced exited (${dead}) during start:\n${logTail()}`);
    if (existsSync(cfg.socket)) {
      try {
        await api.status();
        return d;
      } catch {
        /* not yet */
      }
    }
    if (Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`netfenced did not serve ${cfg.socket} within 20 s:\n${logTail()}`);
    }
    await sleep(50);
  }
}

/** Attachment pin directories under the bpffs root (the host set's `_host` is not one). */
export function pinnedIds(dl: DaemonLab): string[] {
  return existsSync(dl.bpffsRoot) ? readdirSync(dl.bpffsRoot).filter((n) => n !== '_host' && n !== 'events') : [];
}

/** Attachment ids with a saved record under data_dir. */
export function savedIds(d: { dataDir: string }): string[] {
  const dir = join(d.dataDir, 'attachments');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)) : [];
}

/** Programs attached to a cgroup (bpftool cgroup show), by attach type. */
export function cgroupProgs(path: string): { attach_type: string; name: string }[] {
  const out = execFileSync('bpftool', ['-j', 'cgroup', 'show', path], { encoding: 'utf8' }) as string;
  return out.trim() ? (JSON.parse(out) as { attach_type: string; name: string }[]) : [];
}

/** Ids of the programs on an interface's TCX hook in a namespace (BPF_PROG_QUERY; bpftool 7.1 cannot list TCX per device). */
export function tcxProgIds(ns: LabNetns, ifname: string, direction: 'ingress' | 'egress' = 'ingress'): number[] {
  return JSON.parse(ns.exec('node', [join(__dirname, 'tcx-query.js'), ifname, direction])) as number[];
}

/** IPv4 prefixes on the allow list of an attachment's pinned rules trie (bpftool map dump pinned; value byte 13 = lists, bit 0 allow). */
export function pinnedAllowV4(dl: DaemonLab, id: string): string[] {
  const path = join(dl.bpffsRoot, id, 'rules_v4');
  const out = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', path], { encoding: 'utf8' }) as string) as { key: string[]; value: string[] }[];
  return out
    .filter((e) => (parseInt(e.value[13]!, 16) & 1) !== 0)
    .map((e) => {
      const k = e.key.map((b) => parseInt(b, 16));
      const len = k[0]! | (k[1]! << 8) | (k[2]! << 16) | (k[3]! << 24);
      return `${k.slice(4, 8).join('.')}/${len}`;
    });
}

/** Is anything listening on this UDP or TCP port in the namespace? */
export function portInUse(ns: LabNetns, port: number): boolean {
  const out = ns.exec('ss', ['-Hlnu', `sport = :${port}`]) + ns.exec('ss', ['-Hlnt', `sport = :${port}`]);
  return out.trim().length > 0;
}

export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// A grpc-js control plane the daemon in the host namespace reaches at http://127.0.0.1:<port>

import { createTestControlPlane, type TestControlPlane, type TestControlPlaneOptions } from './grpc';

export interface ForwardedControlPlane {
  readonly cp: TestControlPlane;
  /** The URL for the daemon's control_plane.url (valid inside the host namespace). */
  readonly url: string;
}

/**
 * Serves a grpc-js control plane on a unix socket in the test process and forwards
 * 127.0.0.1:<port> of the host namespace to it, so the daemon talks plain gRPC over TCP.
 */
export async function startForwardedControlPlane(dl: DaemonLab, name: string, opts: Omit<TestControlPlaneOptions, 'socketPath'> = {}): Promise<ForwardedControlPlane> {
  const socketPath = join(dl.tmp, `${name}-cp.sock`);
  const cp = createTestControlPlane({ ...opts, socketPath });
  await cp.start();
  dl.lab.defer(() => cp.stop());
  const port = 20000 + Math.floor(Math.random() * 20000);
  const fwd = dl.host.spawn('node', [join(__dirname, 'tcp-to-unix.js'), String(port), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(fwd, 'ready', 10_000);
  return { cp, url: `http://127.0.0.1:${port}` };
}
