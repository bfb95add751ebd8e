import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const FIXTURES = join(__dirname, '..', 'fixtures');

/** Kernel tests need root; they fail (never skip) without it, in CI and elsewhere. */
export function assertKernelTestable(): void {
  if (process.getuid?.() !== 0) throw new Error('kernel tests need root (they create netns, cgroups and load BPF)');
  if (!existsSync('/sys/fs/bpf')) throw new Error('no /sys/fs/bpf');
}

let built: string | undefined;

/**
 * Compiles every test/fixtures/*.bpf.c with the pinned flags into a directory named after a
 * hash of the sources (so runs and parallel workers share it; writes are atomic renames).
 */
export function buildFixtures(): string {
  if (built) return built;
  const sources = readdirSync(FIXTURES).filter((n) => n.endsWith('.bpf.c')).sort();
  const hash = createHash('sha256');
  for (const f of sources) hash.update(f).update(readFileSync(join(FIXTURES, f)));
  const out = join(tmpdir(), `nf-bpf-loader-fixtures-${hash.digest('hex').slice(0, 12)}`);
  mkdirSync(out, { recursive: true });
  for (const f of sources) {
    const obj = join(out, f.replace(/\.c$/, '.o'));
    if (existsSync(obj)) continue;
    const tmp = `${obj}.${process.pid}.tmp`;
    execFileSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', join(FIXTURES, f), '-o', tmp], {
      stdio: 'pipe',
    });
    renameSync(tmp, obj);
  }
  built = out;
  return out;
}

export function fixture(name: string): string {
  return join(buildFixtures(), `${name}.bpf.o`);
}

/** A test-unique directory under /sys/fs/bpf; remove it with removePinDir. */
export function makePinDir(label: string): string {
  const dir = join('/sys/fs/bpf', `nfbl-${label}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
  mkdirSync(dir);
  return dir;
}

export function removePinDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Runs a TypeScript file in a fresh node process (transpiled with @swc/core on the fly). */
export function runTsChild(file: string, args: readonly string[], timeoutMs = 20_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['-r', join(__dirname, '..', '..', '..', '..', 'tools', 'swc-register.cjs'), file, ...args], { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** ping -c1 from a namespace; true when a reply came back (a drop costs the 0.4 s wait). */
export function pingOk(nsPath: string, addr: string): boolean {
  const r = spawnSync('nsenter', [`--net=${nsPath}`, '--', 'ping', '-c', '1', '-W', '0.4', '-q', addr], { encoding: 'utf8' });
  return r.status === 0;
}

/**
 * ifindex of an interface inside a netns, asked with `ip -j link` (nsenter --net does not
 * remount /sys, so /sys/class/net would show the root namespace's interfaces).
 */
export function ifindexIn(nsPath: string, ifname: string): number {
  const out = execFileSync('nsenter', [`--net=${nsPath}`, '--', 'ip', '-j', 'link', 'show', 'dev', ifname], { encoding: 'utf8' });
  const idx = (JSON.parse(out) as { ifindex: number }[])[0]?.ifindex;
  if (idx === undefined) throw new Error(`no ${ifname} in ${nsPath}`);
  return idx;
}

/** Starts `cmd` in a cgroup (joined first, by a shell) and a netns (nsenter keeps the mounts). */
export function spawnInCgroup(cgroupPath: string, nsPath: string, cmd: string, args: readonly string[]): ChildProcess {
  return spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && ns="$1" && shift && exec nsenter --net="$ns" -- "$@"', cgroupPath, nsPath, cmd, ...args], {
    stdio: 'pipe',
  });
}

/** The BpfError code `fn` throws, or 'no error'. */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'no error';
}
