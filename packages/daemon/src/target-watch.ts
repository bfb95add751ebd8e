// The targets as the kernel announces them, with no polling: link events of the daemon's network
// namespace (rtnetlink, @netfence/netlink: RTM_NEWLINK / RTM_DELLINK read on a worker thread) and
// entries of cgroup directories (inotify, dir-watch.ts). A deleted interface or a removed cgroup
// takes its attachment with it at once (Unsubscribed REMOVED); a new one goes to the auto-attach
// driver. What cannot be had by events is retried every `fallbackMs` (target_watch_interval):
// the link watch when its socket failed (links listed instead meanwhile), a cgroup directory
// that does not exist yet.

import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { listLinks as netlinkListLinks, watchLinks as netlinkWatchLinks, type LinkRecord, type LinkWatcher } from '@netfence/netlink';
import type { Logger } from 'pino';
import type { AutoAttacher } from './auto-attach';
import { cgroupWatchDirs, type AutoAttachRule } from './auto-attach-rules';
import { DirWatch } from './dir-watch';
import type { AttachmentRecord } from './state-store';
import { cgroupAlive } from './targets';

/** What the watch tells the registry. */
export interface TargetWatchRegistry {
  interfaceGone(ifindex: number): void;
  cgroupGone(path: string): void;
  checkTargets(links: Map<number, string> | undefined): void;
}

export interface TargetWatchDeps {
  readonly registry: TargetWatchRegistry;
  readonly auto: AutoAttacher;
  readonly logger: Logger;
  /** target_watch_interval: the retry period of what events cannot cover (see above). */
  readonly fallbackMs: number;
  /** The link source (default @netfence/netlink's). */
  readonly watchLinks?: typeof netlinkWatchLinks;
  readonly listLinks?: typeof netlinkListLinks;
}

export class TargetWatch {
  private readonly dirs: DirWatch;
  private readonly watchLinks: typeof netlinkWatchLinks;
  private readonly listLinks: typeof netlinkListLinks;
  private links: LinkWatcher | undefined;
  private phase: 'new' | 'started' | 'closed' = 'new';
  /** The directories the cgroup rules need, each held once. */
  private ruleDirs: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The link watch could not be made (said once, not on every retry). */
  private linksDown = false;

  constructor(private readonly d: TargetWatchDeps) {
    this.watchLinks = d.watchLinks ?? netlinkWatchLinks;
    this.listLinks = d.listLinks ?? netlinkListLinks;
    this.dirs = new DirWatch({
      onEntry: (p) => this.entry(p),
      onRescan: (dir) => this.rescanDir(dir),
      onProblem: (dir, e) => {
        d.logger.warn({ dir, err: e }, `cannot watch ${dir}: retried every ${d.fallbackMs} ms`);
        this.armFallback();
      },
    });
  }

  /** The registry's hook: while a cgroup attachment is held, its parent directory is watched (its rmdir shows there). */
  held(r: AttachmentRecord, held: boolean): void {
    if (r.kind !== 'cgroup' || this.phase === 'closed') return;
    const dir = dirname(r.target);
    if (!held) return this.dirs.release(dir);
    this.dirs.hold(dir);
    // Removed before its parent was watched: no event will come.
    if (!cgroupAlive(r.target, r.identity.cgroupId ?? '')) queueMicrotask(() => this.d.registry.cgroupGone(r.target));
  }

  /** Starts the link watch (links that exist now are matched, attachments judged) and the rules' directory watches. */
  start(rules: readonly AutoAttachRule[]): void {
    if (this.phase !== 'new') return;
    this.phase = 'started';
    this.d.auto.setRules(rules);
    this.holdRuleDirs(rules);
    if (!this.startLinks()) this.resyncFromList();
    for (const dir of this.ruleDirs) this.rescanDir(dir);
  }

