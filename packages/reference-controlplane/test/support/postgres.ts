// A throwaway PostgreSQL server for tests: its own data directory, listening
// only on a unix socket in that directory (no TCP: nothing leaves the machine),
// run as the `postgres` system user (the server refuses root).

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface TestPostgres {
  /** Connection string for the `netfence` superuser over the unix socket. */
  readonly url: string;
  /** Stops the server (fast shutdown), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same socket and data. */
  start(): Promise<void>;
  /** Runs SQL through psql. */
  sql(query: string): string;
  /** Stops the server and removes everything. */
  destroy(): Promise<void>;
}

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'postgres'))) : [];
  const best = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (!best) throw new Error(`no PostgreSQL server under ${root}: install the Debian package postgresql (tools/setup.sh does)`);
  return join(root, best, 'bin');
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  const asRoot = userInfo().uid === 0;
  const run = (cmd: string, args: string[]) => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]) as [string, string[]];
  const dir = mkdtempSync(join(tmpdir(), 'nf-pg-'));
  chmodSync(dir, 0o755);
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const [initCmd, initArgs] = run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'netfence', '--no-sync', '-E', 'UTF8']);
  execFileSync(initCmd, initArgs, { stdio: 'pipe' });
  const port = 5432;
  const pgCtl = (args: string[]): void => {
    const [cmd, a] = run(join(bin, 'pg_ctl'), ['-D', data, '-w', '-t', '20', ...args]);
    execFileSync(cmd, a, { stdio: 'pipe' });
  };

  const psql = (query: string): string =>
    execFileSync(join(bin, 'psql'), ['-h', dir, '-p', String(port), '-U', 'netfence', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-Atc', query], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  let running = false;
  async function start(): Promise<void> {
    try {
      pgCtl(['-l', join(dir, 'log'), '-o', `-k ${dir} -p ${port} -c listen_addresses= -c fsync=off`, 'start']);
    } catch (e) {
      const log = existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8') : '';
      throw new Error(`PostgreSQL did not start: ${(e as Error).message}\n${log}`);
    }
    running = true;
  }

  async function stop(): Promise<void> {
    if (!running) return;
    running = false;
    pgCtl(['-m', 'fast', 'stop']); // fast: disconnects the clients
  }

  await start();
  return {
    url: `postgresql://netfence@/postgres?host=${encodeURIComponent(dir)}&port=${port}`,
    start,
    stop,
    sql: psql,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
