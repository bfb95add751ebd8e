// The attachment runtime: one per attachment, holding its policy state, its
// kernel objects and its DNS server, and serialising every change to them.

import { randomBytes } from 'node:crypto';
import {
  applyCommand,
  expireState,
  kernelView,
  learnAddresses,
  nextExpiry,
  planKernelOps,
  type AttachmentPolicyState,
  type KernelOp,
  type KernelView,
  type PolicyCommand,
} from '@netfence/policy-engine';
import type { Logger } from 'pino';
import type { AttachmentDatapath } from './datapath';
import { DaemonError } from './daemon-error';
import type { DnsServer, ResolvedAnswer } from './dns-servers';
import type { AttachmentRecord, StateStore } from './state-store';

export interface RuntimeDeps {
  readonly store: StateStore;
  readonly logger: Logger;
  readonly minTtlSec: number;
  readonly maxTtlSec: number;
  readonly graceMs: number;
  readonly now: () => number;
}

export function newAttachmentId(): string {
  return `att-${randomBytes(6).toString('hex')}`;
}

/**
 * What the kernel holds, as this runtime last made it. Always built by the runtime itself
 * (kernelView, or the datapath reading its maps) and never handed out, so the learn path may
 * add to its allow set in place instead of rebuilding the whole view for every DNS answer.
 */
type OwnedKernelView = Omit<KernelView, 'allow'> & { readonly allow: Set<string> };

/** Learned addresses reach the disk at most this often (a crash loses only widenings, which fails closed). */
const LEARNED_SAVE_DELAY_MS = 1000;

/**
 * An expiry sweep costs O(learned addresses): learned addresses are swept at most this often
 * (one may outlive its DNS TTL by up to this much; it already has a grace period while in
 * use). CIDR rules with a TTL expire on time.
 */
const LEARNED_SWEEP_INTERVAL_MS = 1000;

/**
 * The allow CIDRs whose only source is a rule with a TTL, and when it lapses: the kernel
 * enforces these deadlines itself, so a grant does not outlive its TTL while the daemon is
 * down. (An address also learned from DNS has none: its expiry is the daemon's, with grace.)
 */
function allowDeadlines(state: AttachmentPolicyState): Map<string, number> {
  const out = new Map<string, number>();
  let learned: Set<string> | undefined;
  for (const r of state.allowCidrs) {
    if (r.expiresAt === undefined) continue;
    learned ??= new Set(state.learned.map((l) => l.address));
    if (!learned.has(r.cidr)) out.set(r.cidr, r.expiresAt);
  }
  return out;
}

function nextCidrExpiry(state: AttachmentPolicyState): number | undefined {
  let min: number | undefined;
  for (const rules of [state.allowCidrs, state.denyCidrs]) for (const r of rules) if (r.expiresAt !== undefined && (min === undefined || r.expiresAt < min)) min = r.expiresAt;
  return min;
}

/** Which allow entries a plan removes, and which of those the new view no longer allows at all. */
function severedPrefixes(ops: readonly KernelOp[], to: KernelView): string[] {
  const out: string[] = [];
  for (const o of ops) if (o.op === 'delete' && o.map === 'allow' && !to.allow.has(o.cidr)) out.push(o.cidr);
  return out;
}

/**
 * One attachment. Every mutation goes through `serial()`, so commands, DNS answers and expiry
 * never interleave, and the kernel always receives the plan from what it holds to what the
 * new state needs.
 */
export class AttachmentRuntime {
  record: AttachmentRecord;
  private kernel: OwnedKernelView;
  /** The deadlines the kernel was last given (see allowDeadlines). */
  private deadlines = new Map<string, number>();
  private chain: Promise<unknown> = Promise.resolve();
  private expiryTimer: NodeJS.Timeout | undefined;
  /** When the expiry timer is due (ms, deps.now clock); undefined without a timer. */
  private expiryAt: number | undefined;
  private lastSweepAt = -Infinity;
  private saveTimer: NodeJS.Timeout | undefined;
  /** A background save in progress; whether the record changed since the last save began; whether that change should not wait. */
  private writing: Promise<void> | undefined;
  private dirty = false;
  private urgent = false;
  private closed = false;
  /** What the kernel config says about DNS filtering (undefined: not written by this process yet). */
  private dnsFiltering: boolean | undefined;
  dnsAllowed = 0n;
  dnsBlocked = 0n;

  constructor(
    record: AttachmentRecord,
    readonly datapath: AttachmentDatapath,
    public dns: DnsServer | undefined,
    private readonly deps: RuntimeDeps,
  ) {
    this.record = record;
    this.kernel = datapath.readView() as OwnedKernelView;
  }

