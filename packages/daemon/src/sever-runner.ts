// Severing for cgroup attachments: the host's sever iterators (loaded once, lazily) run one pass
// at a time for the whole host (they share sever_cfg, which names the slot whose policy judges,
// the cgroup and the prefix). A socket iterator walks the network namespace it is created in,
// so a pass runs in every namespace a process of the cgroup (or a descendant) lives in.

import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { attachIter, readIteratorAsync } from '@netfence/bpf-loader';
import { OBJECTS, SEVER_PROGRAMS } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import type { HostProgramSet } from './host-program-set';

export interface SeverTargetOf {
  readonly slot: number;
  readonly cgroupId: bigint;
  readonly cgroupPath: string;
  readonly cidr: string;
}

export class SeverRunner {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: HostProgramSet,
    private readonly logger: Logger,
  ) {}

  /** Queues a pass; it is skipped when `alive()` is false by the time its turn comes. */
  run(t: SeverTargetOf, alive: () => boolean): Promise<void> {
    const run = this.chain.then(() => (alive() ? this.pass(t, alive) : undefined));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no pass is queued or running. */
  settle(): Promise<void> {
    return this.chain;
  }

  private async pass(t: SeverTargetOf, alive: () => boolean): Promise<void> {
    const iterators = await this.host.severIterators();
    if (!alive()) return;
    this.host.maps.severCfg.set(0, { slot: t.slot, cgroupId: t.cgroupId, prefix: t.cidr });
    const namespaces = cgroupNetnsPaths(t.cgroupPath);
    for (const p of SEVER_PROGRAMS) {
      const link = attachIter(iterators.program(OBJECTS.sever.programs[p].name));
      try {
        for (const ns of namespaces) {
          try {
            await readIteratorAsync(link, { netnsPath: ns });
          } catch (e) {
            this.logger.warn({ err: e, netns: ns }, 'sever pass failed in a namespace');
          }
        }
      } finally {
        link.close();
      }
    }
  }
}

/** One /proc/<pid>/ns/net path per distinct network namespace of the cgroup's processes (descendants included). */
function cgroupNetnsPaths(cgroupPath: string): string[] {
  const byInode = new Map<string, string>();
  const walk = (dir: string, depth: number) => {
    let procs: string[] = [];
    try {
      procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    } catch {
      return;
    }
    for (const pid of procs) {
      try {
        const ns = readlinkSync(`/proc/${pid}/ns/net`);
        if (!byInode.has(ns)) byInode.set(ns, `/proc/${pid}/ns/net`);
      } catch {
        /* exited */
      }
    }
    if (depth > 32) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name), depth + 1);
  };
  walk(cgroupPath, 0);
  return [...byInode.values()];
}
