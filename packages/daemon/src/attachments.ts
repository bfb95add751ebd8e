// The attachment runtime: one per attachment, holding its policy state, its
// kernel objects and its DNS server, and serialising every change to them.

import { randomBytes } from 'node:crypto';
import {
  applyCommand,
  expireState,
  kernelView,
  LearnedTable,
  parseAddress,
  planKernelOps,
  type AttachmentPolicyState,
  type LearnedAddress,
  type KernelOp,
  type KernelView,
  type PolicyCommand,
} from '@netfence/policy-engine';
import type { Logger } from 'pino';
import type { AttachmentDatapath } from './datapath';
import { DaemonError } from './daemon-error';
import type { DnsServer, ResolvedAnswer } from './dns-server-types';
import type { AttachmentRecord, StateStore } from './state-store';

export interface RuntimeDeps {
  readonly store: StateStore;
  readonly logger: Logger;
  readonly minTtlSec: number;
  readonly maxTtlSec: number;
  readonly graceMs: number;
  /** Per-name cap on learned addresses (default: none). */
  readonly maxAddressesPerName?: number;
  readonly now: () => number;
}

/**
 * Starts an attachment's DNS server for `record` (on a port it picks, or at the record's
 * address); every answer the server resolves goes to `learn` before it is released.
 * Returns the server and the address it bound.
 */
