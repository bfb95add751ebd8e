import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
export const VERSION: string = (JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')) as { version: string }).version;

/** Runs a command; throws with its stderr on a non-zero exit. */
export function sh(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): string {
  try {
    return execFileSync(cmd, args as string[], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 60_000, env: opts.env, cwd: opts.cwd, maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} exited ${err.status ?? '?'}: ${err.stderr || err.message}\n${err.stdout ?? ''}`);
  }
}

/** Runs a command and returns its status and output, whatever the status. */
export function run(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args as string[], { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, env: opts.env });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Builds the package with the repository's script (what `npm run package` runs after the builds) into a fresh directory. */
export function buildDeb(): { dir: string; deb: string } {
  const dir = mkdtempSync(join(tmpdir(), 'nf-pkg-'));
  const deb = sh('node', [join(ROOT, 'packaging/build-deb.js'), '--out', dir], { timeoutMs: 180_000 }).trim();
  return { dir, deb };
}

/** The values of `key` in a systemd unit (every occurrence, in order). */
export function unitValues(unit: string, key: string): string[] {
  return unit
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}
