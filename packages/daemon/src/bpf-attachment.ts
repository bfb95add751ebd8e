// One attachment on the host-wide program set: its slot (config, counters, DNS limit in the host
// maps), its two rules tries (written through the RuleTrie model: one trie per family holds the
// allow and the deny list) and its pinned links. Everything here is a synchronous syscall.

import { rmSync } from 'node:fs';
import { STATS, type AttachmentConfig, type ModeName, type RuleValue } from '@netfence/bpf-programs';
import { parseCidr, type KernelOp, type KernelView, type PolicyMode } from '@netfence/policy-engine';
import type { Logger } from 'pino';
import { withCapabilityHint } from './capabilities';
import { DaemonError } from './daemon-error';
import type { AttachmentDatapath, DatapathCounters } from './datapath';
import type { HostProgramSet } from './host-program-set';
import { RuleTrie, type RuleLimits, type RuleOp, type RuleWrite } from './rule-trie';
import type { SeverRunner } from './sever-runner';
import { closeRuleTries, ruleValue, type RuleTries } from './slot-state';
import type { Hook } from './pin-layout';
import { devicesOf, hookOf, type SlotTable, type Target } from './slot-table';
import { detachPinnedLinks } from './target-binding';

const MODE_TO_KERNEL: Record<PolicyMode, ModeName> = { disabled: 'DISABLED', allowlist: 'ALLOWLIST', denylist: 'DENYLIST', block_all: 'BLOCK_ALL' };
const MODE_FROM_KERNEL: Record<ModeName, PolicyMode> = { DISABLED: 'disabled', ALLOWLIST: 'allowlist', DENYLIST: 'denylist', BLOCK_ALL: 'block_all' };

/** A kernel or model error as the daemon's: map full as NETFENCE_ERR_MAP_FULL, EPERM with the capabilities. */
export function datapathError(e: unknown, what: string): DaemonError {
  if (e instanceof DaemonError) return e;
  if ((e as { code?: string }).code === 'BPF_ERR_MAP_FULL') return new DaemonError('NETFENCE_ERR_MAP_FULL', `${what}: the eBPF map is full (raise maps.allow_entries / maps.deny_entries)`, { cause: e });
  return withCapabilityHint(new DaemonError('NETFENCE_ERR_DATAPATH', `${what}: ${(e as Error).message}`, { cause: e }));
}

/** A wall-clock deadline (ms) as the programs read it: CLOCK_MONOTONIC seconds, rounded up; 0 (none) for undefined. */
export function monotonicSeconds(wallMs: number | undefined): number {
  if (wallMs === undefined) return 0;
  const monoNs = process.hrtime.bigint() + BigInt(Math.round((wallMs - Date.now()) * 1e6));
  return Math.max(1, Number((monoNs + 999_999_999n) / 1_000_000_000n));
}

/** What the attachments of one datapath share. */
export interface AttachmentContext {
  readonly host: HostProgramSet;
  readonly slots: SlotTable;
  readonly sever: SeverRunner;
  readonly limits: RuleLimits;
  readonly logger: Logger;
  /** Told once this attachment's fds are released (the datapath stops tracking it). */
  readonly forget: (a: BpfAttachment) => void;
}

/** Where an attachment lives: its id, pin directory, slot and target. */
export interface AttachmentPlace {
  readonly id: string;
  readonly dir: string;
  readonly slot: number;
  readonly target: Target;
  /** XDP was asked for and the kernel refused it: why (the target is the TC hook instead). */
  readonly xdpFallback?: string;
}

export class BpfAttachment implements AttachmentDatapath {
  private closed = false;
  private destroyed = false;
  private cfg: AttachmentConfig;
  private severing: Promise<void> = Promise.resolve();
  /** Wall-clock deadlines (ms) of allow entries, enforced by the programs themselves (see setAllowDeadlines). */
  private deadlines: ReadonlyMap<string, number> = new Map();

  constructor(
    private readonly ctx: AttachmentContext,
    readonly place: AttachmentPlace,
    private readonly tries: RuleTries,
    /** What the tries hold (both lists), kept in step with every write. */
    private readonly model: RuleTrie,
  ) {
    this.cfg = ctx.host.maps.config.get(place.slot);
  }

  get tcDirection(): 'ingress' | 'egress' | undefined {
    const t = this.place.target;
    return t.kind === 'tc' && t.direction !== 'xdp' ? t.direction : undefined;
  }

  get hook(): Hook {
    return hookOf(this.place.target);
  }

  get xdpFallback(): string | undefined {
    return this.place.xdpFallback;
  }

  private writeConfig(cfg: AttachmentConfig): void {
    this.ctx.host.maps.config.set(this.place.slot, cfg);
    this.cfg = cfg;
  }

  /** The kernel's entry at exactly this prefix (a trie look-up answers the longest match: checked). */
  private kernelEntry(cidr: ReturnType<typeof parseCidr>): RuleValue | undefined {
    const v = this.tries.views[cidr.family].get({ prefixLen: cidr.prefixLen, data: cidr.bytes });
    return v && v.prefixLen === cidr.prefixLen ? v : undefined;
  }

  /** Writes one model write to the kernel; an entry rewritten keeps the last-seen time the programs gave it. */
  private writeKernel(w: RuleWrite, entry = w.entry): void {
    const view = this.tries.views[w.cidr.family];
    const key = { prefixLen: w.cidr.prefixLen, data: w.cidr.bytes };
    if (!entry) {
      view.delete(key);
      return;
    }
    const lastSeenNs = w.prev ? (this.kernelEntry(w.cidr)?.lastSeenNs ?? 0n) : 0n;
    view.set(key, ruleValue(entry, lastSeenNs));
  }