export type DnsOpener = (record: AttachmentRecord, learn: (answer: ResolvedAnswer) => Promise<void>) => Promise<{ server: DnsServer; dnsAddress: string }>;

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
 * Expired learned entries handled per turn of the event loop: each costs a map look-up and a
 * delete (syscalls, a few µs each), and 2,000 of them at once (a 2,000 qps stream of 5 s TTLs)
 * held DNS answers back for up to 14 ms (issue 16's profile). Answers queue between chunks.
 * 256 a chunk still made 2-5 ms turns back to back after a dnsperf saturation run (the fixed-rate
 * run's profile); 64 keeps a turn near 1 ms.
 */
const LEARNED_SWEEP_CHUNK = 64;

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

/** The static allow prefixes of a policy (cached per policy: the learn path asks on every answer). */
const staticAllowSets = new WeakMap<readonly unknown[], Set<string>>();
function staticAllow(state: AttachmentPolicyState): Set<string> {
  let s = staticAllowSets.get(state.allowCidrs);
  if (!s) staticAllowSets.set(state.allowCidrs, (s = new Set(state.allowCidrs.map((r) => r.cidr))));
  return s;
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
  /** The record; its policy's `learned` may lag behind `table` (see `record`). */
  private rec: AttachmentRecord;
  /**
   * The learned addresses, the DNS answer path's own index: an answer costs its addresses, not
   * a copy of everything learned (see LearnedTable). `record` and `state` build the frozen list
   * from it only when asked (saves, commands, sweeps), at most once per change.
   */
  private table: LearnedTable;
  /** Learned entries the per-name cap pushed out, and answer addresses beyond it. */
  learnedEvicted = 0;
  learnedOverCap = 0;
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

  /** This attachment's DNS server, once startDns has bound it. */
  dns: DnsServer | undefined;

  constructor(
    record: AttachmentRecord,
    readonly datapath: AttachmentDatapath,
    private readonly deps: RuntimeDeps,
  ) {
    this.rec = record;
    this.table = this.tableOf(record.policy.learned);
    this.kernel = datapath.readView() as OwnedKernelView;
  }

  private tableOf(learned: readonly LearnedAddress[]): LearnedTable {
    const opts = this.deps.maxAddressesPerName === undefined ? {} : { maxAddressesPerName: this.deps.maxAddressesPerName };
    return new LearnedTable(learned, opts, this.table as LearnedTable | undefined);
  }

  /** The record with every learned address (built from the table when it changed since). */
  get record(): AttachmentRecord {
    const learned = this.table.list();
    if (this.rec.policy.learned !== learned) this.rec = { ...this.rec, policy: Object.freeze({ ...this.rec.policy, learned }) };
    return this.rec;
  }

  get id(): string {
    return this.rec.id;
  }

  get state(): AttachmentPolicyState {
    return this.record.policy;
  }

  /** How many addresses are learned (without building the list). */
  get learnedCount(): number {
    return this.table.size;
  }

  /** The DNS name an address was learned from (learnedFrom's answer, from the index). */
  learnedFrom(address: string): string | undefined {
    let text: string;
    try {
      text = parseAddress(address).text;
    } catch {
      return undefined;
    }
    return this.table.nameOf(text);
  }

  /**
   * Starts this attachment's own DNS server, whose answers this runtime learns; the record
   * takes the address it bound. Rejects (and holds no server) when it cannot bind. Called once,
   * by the registry, before anything else can reach the runtime (attach, restore).
   */
  async startDns(open: DnsOpener): Promise<void> {
    const { server, dnsAddress } = await open(this.rec, (answer) => this.learn(answer));
    this.dns = server;
    if (dnsAddress !== this.rec.dnsAddress) this.rec = { ...this.rec, dnsAddress };
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
    this.rec = next;
    if (state.learned !== this.table.list()) this.table = this.tableOf(state.learned);
    const filtering = state.dns.mode !== 'disabled';
    if (filtering !== this.dnsFiltering) {
      const [host, port] = splitHostPort(this.rec.dnsAddress);
      this.datapath.configureDns({ address: host, port }, filtering);
      this.dnsFiltering = filtering;
    }
    // Rebuilding the DNS server's rule set is only needed when the DNS config changed.
    if (state.dns !== previous.policy.dns && JSON.stringify(state.dns) !== JSON.stringify(previous.policy.dns)) this.dns?.update(state.dns);
    if (!narrows && !this.rec.pending) this.persistSoon();
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
   * A DNS answer: its addresses are in the allow map before this resolves (a failed map write
   * rejects, and the answer becomes SERVFAIL). Costs the answer's size, not the number of
   * addresses learned (LearnedTable): the kernel gets exactly the addresses no name held yet,
   * and, when the per-name cap pushes entries out, the delete of those no other name holds.
   * The change reaches the disk within LEARNED_SAVE_DELAY_MS: a crash before loses a widening
   * (fails closed) or an eviction (a resource bound, not a revocation: the evicted address was
   * learned and had not expired).
   */
  learn(answer: ResolvedAnswer): Promise<void> {
    return this.serial(() => {
      // With DNS filtering off, answers teach the IP filter nothing (the policy holds no names).
      if (this.rec.policy.dns.mode === 'disabled' || answer.addresses.length === 0) return;
      const plan = this.table.plan(answer, this.deps.now(), {
        minTtlSec: this.deps.minTtlSec,
        maxTtlSec: this.deps.maxTtlSec,
        lastSeenMs: (c) => this.datapath.lastSeenMs(c),
      });
      this.learnedOverCap += plan.skipped;
      if (plan.upserts.length === 0 && plan.evictions.length === 0) return;
      const statics = staticAllow(this.rec.policy);
      const adds = plan.added.filter((c) => !this.kernel.allow.has(c));
      const drops = plan.released.filter((c) => !statics.has(c));
      const ops: KernelOp[] = [];
      for (const cidr of adds) ops.push({ op: 'add', map: 'allow', cidr });
      for (const cidr of drops) ops.push({ op: 'delete', map: 'allow', cidr });
      if (ops.length) this.datapath.apply(ops); // undoes itself on failure
      for (const cidr of adds) this.kernel.allow.add(cidr);
      for (const cidr of drops) this.kernel.allow.delete(cidr);
      this.table.apply(plan);
      this.learnedEvicted += plan.evictions.length;
      // A TTL'd rule now also learned expires with the learned entry (the daemon's, with grace), and
      // one no longer learned gets its kernel deadline back.
      const touched = [...plan.added, ...plan.released].filter((c) => statics.has(c));
      if (touched.length) this.syncDeadlines();
      if (!this.rec.pending) this.persistLater();
      // Re-armed only when the new entry makes the next sweep come sooner (rarely: TTLs are alike).
      if (Math.max(plan.soonest, this.lastSweepAt + LEARNED_SWEEP_INTERVAL_MS) < (this.expiryAt ?? Infinity)) this.scheduleExpiry(plan.soonest);
    });
  }

  private syncDeadlines(): void {
    const deadlines = allowDeadlines(this.state);
    this.datapath.setAllowDeadlines(deadlines);
    this.deadlines = deadlines;
  }

  /**
   * The learned half of an expiry sweep, without rebuilding the state or the kernel view:
   * O(learned) to scan, then O(expired). Saved within LEARNED_SAVE_DELAY_MS, not before the
   * kernel sees it as other narrowings are: every saved version of an expired entry expires no later
   * (learning only extends expiries), and a restart expires the saved state before it applies
   * it, so a crash cannot give the access back.
   */
  private expireLearned(now: number): boolean {
    const seen = new Map<string, number | undefined>();
    const lastSeen = (c: string) => {
      if (!seen.has(c)) seen.set(c, this.datapath.lastSeenMs(c));
      return seen.get(c);
    };
    const out = this.table.planExpiry(now, { lastSeenMs: lastSeen, graceMs: this.deps.graceMs, limit: LEARNED_SWEEP_CHUNK });
    if (out.removed.length === 0 && out.kept.length === 0) return false;
    const statics = staticAllow(this.rec.policy);
    const drops = out.released.filter((c) => !statics.has(c));
    // Only an entry the kernel saw traffic through can carry a connection (the filter stamps the
    // entry that let a packet or connect through), so only those need a sever pass.
    const severed = drops.filter((c) => lastSeen(c) !== undefined);
    if (drops.length) this.datapath.apply(drops.map((cidr): KernelOp => ({ op: 'delete', map: 'allow', cidr }))); // undoes itself on failure
    for (const cidr of drops) this.kernel.allow.delete(cidr);
    this.table.applyExpiry(out);
    if (out.released.some((c) => statics.has(c))) this.syncDeadlines();
    // Coalesced like learned additions (at most one save a second): a save per sweep chunk
    // kept a save of the whole record running back to back under a stream of answers.
    if (!this.rec.pending) this.persistLater();
    for (const cidr of severed) {
      this.datapath.sever(cidr).catch((e: unknown) => this.deps.logger.warn({ err: e, cidr, attachment: this.id }, 'could not reset connections to a removed address'));
    }
    return out.more;
  }

  /** The whole state with every lapsed rule and learned entry removed (the general, unchunked path). */
  private expiredState(now: number): AttachmentPolicyState {
    return expireState(this.state, now, { lastSeenMs: (c) => this.datapath.lastSeenMs(c), graceMs: this.deps.graceMs });
  }

  /** Re-applies the saved state onto whatever the kernel holds (after a restart). */
  reconcile(): Promise<void> {
    return this.serial(() => {
      this.kernel = this.datapath.readView() as OwnedKernelView;
      const now = this.deps.now();
      const next = this.expiredState(now);
      this.commit(next);
    });
  }

  /** (Re)arms the expiry timer for `at` (default: the state's next expiry), or `retryMs` from now. */
  private scheduleExpiry(at = this.nextExpiry(), retryMs?: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiryAt = undefined;
    if (this.closed || at === undefined) return;
    const now = this.deps.now();
    let due = Math.max(at, this.lastSweepAt + LEARNED_SWEEP_INTERVAL_MS);
    const cidrAt = nextCidrExpiry(this.rec.policy);
    if (cidrAt !== undefined) due = Math.min(due, cidrAt);
    const delay = retryMs ?? Math.max(50, Math.min(due - now, 2 ** 31 - 1));
    this.expiryAt = now + delay;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expiryAt = undefined;
      this.serial(() => {
        const now = this.deps.now();
        this.lastSweepAt = now;
        const cidrAt = nextCidrExpiry(this.rec.policy);
        if (cidrAt !== undefined && cidrAt <= now) {
          // a rule with a TTL lapsed: the general path (plan from the kernel view, saved first)
          const next = this.expiredState(now);
          if (next !== this.state) {
            this.commit(next); // schedules the next expiry itself
            return;
          }
        } else if (this.expireLearned(now)) {
          this.scheduleExpiry(now, 0); // the rest in the next turn, after the answers waiting
          return;
        }
        // Learned entries swept (or nothing lapsed: the timer fired a little early, timers and
        // the wall clock differing by a millisecond or so, or an entry is kept alive by recent
        // traffic and its new expiry lies ahead). Look again then; a second late look only if
        // time has not moved on.
        const again = this.nextExpiry();
        this.scheduleExpiry(again, again !== undefined && again <= now ? 1000 : undefined);
      }).catch((e: unknown) => {
        this.deps.logger.error({ err: e, attachment: this.id }, 'expiry failed');
        this.scheduleExpiry(this.nextExpiry(), 1000); // the kernel write was undone: try again
      });
    }, delay);
    this.expiryTimer.unref();
  }

  /** The state's next expiry (nextExpiry), without building the learned list. */
  private nextExpiry(): number | undefined {
    const learned = this.table.nextExpiry();
    const cidr = nextCidrExpiry(this.rec.policy);
    return learned === undefined ? cidr : cidr === undefined ? learned : Math.min(learned, cidr);
  }

  /** Writes the record now (synchronously durable). */
  persistNow(): void {
    this.dirty = false;
    this.urgent = false;
    this.deps.store.save(this.record);
  }

  /**
   * Writes the record now, without waiting for the disk (StateStore.write: it survives the
   * daemon dying from here on and is fsynced in the background). Attach uses it.
   */
  persistWritten(): void {
    this.dirty = false;
    this.urgent = false;
    this.deps.store.write(this.record);
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
    this.rec = record;
    if (record.policy.learned !== this.table.list()) this.table = this.tableOf(record.policy.learned);
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

