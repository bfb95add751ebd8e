import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The only address ranges a lab may use. */
export const LAB_RANGES: readonly string[] = ['198.51.100.0/24', '203.0.113.0/24', '10.200.0.0/16', '2001:db8::/32'];

export interface VethOptions {
  /** Address with prefix for the `a` end, e.g. '10.200.1.1/24' or '2001:db8:1::1/64'. Several allowed. */
  readonly addrA?: readonly string[];
  readonly addrB?: readonly string[];
  /** Disable IPv6 DAD so v6 addresses are usable at once (default true). */
  readonly nodad?: boolean;
}

export interface LabNetns {
  readonly name: string;
  /** Path for `nsenter --net=PATH`. */
  readonly path: string;
  /** Runs a command in the namespace (nsenter --net, so bpffs and cgroup mounts stay). Throws on non-zero exit. */
  exec(cmd: string, args: readonly string[], opts?: { input?: string; timeoutMs?: number }): string;
  /** Like exec but returns the exit status and output instead of throwing. */
  tryExec(cmd: string, args: readonly string[], opts?: { input?: string; timeoutMs?: number }): { status: number; stdout: string; stderr: string };
  /** Starts a long-running process in the namespace; killed on lab close. */
  spawn(cmd: string, args: readonly string[], opts?: SpawnOptions & { cgroup?: LabCgroup }): ChildProcess;
  ifindex(ifname: string): number;
}

export interface LabVeth {
  /** Interface names; `a` lives in nsA, `b` in nsB. */
  readonly a: string;
  readonly b: string;
  readonly nsA: LabNetns;
  readonly nsB: LabNetns;
}

export interface LabCgroup {
  /** Absolute path in the cgroup2 mount. */
  readonly path: string;
  /** Moves a pid into the cgroup. */
  add(pid: number): void;
}

export interface Lab {
  /** Unique short id of this lab (part of every name it creates). */
  readonly id: string;
  netns(label: string): LabNetns;
  /** Creates a veth pair between two namespaces (or the same one), with addresses, both ends up. */
  veth(nsA: LabNetns, nsB: LabNetns, opts?: VethOptions): LabVeth;
  /** Creates a cgroup under the cgroup2 mount. */
  cgroup(label: string): LabCgroup;
  /** Registers a cleanup to run (in reverse order) on close. */
  defer(fn: () => void | Promise<void>): void;
  /** Kills spawned processes, removes cgroups and namespaces. Idempotent; never throws. */
  close(): Promise<void>;
}

function sh(cmd: string, args: readonly string[], input?: string, timeoutMs = 30_000): string {
  return execFileSync(cmd, args as string[], { encoding: 'utf8', input, timeout: timeoutMs, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs a command inside a netns file via nsenter (network namespace only). */
export function runIn(nsPath: string, cmd: string, args: readonly string[], input?: string, timeoutMs?: number): string {
  return sh('nsenter', [`--net=${nsPath}`, '--', cmd, ...args], input, timeoutMs);
}

function parseCidr(c: string): { v6: boolean; bits: bigint; len: number } {
  const [addr, lenText] = c.split('/');
  if (addr === undefined) throw new Error(`bad prefix ${c}`);
  if (addr.includes(':')) {
    const [head, tail] = addr.split('::');
    const h = head ? head.split(':') : [];
    const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
    const groups = addr.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    let bits = 0n;
    for (const g of groups) bits = (bits << 16n) | BigInt(parseInt(g || '0', 16));
    return { v6: true, bits, len: lenText === undefined ? 128 : Number(lenText) };
  }
  let bits = 0n;
  for (const o of addr.split('.')) bits = (bits << 8n) | BigInt(Number(o));
  return { v6: false, bits, len: lenText === undefined ? 32 : Number(lenText) };
}

function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (x.v6 !== y.v6) return false;
  const width = x.v6 ? 128n : 32n;
  const len = BigInt(Math.min(x.len, y.len));
  if (len === 0n) return true;
  const shift = width - len;
  return x.bits >> shift === y.bits >> shift;
}

/** Throws if any lab range overlaps a route of the root namespace (default routes excluded). */
export function assertLabRangesSafe(): void {
  const routes: string[] = [];
  for (const fam of ['-4', '-6']) {
    const out = sh('ip', [fam, '-o', 'route', 'show', 'table', 'all']);
    for (const line of out.split('\n')) {
      const dst = line.trim().split(/\s+/)[0];
      if (!dst) continue;
      const d = ['broadcast', 'local', 'multicast', 'anycast', 'unreachable', 'blackhole', 'prohibit', 'throw'].includes(dst)
        ? line.trim().split(/\s+/)[1]
        : dst;
      if (!d || d === 'default' || d.startsWith('fe80') || d.startsWith('ff00') || d.startsWith('127.') || d === '::1') continue;
      if (!/^[0-9a-f:.]+(\/\d+)?$/i.test(d)) continue;
      routes.push(d);
    }
  }
  for (const r of routes) {
    for (const l of LAB_RANGES) {
      if (overlaps(r, l)) throw new Error(`lab range ${l} overlaps host route ${r}: refusing to build a lab`);
    }
  }
}

function assertInLab(addrWithLen: string): void {
  const addr = addrWithLen.split('/')[0] ?? '';
  if (!LAB_RANGES.some((r) => overlaps(`${addr}/${addr.includes(':') ? 128 : 32}`, r))) {
    throw new Error(`address ${addrWithLen} is outside the lab ranges ${LAB_RANGES.join(', ')}`);
  }
}

/** The cgroup2 mount point, read from /proc/self/mounts (never hard-coded). */
export function cgroup2Root(): string {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) return f[1];
  }
  throw new Error('no cgroup2 mount found in /proc/self/mounts');
}