  /** New rules (SetAutoAttachRules): existing links and cgroups are matched against them too. */
  setRules(rules: readonly AutoAttachRule[]): void {
    this.d.auto.setRules(rules);
    this.holdRuleDirs(rules);
    if (this.phase !== 'started') return;
    try {
      this.d.auto.rematch(this.listLinks());
    } catch (e) {
      this.d.logger.warn({ err: e }, 'cannot list links to match the new rules; new links are matched as they come');
    }
    for (const dir of this.ruleDirs) this.rescanDir(dir);
  }

  close(): void {
    this.phase = 'closed';
    if (this.timer) clearInterval(this.timer);
    this.dirs.close();
    void this.links?.close();
  }

  private holdRuleDirs(rules: readonly AutoAttachRule[]): void {
    const dirs = cgroupWatchDirs(rules);
    for (const dir of dirs) if (!this.ruleDirs.includes(dir)) this.dirs.hold(dir);
    for (const dir of this.ruleDirs) if (!dirs.includes(dir)) this.dirs.release(dir);
    this.ruleDirs = dirs;
  }

  private startLinks(): boolean {
    try {
      this.links = this.watchLinks({ onLink: (l) => this.link(l), onResync: (all) => this.resync(all), onError: (e) => this.linkError(e) });
    } catch (e) {
      if (!this.linksDown) this.d.logger.error({ err: e }, `cannot watch link events: links are listed every ${this.d.fallbackMs} ms instead until the watch can be made`);
      this.linksDown = true;
      this.armFallback();
      return false;
    }
    if (this.linksDown) this.d.logger.info('link event watch made again');
    this.linksDown = false;
    this.resync(this.links.existing);
    return true;
  }

  private link(l: LinkRecord): void {
    if (l.event === 'del') this.d.registry.interfaceGone(l.ifindex);
    this.d.auto.link(l);
  }

  /** Every link now (the listing at start, or after the kernel dropped events). */
  private resync(all: readonly LinkRecord[]): void {
    this.d.registry.checkTargets(new Map(all.map((l) => [l.ifindex, l.name])));
    this.d.auto.resync(all);
  }

  private linkError(e: Error & { code?: string }): void {
    if (this.phase !== 'started') return;
    if (e.code === 'NETLINK_ERR_MESSAGE') {
      // A batch could not be read: what it said is unknown, so everything is looked at again.
      this.d.logger.warn({ err: e }, 'a link event could not be read: listing links');
      return this.resyncFromList();
    }
    this.d.logger.error({ err: e }, `link event watch failed: links are listed every ${this.d.fallbackMs} ms until it is made again`);
    void this.links?.close();
    this.links = undefined;
    this.linksDown = true;
    this.armFallback();
  }

  private resyncFromList(): void {
    try {
      this.resync(this.listLinks());
    } catch (e) {
      this.d.logger.warn({ err: e }, 'cannot list links');
    }
  }

  private entry(path: string): void {
    if (cgroupDirExists(path)) this.d.auto.cgroup(path);
    else this.d.registry.cgroupGone(path);
  }

  /** Every child of a watched directory (at start, for new rules, when events were lost). */
  private rescanDir(dir: string): void {
    let names: string[];
    try {
      names = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return; // not there (yet): its watch is retried
    }
    for (const n of names) this.d.auto.cgroup(join(dir, n));
    this.d.registry.checkTargets(undefined);
  }

  /** The fallback timer runs only while something cannot be watched. */
  private armFallback(): void {
    if (this.timer || this.phase === 'closed') return;
    this.timer = setInterval(() => this.fallback(), this.d.fallbackMs);
    this.timer.unref();
  }

  private fallback(): void {
    if (this.phase !== 'started') return;
    if (!this.links && !this.startLinks()) this.resyncFromList();
    for (const dir of this.dirs.retry()) this.rescanDir(dir);
    const missing = this.dirs.unwatched;
    // Attached cgroups whose directory cannot be watched are looked at on each turn.
    if (missing.length > 0) this.d.registry.checkTargets(undefined);
    if (this.links && missing.length === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

function cgroupDirExists(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}
