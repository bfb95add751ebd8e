// Directories watched for entries that appear and disappear (inotify, through fs.watch): the
// directories auto_attach cgroup rules name (a new cgroup is a mkdir there) and the parents of
// attached cgroups (a removed cgroup is an rmdir there). One watch per directory however many
// holders ask for it; a directory that cannot be watched (it does not exist yet, or went away)
// is kept as held and retried by the owner's timer (`retry`).
//
// cgroupfs (kernfs) sends inotify events for mkdir and rmdir of child cgroups, so this is
// event-driven like the link watch (checked on this kernel: fs.watch on the parent reports
// 'rename' with the child's name for both).

import { existsSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';

export interface DirWatchOptions {
  /** An entry of a watched directory was created, removed or renamed: `path` is dir/name. */
  readonly onEntry: (path: string) => void;
  /** Events of `dir` were lost or came without a name: look at the whole directory. */
  readonly onRescan: (dir: string) => void;
  /** A directory could not be watched, or stopped being watched (said once per change). */
  readonly onProblem: (dir: string, e: Error) => void;
}

interface Held {
  count: number;
  watcher: FSWatcher | undefined;
}

export class DirWatch {
  private readonly held = new Map<string, Held>();
  private closed = false;

  constructor(private readonly o: DirWatchOptions) {}

  /** Holds `dir` (watched from now on, or retried); true when it is watched now. */
  hold(dir: string): boolean {
    const h = this.held.get(dir);
    if (h) {
      h.count++;
      return h.watcher !== undefined;
    }
    const n: Held = { count: 1, watcher: undefined };
    this.held.set(dir, n);
    return this.open(dir, n);
  }

  /** Drops one hold; the last one stops the watch. */
  release(dir: string): void {
    const h = this.held.get(dir);
    if (!h || --h.count > 0) return;
    this.held.delete(dir);
    h.watcher?.close();
  }

  /** Held directories that are not watched now. */
  get unwatched(): string[] {
    return [...this.held].filter(([, h]) => !h.watcher).map(([d]) => d);
  }

  /** Tries again to watch each held directory that is not watched; returns those watched now. */
  retry(): string[] {
    return [...this.held].filter(([d, h]) => !h.watcher && this.open(d, h)).map(([d]) => d);
  }

  close(): void {
    this.closed = true;
    for (const h of this.held.values()) h.watcher?.close();
    this.held.clear();
  }

  private open(dir: string, h: Held): boolean {
    if (this.closed) return false;
    try {
      const w = watch(dir, { persistent: false }, (type, name) => this.event(dir, h, w, type, name));
      w.on('error', (e) => this.lost(dir, h, w, e));
      h.watcher = w;
      return true;
    } catch (e) {
      this.o.onProblem(dir, e as Error);
      return false;
    }
  }

  private event(dir: string, h: Held, w: FSWatcher, type: string, name: string | Buffer | null): void {
    if (h.watcher !== w) return;
    if (type !== 'rename') return; // 'change': a control file written, no cgroup came or went
    if (name === null) return this.o.onRescan(dir);
    const path = join(dir, name.toString());
    // The watched directory itself removed: inotify drops the watch; hold it for the retry.
    if (!existsSync(path) && !existsSync(dir)) return this.lost(dir, h, w, new Error(`${dir} was removed`));
    this.o.onEntry(path);
  }

  private lost(dir: string, h: Held, w: FSWatcher, e: Error): void {
    if (h.watcher !== w) return;
    w.close();
    h.watcher = undefined;
    this.o.onProblem(dir, e);
  }
}