/** Mounts bpffs at /sys/fs/bpf when it is not mounted. */
export function ensureBpffs(): string {
  const mounted = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf');
  if (!mounted) sh('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
  return '/sys/fs/bpf';
}

export function createLab(): Lab {
  assertLabRangesSafe();
  const id = randomBytes(3).toString('hex');
  const cleanups: (() => void | Promise<void>)[] = [];
  const children: ChildProcess[] = [];
  let vethCount = 0;
  let closed = false;

  const lab: Lab = {
    id,
    netns(label: string): LabNetns {
      const name = `nf${id}${label}`.slice(0, 40);
      sh('ip', ['netns', 'add', name]);
      cleanups.push(() => {
        try {
          sh('ip', ['netns', 'del', name]);
        } catch {
          /* already gone */
        }
      });
      const path = `/run/netns/${name}`;
      runIn(path, 'ip', ['link', 'set', 'lo', 'up']);
      const ns: LabNetns = {
        name,
        path,
        exec: (cmd, args, opts) => runIn(path, cmd, args, opts?.input, opts?.timeoutMs),
        tryExec(cmd, args, opts) {
          try {
            return { status: 0, stdout: runIn(path, cmd, args, opts?.input, opts?.timeoutMs), stderr: '' };
          } catch (e) {
            const err = e as { status?: number; stdout?: string; stderr?: string };
            return { status: err.status ?? 1, stdout: String(err.stdout ?? ''), stderr: String(err.stderr ?? '') };
          }
        },
        spawn(cmd, args, opts) {
          const { cgroup, ...rest } = opts ?? {};
          // Join the cgroup first (in a shell), then enter the netns: nsenter keeps the mounts.
          const child = cgroup
            ? spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && ns="$1" && shift && exec nsenter --net="$ns" -- "$@"', cgroup.path, path, cmd, ...args], { stdio: 'pipe', ...rest })
            : spawn('nsenter', [`--net=${path}`, '--', cmd, ...args], { stdio: 'pipe', ...rest });
          children.push(child);
          return child;
        },
        ifindex(ifname: string): number {
          // nsenter --net keeps the root namespace's /sys mount: ask the kernel over netlink instead.
          const out = JSON.parse(runIn(path, 'ip', ['-j', 'link', 'show', 'dev', ifname])) as { ifindex: number }[];
          const i = out[0]?.ifindex;
          if (i === undefined) throw new Error(`no interface ${ifname} in ${name}`);
          return i;
        },
      };
      return ns;
    },
    veth(nsA, nsB, opts = {}): LabVeth {
      vethCount += 1;
      const a = `nf${id}a${vethCount}`;
      const b = `nf${id}b${vethCount}`;
      for (const addr of [...(opts.addrA ?? []), ...(opts.addrB ?? [])]) assertInLab(addr);
      sh('ip', ['link', 'add', a, 'netns', nsA.name, 'type', 'veth', 'peer', 'name', b, 'netns', nsB.name]);
      const nodad = opts.nodad ?? true;
      for (const [ns, ifname, addrs] of [
        [nsA, a, opts.addrA ?? []],
        [nsB, b, opts.addrB ?? []],
      ] as const) {
        for (const addr of addrs) ns.exec('ip', ['addr', 'add', addr, 'dev', ifname, ...(addr.includes(':') && nodad ? ['nodad'] : [])]);
        ns.exec('ip', ['link', 'set', ifname, 'up']);
      }
      return { a, b, nsA, nsB };
    },
    cgroup(label: string): LabCgroup {
      const path = join(cgroup2Root(), `nf${id}${label}`);
      mkdirSync(path, { recursive: true });
      cleanups.push(() => {
        try {
          // Move any stragglers out, then remove.
          if (existsSync(join(path, 'cgroup.procs'))) {
            for (const pid of readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
              try {
                process.kill(Number(pid), 'SIGKILL');
              } catch {
                /* gone */
              }
            }
          }
          for (let i = 0; i < 50; i++) {
            try {
              rmdirSync(path);
              return;
            } catch {
              execFileSync('sleep', ['0.02']);
            }
          }
        } catch {
          /* best effort */
        }
      });
      return {
        path,
        add(pid: number) {
          writeFileSync(join(path, 'cgroup.procs'), String(pid));
        },
      };
    },
    defer(fn) {
      cleanups.push(fn);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          try {
            c.kill('SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)))));
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch {
          /* keep cleaning */
        }
      }
    },
  };
  return lab;
}
