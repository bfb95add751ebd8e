// One daemon per state directory: an exclusive flock(2) on <data_dir>/netfenced.lock, taken
// before the daemon touches anything else.
//
// Why flock through koffi (already loaded by @netfence/bpf-loader) and not a pid file made
// with O_EXCL: the kernel drops a flock when its holder dies, however it dies, so a daemon
// killed with SIGKILL never leaves a lock that blocks the restart; a pid file would need a
// liveness guess (pids are reused) and a stale-lock takeover that two starting daemons can
// both win. Node has no flock of its own.

import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type * as KoffiNs from 'koffi' with { 'resolution-mode': 'import' };
import { DaemonError } from './daemon-error';

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

export const LOCK_FILE = 'netfenced.lock';

type Flock = (fd: number, op: number) => number;
let flockFn: { call: Flock; errno: () => number } | undefined;

function libcFlock(): { call: Flock; errno: () => number } {
  if (!flockFn) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const koffi = require('koffi') as typeof KoffiNs;
    const libc = koffi.load('libc.so.6');
    flockFn = { call: libc.func('int flock(int fd, int op)') as Flock, errno: () => koffi.errno() };
  }
  return flockFn;
}

/** An exclusive lock on a state directory; released by release() or by the process ending. */
export interface StateLock {
  readonly path: string;
  /** Idempotent. */
  release(): void;
}

/**
 * Takes the exclusive lock of `dataDir` (created 0700 when missing) without waiting. When
 * another process holds it: NETFENCE_ERR_ALREADY_EXISTS naming the directory and the holder's
 * pid (as it wrote it in the lock file).
 */
export function lockStateDir(dataDir: string): StateLock {
  const path = join(dataDir, LOCK_FILE);
  let fd: number;
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    fd = openSync(path, 'a+', 0o600); // never truncated before the lock is ours
  } catch (e) {
    throw new DaemonError('NETFENCE_ERR_STATE', `cannot open the lock file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const { call, errno } = libcFlock();
  if (call(fd, LOCK_EX | LOCK_NB) !== 0) {
    const err = errno();
    closeSync(fd);
    if (err === EWOULDBLOCK) {
      let holder = 'unknown';
      try {
        holder = readFileSync(path, 'utf8').trim().slice(0, 20) || 'unknown';
      } catch {
        /* keep unknown */
      }
      throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', `another netfenced (pid ${holder}) holds the state directory ${dataDir} (${path}); stop it first`);
    }
    throw new DaemonError('NETFENCE_ERR_STATE', `cannot lock ${path}: flock failed with errno ${err}`);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      closeSync(fd); // closing the only descriptor drops the flock
    },
  };
}