  get id(): string {
    return this.record.id;
  }

  get state(): AttachmentPolicyState {
    return this.record.policy;
  }

  /** Runs `fn` after every earlier mutation has finished. */
  serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.chain.then(() => {
      if (this.closed) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `attachment ${this.id} is gone`);
      return fn();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Brings the kernel to what `state` needs (safe order), then adopts `state`. Rejects whole on
   * failure. Persistence follows one rule: a crash must never give back access that was taken
   * away. A plan that narrows access (removes allow entries, adds deny entries, changes the
   * mode) is written to disk before the kernel sees it; a plan that only widens access goes to
   * the kernel first and to disk soon after (a crash then loses a widening, which fails closed).
   * While the attach is pending nothing is written: a restart rolls a pending attach back.
   */
  private commit(state: AttachmentPolicyState): void {
    const target = kernelView(state);
    const ops = planKernelOps(this.kernel, target);
    const narrows = ops.some((o) => o.op === 'setMode' || (o.op === 'delete' && o.map === 'allow') || (o.op === 'add' && o.map === 'deny'));
    const previous = this.record;
    const next = { ...this.record, policy: state };
    if (narrows && !this.record.pending) this.deps.store.save(next);
    const previousDeadlines = this.deadlines;
    try {
      this.deadlines = allowDeadlines(state);
      this.datapath.setAllowDeadlines(this.deadlines);
      if (ops.length) this.datapath.apply(ops); // undoes itself on failure
    } catch (e) {
      this.deadlines = previousDeadlines;
      try {
        this.datapath.setAllowDeadlines(previousDeadlines);
      } catch (de) {
        this.deps.logger.error({ err: de, attachment: this.id }, 'could not restore the kernel deadlines');
      }
      if (narrows && !previous.pending) this.deps.store.save(previous);
      throw e;
    }
    this.kernel = target as OwnedKernelView; // built just above, owned from here on
    this.record = next;
    const filtering = state.dns.mode !== 'disabled';
    if (filtering !== this.dnsFiltering) {
      const [host, port] = splitHostPort(this.record.dnsAddress);
      this.datapath.configureDns({ address: host, port }, filtering);
      this.dnsFiltering = filtering;
    }
    // Rebuilding the DNS server's rule set is only needed when the DNS config changed.
    if (state.dns !== previous.policy.dns && JSON.stringify(state.dns) !== JSON.stringify(previous.policy.dns)) this.dns?.update(state.dns);
    if (!narrows && !this.record.pending) this.persistSoon();
    for (const cidr of severedPrefixes(ops, target)) {
      this.datapath.sever(cidr).catch((e: unknown) => this.deps.logger.warn({ err: e, cidr, attachment: this.id }, 'could not reset connections to a removed address'));
    }
    this.scheduleExpiry();
  }

  /** Applies a policy command: the new state reaches the kernel, the DNS server and the disk, or nothing changes. */
  applyCommand(cmd: PolicyCommand): Promise<void> {
    return this.serial(() => {
      const next = applyCommand(this.state, cmd, this.deps.now());
      this.commit(next);
    });
  }

  /**
   * A DNS answer: its addresses are in the allow map before this resolves. Costs the answer's
   * size, not the number of addresses learned so far: learning only appends (address, name)
   * pairs or extends expiries (policy-engine's learnAddresses guarantees it), so the kernel
   * needs exactly the appended addresses it does not hold yet, added (never a delete, never a
   * mode change: nothing to order).
   */
  learn(answer: ResolvedAnswer): Promise<void> {
    return this.serial(() => {
      // With DNS filtering off, answers teach the IP filter nothing (the policy holds no names).
      if (this.state.dns.mode === 'disabled' || answer.addresses.length === 0) return;
      const prev = this.state;
      const next = learnAddresses(prev, answer, this.deps.now(), { minTtlSec: this.deps.minTtlSec, maxTtlSec: this.deps.maxTtlSec });
      if (next === prev) return;
      const added = new Set<string>();
      let soonest = Infinity;
      // Entries before prev's length were only extended: already in the kernel, and expiring no sooner.
      const cleared: string[] = [];
      for (let i = prev.learned.length; i < next.learned.length; i++) {
        const l = next.learned[i]!;
        soonest = Math.min(soonest, l.expiresAt);
        if (!this.kernel.allow.has(l.address)) added.add(l.address);
        // also a TTL'd rule: now learned, its expiry is the daemon's (with grace), not the kernel's
        else if (this.deadlines.has(l.address)) cleared.push(l.address);
      }
      if (cleared.length) {
        const deadlines = new Map(this.deadlines);
        for (const c of cleared) deadlines.delete(c);
        this.datapath.setAllowDeadlines(deadlines);
        this.deadlines = deadlines;
      }
      if (added.size) this.datapath.apply([...added].map((cidr): KernelOp => ({ op: 'add', map: 'allow', cidr }))); // undoes itself on failure
      for (const cidr of added) this.kernel.allow.add(cidr);
      this.record = { ...this.record, policy: next };
      if (!this.record.pending) this.persistLater();
      // Re-armed only when the new entry makes the next sweep come sooner (rarely: TTLs are alike).
      if (Math.max(soonest, this.lastSweepAt + LEARNED_SWEEP_INTERVAL_MS) < (this.expiryAt ?? Infinity)) this.scheduleExpiry(soonest);
    });
  }

  /** Re-applies the saved state onto whatever the kernel holds (after a restart). */
  reconcile(): Promise<void> {
    return this.serial(() => {
      this.kernel = this.datapath.readView() as OwnedKernelView;
      const now = this.deps.now();
      const next = expireState(this.state, now, { lastSeenMs: (c) => this.datapath.lastSeenMs(c), graceMs: this.deps.graceMs });
      this.commit(next);
    });
  }

  /** (Re)arms the expiry timer for `at` (default: the state's next expiry), or `retryMs` from now. */
  private scheduleExpiry(at = nextExpiry(this.state), retryMs?: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiryAt = undefined;
    if (this.closed || at === undefined) return;
    const now = this.deps.now();
    let due = Math.max(at, this.lastSweepAt + LEARNED_SWEEP_INTERVAL_MS);
    const cidrAt = nextCidrExpiry(this.state);
    if (cidrAt !== undefined) due = Math.min(due, cidrAt);
    const delay = retryMs ?? Math.max(50, Math.min(due - now, 2 ** 31 - 1));
    this.expiryAt = now + delay;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expiryAt = undefined;
      this.serial(() => {
        const now = this.deps.now();
        this.lastSweepAt = now;
        const next = expireState(this.state, now, { lastSeenMs: (c) => this.datapath.lastSeenMs(c), graceMs: this.deps.graceMs });
        if (next !== this.state) {
          this.commit(next); // schedules the next expiry itself
          return;
        }
        // Nothing lapsed: the timer fired a little early (timers and the wall clock differ by
        // a millisecond or so), or an entry is kept alive by recent traffic and its new expiry
        // lies ahead. Look again then; a second late look only if time has not moved on.
        const again = nextExpiry(this.state);
        this.scheduleExpiry(again, again !== undefined && again <= now ? 1000 : undefined);
      }).catch((e: unknown) => this.deps.logger.error({ err: e, attachment: this.id }, 'expiry failed'));
    }, delay);
    this.expiryTimer.unref();
  }

  /** Writes the record now (synchronously durable). */
  persistNow(): void {
    this.dirty = false;
    this.urgent = false;
    this.deps.store.save(this.record);
  }

  /**
   * Saves the record in the background within LEARNED_SAVE_DELAY_MS: DNS answers come in
   * streams, and a save serialises every learned address. Any save before then takes this
   * change along.
   */
  private persistLater(): void {
    this.dirty = true;
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      if (this.dirty && !this.closed) this.persistSoon();
    }, LEARNED_SAVE_DELAY_MS);
    this.saveTimer.unref();
  }

  /** Saves the record off the event loop now, coalescing bursts (widening commands). */
  private persistSoon(): void {
    this.dirty = true;
    this.urgent = true;
    if (this.writing) return;
    this.writing = (async () => {
      while (this.urgent && !this.closed) {
        this.urgent = false;
        this.dirty = false;
        try {
          await this.deps.store.saveAsync(this.record);
        } catch (e) {
          this.deps.logger.error({ err: e, attachment: this.id }, 'cannot save attachment state');
        }
      }
      this.writing = undefined;
    })();
  }

  setRecord(record: AttachmentRecord): void {
    this.record = record;
  }

  /** Stops timers and the DNS server, releases fds; pins and the saved record stay. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    await this.chain;
    await this.writing;
    if (this.dirty) this.persistNow();
    this.closed = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.saveTimer) clearTimeout(this.saveTimer);
    await this.dns?.close();
    this.datapath.close();
  }

  /** Removes everything: DNS server, programs, pins, saved record. */
  async destroy(): Promise<void> {
    await this.chain;
    this.closed = true;
    await this.writing;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.saveTimer) clearTimeout(this.saveTimer);
    await this.dns?.close().catch(() => undefined);
    this.datapath.destroy();
    this.deps.store.remove(this.id);
  }
}

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  return [host, Number(addr.slice(i + 1))];
}

export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