  /** Writes a batch; on a refusal, puts back what it wrote and the model, then throws. */
  private writeAll(writes: readonly RuleWrite[]): void {
    let i = 0;
    try {
      for (; i < writes.length; i++) this.writeKernel(writes[i]!);
    } catch (e) {
      for (let j = i - 1; j >= 0; j--) {
        try {
          this.writeKernel(writes[j]!, writes[j]!.prev);
        } catch (undoErr) {
          this.ctx.logger.error({ err: undoErr, attachment: this.place.id }, 'could not undo a rules trie write');
        }
      }
      this.model.revert(writes);
      throw e;
    }
  }

  setAllowDeadlines(next: ReadonlyMap<string, number>): void {
    const prev = this.deadlines;
    this.deadlines = next;
    const changed = new Set<string>();
    for (const [c, ms] of next) if (prev.get(c) !== ms) changed.add(c);
    for (const c of prev.keys()) if (!next.has(c)) changed.add(c);
    // Entries not in the tries yet get their deadline when they are added.
    for (const cidr of changed) this.writeAll(this.model.setExpiry(cidr, monotonicSeconds(next.get(cidr))));
  }

  apply(ops: readonly KernelOp[]): void {
    const done: ({ mode: AttachmentConfig } | { writes: RuleWrite[] })[] = [];
    try {
      for (let i = 0; i < ops.length; ) {
        const op = ops[i]!;
        if (op.op === 'setMode') {
          done.push({ mode: this.cfg });
          this.writeConfig({ ...this.cfg, mode: MODE_TO_KERNEL[op.mode], dryRun: op.dryRun });
          i++;
          continue;
        }
        // A run of list ops is one batch: the trie model resolves it (ties, shadows) in one pass.
        const batch: RuleOp[] = [];
        for (; i < ops.length && ops[i]!.op !== 'setMode'; i++) {
          const o = ops[i] as Exclude<KernelOp, { op: 'setMode' }>;
          batch.push({ op: o.op, list: o.map, cidr: o.cidr, expiresS: o.map === 'allow' ? monotonicSeconds(this.deadlines.get(o.cidr)) : 0 });
        }
        const writes = this.model.plan(batch); // throws NETFENCE_ERR_MAP_FULL over a limit, changing nothing
        this.writeAll(writes); // undoes itself on failure
        done.push({ writes });
      }
    } catch (e) {
      // Undo in reverse so the kernel is back where it started.
      for (const d of done.reverse()) {
        try {
          if ('mode' in d) this.writeConfig(d.mode);
          else {
            for (let j = d.writes.length - 1; j >= 0; j--) this.writeKernel(d.writes[j]!, d.writes[j]!.prev);
            this.model.revert(d.writes);
          }
        } catch (undoErr) {
          this.ctx.logger.error({ err: undoErr, attachment: this.place.id }, 'could not undo a kernel op');
        }
      }
      throw datapathError(e, `applying ${ops.length} kernel op(s)`);
    }
  }

  readView(): KernelView {
    const { allow, deny } = this.model.lists();
    return { mode: MODE_FROM_KERNEL[this.cfg.mode], dryRun: !!this.cfg.dryRun, allow, deny };
  }

  configureDns(server: { address: string; port: number }, filtering: boolean): void {
    const v6 = server.address.includes(':');
    this.writeConfig({ ...this.cfg, dnsFilter: filtering, dnsServer: v6 ? { v6: server.address, port: server.port } : { v4: server.address, port: server.port } });
  }

  counters(): DatapathCounters {
    const c = this.ctx.host.maps.stats.getSummed(this.place.slot); // one look-up: the slot's counters on every CPU
    return {
      allowed: c[STATS.ALLOWED]!,
      blocked: c[STATS.BLOCKED]!,
      dryRunWouldBlock: c[STATS.DRY_RUN_WOULD_BLOCK]!,
      eventsLost: c[STATS.EVENTS_LOST]!,
      dnsRateLimited: c[STATS.DNS_RATE_LIMITED]!,
    };
  }

  lastSeenMs(cidr: string): number | undefined {
    const c = parseCidr(cidr);
    if (!this.model.get(c.text)?.allow) return undefined;
    const lastSeenNs = this.kernelEntry(c)?.lastSeenNs ?? 0n;
    if (lastSeenNs === 0n) return undefined;
    const ageMs = Number((process.hrtime.bigint() - lastSeenNs) / 1_000_000n);
    return Date.now() - Math.max(0, ageMs);
  }

  /** Resolves when no sever pass of this attachment is queued or running. */
  settle(): Promise<void> {
    return this.severing;
  }

  /** Severs in the background (cgroups: the host's iterators, one pass at a time host-wide; TC drops by itself). */
  sever(cidr: string): Promise<void> {
    const t = this.place.target;
    if (t.kind !== 'cgroup' || this.closed) return Promise.resolve();
    const run = this.ctx.sever.run({ slot: this.place.slot, cgroupId: t.cgroupId, cgroupPath: t.cgroupPath, cidr }, () => !this.closed);
    this.severing = run.catch(() => undefined);
    return run;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeRuleTries(this.tries);
    this.ctx.forget(this);
  }

  /**
   * Detaches the links (synchronously), then clears the slot (config inactive first) and frees
   * it, then removes the pins. Idempotent.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const t = this.place.target;
    try {
      detachPinnedLinks(this.place.dir, this.ctx.logger, this.ctx.host);
    } finally {
      this.close();
      this.ctx.slots.release(this.place.slot, devicesOf(t));
      rmSync(this.place.dir, { recursive: true, force: true });
    }
  }
}
