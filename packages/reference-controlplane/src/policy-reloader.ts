// The policy set in force: reloads and rule edits run one at a time, change notices are
// debounced, a rejected policy leaves the last good one in force, and each new set is pushed.

import type { EventEmitter } from 'node:events';
import { ControlPlaneError } from './errors';
import type { Logger } from './logger';
import type { ControlPlaneMetrics } from './metrics';
import type { PolicySet } from './policy-file';
import type { PolicySource, RuleEdit } from './policy-source';
import type { ReloadResult } from './types';

export interface PolicyReloaderOptions {
  readonly source: PolicySource;
  /** Queues the commands that bring every attachment to `next`; returns how many. */
  readonly push: (next: PolicySet) => number;
  readonly metrics: ControlPlaneMetrics;
  /** Gets 'reload' (ReloadResult) and 'reloadError' (ControlPlaneError). */
  readonly events: EventEmitter;
  readonly log: Logger;
  /** Debounce of change notices (ms). */
  readonly debounceMs: number;
  readonly isClosed: () => boolean;
}

export interface PolicyReloader {
  current(): PolicySet;
  /** The last rejected reload, cleared by a good one. */
  lastError(): ControlPlaneError | undefined;
  /** Reads the source now (after any reload or edit already running). */
  reload(): Promise<ReloadResult>;
  edit(policy: string, rule: string, op: RuleEdit): Promise<ReloadResult>;
  /** A change notice: reloads once notices stop for the debounce time. */
  schedule(): void;
  /** Drops a scheduled reload and waits for the running one. */
  close(): Promise<void>;
}

export function createPolicyReloader(opts: PolicyReloaderOptions): PolicyReloader {
  const { source, metrics, events, log } = opts;
  let set = source.initial;
  let lastErr: ControlPlaneError | undefined;
  let debounceTimer: NodeJS.Timeout | undefined;

  let chain: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  }

  function reject(err: ControlPlaneError): ReloadResult {
    lastErr = err;
    metrics.reloadsFailed.inc();
    log.error({ err: err.message, issues: err.issues }, 'policy file rejected; keeping the last good policy');
    events.emit('reloadError', err);
    const r: ReloadResult = { changed: false, commands: 0, error: err };
    events.emit('reload', r);
    return r;
  }

  function accept(next: PolicySet): ReloadResult {
    lastErr = undefined;
    if (next.hash === set.hash) {
      const r: ReloadResult = { changed: false, commands: 0 };
      events.emit('reload', r);
      return r;
    }
    metrics.reloadsOk.inc();
    set = next;
    const commands = opts.push(next);
    const r: ReloadResult = { changed: true, commands };
    events.emit('reload', r);
    return r;
  }

  async function doReload(): Promise<ReloadResult> {
    if (opts.isClosed()) return { changed: false, commands: 0 };
    let next: PolicySet;
    try {
      next = await source.load();
    } catch (e) {
      return reject(ControlPlaneError.from(e, 'NETFENCE_ERR_POLICY_INVALID'));
    }
    return accept(next);
  }

  return {
    current: () => set,
    lastError: () => lastErr,
    reload: () => serial(doReload),
    edit(policy, rule, op) {
      return serial(async () => {
        if (opts.isClosed()) throw new ControlPlaneError('NETFENCE_ERR_CLOSED', 'control plane is closed');
        return accept(await source.edit(policy, rule, op));
      });
    },
    schedule() {
      if (opts.isClosed()) return;
      if (debounceTimer) clearTimeout(debounceTimer);
      debounceTimer = setTimeout(() => {
        debounceTimer = undefined;
        void serial(doReload);
      }, opts.debounceMs);
    },
    async close() {
      if (debounceTimer) clearTimeout(debounceTimer);
      debounceTimer = undefined;
      await chain.catch(() => undefined);
    },
  };
}
