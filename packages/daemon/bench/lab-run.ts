// What every daemon benchmark shares: run a worker script inside the lab's host namespace
// (nsenter, swc on the fly) with its arguments in NFBENCH_ARGS and a time limit; the lab's attach
// targets; percentiles; and the daemon config a worker starts netfenced with.

import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonLab } from '../test/support/daemon-lab';

/** Attach targets for a benchmark: `cgroups` lab cgroups named `<prefix><i>` and `veths` extra veths (their host ends), timed. */
export function labTargets(dl: DaemonLab, prefix: string, cgroups: number, veths: number): { cgroups: string[]; veths: string[] } {
  const t0 = Date.now();
  const out = { cgroups: Array.from({ length: cgroups }, (_, i) => dl.cgroup(`${prefix}${i}`).path), veths: Array.from({ length: veths }, () => dl.extraVeth().a) };
  process.stderr.write(`lab ready in ${Date.now() - t0} ms (${cgroups} cgroups, ${veths} veths)\n`);
  return out;
}

/** Runs `worker` (a file in bench/) in the lab's host namespace; resolves its exit code, killing it past `limitMs`. */
export async function runWorkerInLabHost(dl: DaemonLab, worker: string, args: unknown, limitMs: number): Promise<number> {
  const child = spawn('nsenter', [`--net=${dl.host.path}`, '--', process.execPath, '-r', join(__dirname, '..', '..', '..', 'tools', 'swc-register.cjs'), join(__dirname, worker)], {
    stdio: 'inherit',
    env: { ...process.env, NFBENCH_ARGS: JSON.stringify(args) },
  });
  const timer = setTimeout(() => {
    process.stderr.write(`benchmark over its ${limitMs} ms limit: stopping it\n`);
    child.kill('SIGKILL');
  }, limitMs);
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
  clearTimeout(timer);
  return code;
}

/** The process exit of a benchmark's main: its code (0 when it returns none), or 1 with the error on stderr. */
export function exitWith(main: () => Promise<number | void>): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (e: unknown) => {
      process.stderr.write(`bench failed: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}

/** The p-th percentile (nearest rank) of a non-empty list. */
export function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/** Writes a worker's netfenced config under `<tmp>/<name>/` (socket, data_dir, bpffs_root, no metrics listener, the control plane URL) with `extra` on top; returns its path. */
export function writeBenchConfig(tmp: string, name: string, bpffsRoot: string, controlPlanePort: number, extra: Record<string, unknown>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'netfence.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      socket: join(dir, 'netfence.sock'),
      data_dir: join(dir, 'data'),
      bpffs_root: bpffsRoot,
      metrics: { listen: '' },
      control_plane: { url: `http://127.0.0.1:${controlPlanePort}` },
      ...extra,
    }),
  );
  return configPath;
}
