// A YAML policy file: read at start (synchronously), watched (fs.watch on its directory, so an
// editor's write-and-rename is seen, plus a stat poller as the fallback), and edited by an
// atomic replace: temp file, fsync, rename, fsync of the directory.

import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, stat as fsStat, statSync, watch as fsWatch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { ControlPlaneError } from './errors';
import type { Logger } from './logger';
import { addRuleToText, parsePolicyText, removeRuleFromText } from './policy-file';
import type { PolicySource } from './policy-source';

export interface FilePolicySourceOptions {
  readonly log: Logger;
  /** Watch the file at all (default true). */
  readonly watch?: boolean;
  /** Use fs.watch on the file's directory (default true); the stat poller runs either way. */
  readonly fsWatch?: boolean;
  /** Poll interval of the stat poller (default 1000 ms; 0 = off). */
  readonly pollIntervalMs?: number;
}

function readError(path: string, e: unknown): ControlPlaneError {
  return new ControlPlaneError('NETFENCE_ERR_POLICY_READ', `cannot read policy file ${path}: ${(e as Error).message}`, { cause: e });
}

/**
 * Replaces `path` with `text` so a reader sees the old or the new file, never a part, and the
 * new one survives a crash once this resolves: the temp file is fsynced before the rename and
 * the directory after it (the rename is only durable once the directory entry is on disk), as
 * the daemon's state writer does. The file's mode is kept. A failed directory sync is logged,
 * not thrown (see below).
 */
export async function writeFileAtomic(path: string, text: string, log: Logger): Promise<void> {
  const tmp = `${dirname(path)}/.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    let mode = 0o644;
    try {
      mode = (await fsp.stat(path)).mode & 0o777;
    } catch {
      /* new file */
    }
    const fh = await fsp.open(tmp, 'w', mode);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw new ControlPlaneError('NETFENCE_ERR_POLICY_WRITE', `cannot write policy file ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const dir = await fsp.open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (e) {
    // The new file is in place and is what every reader (and the watcher) sees, so the edit
    // stands ("nothing was applied" is what NETFENCE_ERR_POLICY_WRITE promises); it may just not
    // survive a power loss. Say so rather than report a failure that did not happen.
    log.warn({ err: String(e), file: path }, 'policy file written but its directory could not be synced');
  }
}

export function createFilePolicySource(path: string, opts: FilePolicySourceOptions): PolicySource {
  const { log } = opts;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw readError(path, e);
  }
  const initial = parsePolicyText(text, path);
  let watcher: FSWatcher | undefined;
  let pollTimer: NodeJS.Timeout | undefined;

  async function readText(): Promise<string> {
    try {
      return await fsp.readFile(path, 'utf8');
    } catch (e) {
      throw readError(path, e);
    }
  }

  function watch(changed: () => void): void {
    if (!(opts.watch ?? true)) return;
    const base = basename(path);
    if (opts.fsWatch ?? true) {
      try {
        watcher = fsWatch(dirname(path), { persistent: false }, (_ev, name) => {
          if (!name || name.toString() === base) changed();
        });
        watcher.on('error', (e) => log.warn({ err: String(e) }, 'policy file watcher failed; polling only'));
      } catch (e) {
        log.warn({ err: String(e) }, 'cannot watch policy directory; polling only');
      }
    }
    const pollMs = opts.pollIntervalMs ?? 1000;
    if (pollMs <= 0) return;
    let lastSig = '';
    try {
      const st = statSync(path);
      lastSig = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      /* missing now: the first poll that finds it reports a change */
    }
    pollTimer = setInterval(() => {
      fsStat(path, (err, st) => {
        const sig = err ? 'missing' : `${st.ino}:${st.size}:${st.mtimeMs}`;
        if (sig !== lastSig) {
          lastSig = sig;
          changed();
        }
      });
    }, pollMs);
    pollTimer.unref();
  }

  return {
    name: path,
    initial,
    async load() {
      const t = await readText();
      try {
        return parsePolicyText(t, path);
      } catch (e) {
        throw ControlPlaneError.from(e, 'NETFENCE_ERR_POLICY_INVALID');
      }
    },
    async edit(policy, rule, op) {
      const t = await readText();
      const nextText = op === 'add' ? addRuleToText(t, policy, rule) : removeRuleFromText(t, policy, rule);
      const next = parsePolicyText(nextText, path); // throws POLICY_INVALID: nothing written
      await writeFileAtomic(path, nextText, log);
      log.info({ policy, rule, op, source: path }, 'policy rule edited');
      return next;
    },
    watch,
    close() {
      watcher?.close();
      watcher = undefined;
      if (pollTimer) clearInterval(pollTimer);
      pollTimer = undefined;
    },
  };
}
