// The attachment registry: every attachment this daemon holds (its runtime), and the jobs on
// that set: attach (by a call, or by an auto_attach rule), restore at start, teardown (detach,
// target gone: target-watch.ts tells it), the commands and drop events the control plane link
// routes to an attachment. The process shell
// (daemon.ts) owns the registry; the registry reaches the control plane only through `link()`.

import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { ControlPlaneClient } from '@netfence/controlplane-client';
import { emptyState } from '@netfence/policy-engine';
import { UnsubscribeReason, type ControlCommand } from '@netfence/proto';
import { attachmentTypeToPb, dnsModeToPb, policyModeToPb } from '@netfence/policy-wire';
import type { Logger } from 'pino';
import { createAttachmentDns, type AttachmentDns } from './attachment-dns';
import { AttachmentRuntime, newAttachmentId, type RuntimeDeps } from './attachments';
import { AwaitingAcks } from './background-subscribe';
import type { DaemonConfig } from './config';
import { DaemonError } from './daemon-error';
import type { AttachParams, AttachmentDatapath, Datapath, DatapathEvent } from './datapath';
import type { StartDnsServer } from './dns-server-types';
import { quoteInput } from './request-limits';
import type { AttachmentRecord, StateStore } from './state-store';
import { interfaceSnapshot, resolveAttachTarget, targetAlive, type AttachTarget } from './targets';
import { applyWireCommand } from './wire-command';
import type { WorkloadLog } from './workload-log';
import type { EventHub } from './event-hub';
import type { AttachInput } from './api-server';

export interface RegistryDeps {
  readonly config: DaemonConfig;
  readonly logger: Logger;
  readonly store: StateStore;
  readonly now: () => number;
  readonly workloadLog: WorkloadLog;
  readonly startDnsServer: StartDnsServer;
  /** The datapath (created by the shell at start, before restore). */
  readonly datapath: () => Datapath;
  /** The control plane link, once connected (undefined before start and while restoring). */
  readonly link: () => ControlPlaneClient | undefined;
  /** Told how long each applied command took, received to kernel maps (the metrics' histogram). */
  readonly commandApplied?: (command: string, seconds: number) => void;
  /** Where drop events go for `netfenced events` (WatchEvents). */
  readonly events?: EventHub;
  /** Told when an attachment is held (restored, attached) and when it goes: the target watch follows its target. */
  readonly held?: (r: AttachmentRecord, held: boolean) => void;
}

/** Counters the metrics read: drop events, and commands applied or rejected whole. */
export interface RegistryCounters {
  denyEvents: number;
  commandsApplied: number;
  commandsRejected: number;
}

type Subscribed = Parameters<ControlPlaneClient['subscribe']>[0];

/**
 * Attach calls in progress at once (each holds a slot, a DNS server and a Subscribed
 * waiting for its ack); one more is refused with NETFENCE_ERR_ATTACH_BUSY (RESOURCE_EXHAUSTED),
 * so a burst costs bounded memory and sockets and every caller gets an answer it can retry on.
 */
export const MAX_ATTACHES_IN_PROGRESS = 1024;

/**
 * What the datapath needs of a record (its kind, identity, TC direction, and XDP: as asked
 * before the attach is made, then where it runs, so a fallen-back attachment stays at TC).
 */
function datapathParams(r: AttachmentRecord): AttachParams {
  const xdp = r.hook === undefined ? !!r.xdp : r.hook === 'xdp';
  return r.kind === 'tc'
    ? { kind: 'tc', id: r.id, numericId: r.numericId, ifindex: r.identity.ifindex!, direction: r.tcDirection ?? 'ingress', l3: !!r.l3, ...(xdp ? { xdp } : {}) }
    : { kind: 'cgroup', id: r.id, numericId: r.numericId, cgroupPath: r.target };
}

/** The record with where an interface's filter runs (XDP or TC) and why XDP fell back, once attached. */
function withHook(r: AttachmentRecord, dp: AttachmentDatapath): AttachmentRecord {
  if (dp.hook === 'cgroup') return r;
  return { ...r, hook: dp.hook, ...(dp.xdpFallback === undefined ? {} : { xdpFallback: dp.xdpFallback }) };
}

function identityKey(r: { kind: string; identity: { ifindex?: number; cgroupId?: string } }): string {
  return r.kind === 'tc' ? `tc:${r.identity.ifindex}` : `cg:${r.identity.cgroupId}`;
}

/** An attach whose filter is in the kernel (or failed there), not finished yet. */
interface Begun {
  readonly key: string;
  readonly record: AttachmentRecord;
  /** Settled before begin() returns: the datapath attaches synchronously. */
  readonly dp: Promise<AttachmentDatapath>;
  /** The target went away meanwhile (its interface deleted, its cgroup removed). */
  gone: boolean;
}

/** An auto attach (auto-attach.ts): filtering already; `finish` makes the rest. */
export interface StartedAttach {
  readonly id: string;
  readonly target: string;
  finish(): Promise<{ id: string; dnsAddress: string }>;
}

export class AttachmentRegistry {
  private readonly runtimes = new Map<string, AttachmentRuntime>();
  /** Drop events name their attachment by the small number the kernel knows it by. */
  private readonly byNumericId = new Map<number, AttachmentRuntime>();
  /** Every held attachment by its target's identity (identityKey). */
  private readonly byKey = new Map<string, AttachmentRuntime>();
  /** Attaches in progress (calls and auto), by target identity, so a duplicate is refused before it races. */
  private readonly begun = new Map<string, Begun>();
  /** Attach calls in progress (auto attaches are bounded by their driver's queue instead). */
  private callsInProgress = 0;
  /** Attached with subscribe_ack_timeout 0: their SubscribedAck goes on in the background. */
  readonly awaiting = new AwaitingAcks();
  /** Targets that vanished while the daemon was down: Unsubscribed once the link is up. */
  private readonly vanished: string[] = [];
  private readonly dns: AttachmentDns;
  private readonly runtimeDeps: RuntimeDeps;
  private readonly noWait: boolean;
  private nextNumericId = 1;
  readonly counters: RegistryCounters = { denyEvents: 0, commandsApplied: 0, commandsRejected: 0 };
  /** Saved attachments restore() could not take back (unreadable record, cannot attach again): /readyz says so. */
  readonly unrestored: string[] = [];

  constructor(private readonly d: RegistryDeps) {
    const c = d.config;
    this.noWait = c.control_plane.subscribe_ack_timeout === 0;
    this.runtimeDeps = {
      store: d.store,
      logger: d.logger.child({ component: 'attachment' }),
      minTtlSec: c.dns.min_ttl / 1000,
      maxTtlSec: c.dns.max_ttl / 1000,
      graceMs: c.dns.grace,
      maxAddressesPerName: c.dns.max_addresses_per_name,
      now: d.now,
    };
    this.dns = createAttachmentDns({
      listenAddr: c.dns.listen_addr,
      portMin: c.dns.port_min,
      portMax: c.dns.port_max,
      start: d.startDnsServer,
      decide: async (id, name, qtype) => {
        const client = d.link();
        if (!client) throw new DaemonError('NETFENCE_ERR_CONTROL_PLANE_UNAVAILABLE', 'no control plane to decide in proxy mode');
        const r = await client.queryDns({ id, domain: name, queryType: qtype }, { deadlineMs: c.control_plane.query_dns_timeout });
        return { allow: r.allow, ips: r.ips, addToFilter: r.addToFilter, ttlSec: r.ttlSeconds || undefined };
      },
    });
  }

  get size(): number {
    return this.runtimes.size;
  }

  get(id: string): AttachmentRuntime | undefined {
    return this.runtimes.get(id);
  }

  all(): AttachmentRuntime[] {
    return [...this.runtimes.values()];
  }

  private add(rt: AttachmentRuntime): void {
    this.runtimes.set(rt.id, rt);
    this.byNumericId.set(rt.record.numericId, rt);
    this.byKey.set(identityKey(rt.record), rt);
    this.d.held?.(rt.record, true);
  }

  private drop(rt: AttachmentRuntime): void {
    if (this.runtimes.get(rt.id) !== rt) return;
    this.runtimes.delete(rt.id);
    this.byNumericId.delete(rt.record.numericId);
    this.byKey.delete(identityKey(rt.record));
    this.d.held?.(rt.record, false);
  }

  /** Is this target attached, or being attached? */
  holds(t: Pick<AttachTarget, 'kind' | 'identity'>): boolean {
    const key = identityKey(t);
    return this.byKey.has(key) || this.begun.has(key);
  }

  /** Takes back every saved attachment at start (see restoreOne); removes orphaned pins. */
  async restore(): Promise<void> {
    const { records, problems } = this.d.store.loadAll();
    // An attachment whose record cannot be read keeps its pinned filter (fail closed): it is left
    // enforcing, unmanaged, never taken for an orphan and removed.
    const unmanaged = new Set<string>();
    for (const p of problems) {
      this.d.logger.error({ file: p.file, attachment: p.id, problem: p.error }, 'unreadable attachment record left in place; its pinned filter keeps enforcing, unmanaged');
      unmanaged.add(p.id);
      this.unrestored.push(p.id);
    }
    const links = interfaceSnapshot();
    for (const rec of records) {
      this.nextNumericId = Math.max(this.nextNumericId, rec.numericId + 1);
      if (!(await this.restoreOne(rec, links))) {
        unmanaged.add(rec.id);
        this.unrestored.push(rec.id);
      }
    }
    // Pins without a record: an attach that crashed before saving; nothing vouches for them.
    const datapath = this.d.datapath();
    for (const id of datapath.pinnedIds()) {
      if (!this.runtimes.has(id) && !unmanaged.has(id) && !records.some((r) => r.id === id)) {
        this.d.logger.info({ attachment: id }, 'removing orphaned pins');
        datapath.removePins(id);
      }
    }
  }

  /** One saved attachment: rolled back, forgotten (target gone) or managed again. False: left unmanaged. */
  private async restoreOne(rec: AttachmentRecord, links: Map<number, string>): Promise<boolean> {
    const datapath = this.d.datapath();
    const log = this.d.logger.child({ attachment: rec.id });
    const alive = targetAlive(rec, links);
    if (rec.pending || !alive) {
      log.info({ pending: !!rec.pending, alive }, rec.pending ? 'rolling back an attach that never completed' : 'target vanished while the daemon was down');
      try {
        datapath.removePins(rec.id);
      } catch (e) {
        log.warn({ err: e }, 'could not remove pins');
      }
      this.d.store.remove(rec.id);
      if (!rec.pending) this.vanished.push(rec.id);
      return true;
    }
    let dp: AttachmentDatapath;
    try {
      dp = datapath.reopen(datapathParams(rec));
    } catch (e) {
      log.warn({ err: e }, 'pins missing or unusable: attaching again from the saved state');
      try {
        dp = await datapath.reattach(datapathParams(rec));
      } catch (e2) {
        // Fail closed: whatever is still pinned keeps enforcing; the record stays for the next start.
        log.error({ err: e2 }, 'cannot attach again; the attachment is not managed until the next start, its pinned filter is left in place');
        return false;
      }
    }
    const rt = new AttachmentRuntime(rec, dp, this.runtimeDeps);
    this.add(rt);
    await rt.reconcile();
    try {
      await rt.startDns(this.dns.atRecordedAddress);
    } catch (e) {
      log.error({ err: e, dnsAddress: rec.dnsAddress }, 'cannot restart the DNS server on its address; the filter keeps enforcing');
    }
    log.info({ target: rec.target, dnsAddress: rec.dnsAddress }, 'attachment restored');
    return true;
  }

  /** Says Unsubscribed (REMOVED) for the targets restore found gone; called once the link is up. */
  flushVanished(client: ControlPlaneClient): void {
    for (const id of this.vanished.splice(0)) client.unsubscribe(id, UnsubscribeReason.REMOVED, 'target vanished while the daemon was down');
  }

  /**
   * Attach: the filter (mode DISABLED, empty maps), its runtime and DNS server, then
   * Subscribed -> SubscribedAck applied before this resolves (or block-all without waiting,
   * subscribe_ack_timeout 0). Anything failing rolls the whole attachment back.
   */
  async attach(input: AttachInput): Promise<{ id: string; dnsAddress: string }> {
    const t = resolveAttachTarget(input);
    this.refuseDuplicate(t);
    if (this.callsInProgress >= MAX_ATTACHES_IN_PROGRESS)
      throw new DaemonError('NETFENCE_ERR_ATTACH_BUSY', `${MAX_ATTACHES_IN_PROGRESS} Attach calls are in progress, the most the daemon takes at once; retry when some have returned`);
    this.callsInProgress++;
    try {
      return await this.finish(this.begin(t, { ...(input.metadata ?? {}) }));
    } finally {
      this.callsInProgress--;
    }
  }

  /**
   * An auto attach (auto-attach.ts): the filter is in the kernel in BLOCK_ALL when this returns
   * (made synchronously, nothing awaited before it); `finish` makes the rest (DNS server, whose
   * address the filter then allows, record, Subscribed; the ack is applied in the background, as
   * with subscribe_ack_timeout 0) and may wait in the driver's queue. A failed kernel attach
   * rejects `finish`, which rolls it back. Throws ALREADY_EXISTS when the target is held.
   */
  attachAuto(t: AttachTarget, metadata: Record<string, string>, autoRule: string): StartedAttach {
    this.refuseDuplicate(t);
    const b = this.begin(t, metadata, autoRule);
    return { id: b.record.id, target: t.target, finish: () => this.finish(b) };
  }

  private refuseDuplicate(t: AttachTarget): void {
    const key = identityKey(t);
    const dup = this.byKey.get(key);
    if (dup || this.begun.has(key))
      throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', `${t.kind === 'tc' ? 'interface' : 'cgroup'} ${t.target} is already attached${dup ? ` as ${dup.id}` : ''}`);
  }

  /** The kernel attach, synchronously (the record is written once the attach is complete). */
  private begin(t: AttachTarget, metadata: Record<string, string>, autoRule?: string): Begun {
    const record: AttachmentRecord = {
      version: 1,
      id: newAttachmentId(),
      numericId: this.nextNumericId++,
      kind: t.kind,
      target: t.target,
      identity: t.identity,
      tcDirection: t.direction,
      l3: t.l3,
      ...(t.xdp ? { xdp: true } : {}),
      metadata,
      ...(autoRule === undefined ? {} : { autoRule }),
      dnsAddress: '',
      attachedAt: new Date(this.d.now()).toISOString(),
      policy: emptyState(),
      pending: true,
    };
    // 1. Nothing is saved yet: a crash before the record is written leaves pins no record vouches
    // for, which the next start removes (as it would roll back a record saved as pending: the
    // pending save cost an fsync per Attach, 1.4 ms median and up to 1 s in a burst of 500, for
    // the same outcome). The record is written once the ack is applied, before Attach returns.
    // 2. The eBPF programs attached, with empty maps, in mode DISABLED (an Attach call: its ack
    // comes before it returns), or BLOCK_ALL (an auto attach: the target may carry traffic at once).
    let dp: Promise<AttachmentDatapath>;
    try {
      dp = this.d.datapath().attach(datapathParams(record), autoRule === undefined ? 'DISABLED' : 'BLOCK_ALL');
    } catch (e) {
      dp = Promise.reject(e);
    }
    dp.catch(() => undefined);
    const b: Begun = { key: identityKey(t), record, dp, gone: false };
    this.begun.set(b.key, b);
    return b;
  }

  /** Finishes a begun attach; a target that went meanwhile is rolled back, or removed (REMOVED) once made. */
  private async finish(b: Begun): Promise<{ id: string; dnsAddress: string }> {
    try {
      const out = await this.complete(b);
      const rt = this.runtimes.get(out.id);
      if (b.gone && rt) this.removeGone(rt);
      return out;
    } finally {
      this.begun.delete(b.key);
    }
  }

  private async complete(b: Begun): Promise<{ id: string; dnsAddress: string }> {
    const { id, metadata } = b.record;
    const log = this.d.logger.child({ attachment: id });
    let dp: AttachmentDatapath | undefined;
    let rt: AttachmentRuntime | undefined;
    try {
      dp = await b.dp;
      if (b.gone) throw new DaemonError('NETFENCE_ERR_TARGET_GONE', `${b.record.kind === 'tc' ? 'interface' : 'cgroup'} ${b.record.target} went away while it was being attached`);
      rt = new AttachmentRuntime(withHook(b.record, dp), dp, this.runtimeDeps);
      // 3. Its DNS server on a free port, so its address is known to the filter and the ack.
      await rt.startDns(this.dns.onFreePort);
      const r = rt.record;
      const subscribed: Subscribed = { id, target: r.target, type: attachmentTypeToPb(r.kind), mode: policyModeToPb(r.policy.mode), dnsMode: dnsModeToPb(r.policy.dns.mode), dnsAddress: r.dnsAddress, metadata };
      if (this.noWait || r.autoRule !== undefined) return await this.attachWithoutWaiting(rt, subscribed, log);
      // 4. Subscribed -> SubscribedAck, applied before Attach returns.
      const ready = rt;
      await this.d.link()!.subscribe(subscribed, { applyAck: (cmd) => applyWireCommand(ready, cmd) });
      rt.setRecord({ ...rt.record, pending: false });
      // Held (commands from the control plane reach it) from the ack on; Attach returns once the
      // record is written (StateStore.write: it survives the daemon dying; the disk flush follows
      // in the background), and a failure to write rolls it back like any other.
      this.add(rt);
      rt.persistWritten();
      log.info({ target: r.target, kind: r.kind, tcDirection: r.tcDirection, hook: r.hook, dnsAddress: r.dnsAddress, mode: rt.state.mode, metadata }, 'attached');
      return { id, dnsAddress: r.dnsAddress };
    } catch (e) {
      // An auto attach's failure is logged by its driver, rate limited (auto-attach.ts).
      throw await this.rollBack(id, rt, dp, DaemonError.from(e), log, b.record.autoRule !== undefined);
    }
  }

  /** Undoes a failed attach (DNS server, port, kernel objects, record); returns the error to throw. */
  private async rollBack(id: string, rt: AttachmentRuntime | undefined, dp: AttachmentDatapath | undefined, err: DaemonError, log: Logger, quiet = false): Promise<DaemonError> {
    if (!quiet) log.warn({ err }, 'attach failed: rolling back');
    if (rt) this.drop(rt);
    await rt?.dns?.close().catch(() => undefined);
    if (rt?.dns) this.dns.release(rt.record.dnsAddress);
    try {
      if (dp) dp.destroy();
      else this.d.datapath().removePins(id);
    } catch (de) {
      log.error({ err: de }, 'rollback could not remove the kernel objects');
    }
    this.d.store.remove(id);
    if (err.code === 'NETFENCE_ERR_ACK_TIMEOUT') this.sayUnsubscribed(id, UnsubscribeReason.ERROR, 'no SubscribedAck before the timeout');
    return err;
  }

  /**
   * subscribe_ack_timeout 0: the filter blocks all traffic (never passes it) and Attach returns;
   * Subscribed -> SubscribedAck goes on in the background and the ack applies as it would have
   * before Attach returned (an unspecified mode in it means disabled there, so here too).
   */
  private async attachWithoutWaiting(rt: AttachmentRuntime, subscribed: Subscribed, log: Logger): Promise<{ id: string; dnsAddress: string }> {
    await rt.applyCommand({ type: 'setMode', mode: 'block_all' });
    rt.setRecord({ ...rt.record, pending: false });
    this.add(rt);
    rt.persistWritten();
    void this.awaiting.start(rt.id, {
      subscribe: () => this.d.link()!.subscribe(subscribed, { applyAck: (cmd) => applyWireCommand(rt, cmd, 'disabled') }),
      alive: () => this.runtimes.get(rt.id) === rt,
      logger: log,
    });
    const r = rt.record;
    const line = { attachment: rt.id, target: r.target, kind: r.kind, dnsAddress: r.dnsAddress, mode: rt.state.mode, metadata: subscribed.metadata };
    // Auto attaches come in bursts the host makes (a link or a cgroup per workload): one line each, rate limited.
    if (r.autoRule !== undefined) this.d.workloadLog.write('auto', 'auto-attach', 'info', { ...line, autoRule: r.autoRule }, 'auto attached (block-all until its SubscribedAck is applied)');
    else log.info(line, 'attached without waiting for the SubscribedAck (block-all until it is applied)');
    return { id: rt.id, dnsAddress: r.dnsAddress };
  }

  async detach(id: string): Promise<void> {
    const rt = this.runtimes.get(id);
    if (!rt) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `no attachment ${quoteInput(id)}`);
    await this.teardown(rt, UnsubscribeReason.DETACHED, '');
    this.d.logger.info({ attachment: id }, 'detached');
  }

  /** Removes the attachment whole (DNS server, kernel objects, pins, record) and says Unsubscribed. */
  async teardown(rt: AttachmentRuntime, reason: UnsubscribeReason, why: string): Promise<void> {
    this.drop(rt);
    try {
      await rt.destroy();
    } finally {
      // No longer held whatever destroy() met (its error goes to the caller): the control plane hears it.
      this.dns.release(rt.record.dnsAddress);
      this.sayUnsubscribed(rt.id, reason, why);
    }
  }

  /** Queues Unsubscribed when the link is up; the client refuses only once closed (the daemon is stopping). */
  private sayUnsubscribed(id: string, reason: UnsubscribeReason, why: string): void {
    try {
      this.d.link()?.unsubscribe(id, reason, why);
    } catch (e) {
      this.d.logger.warn({ err: e, attachment: id }, 'could not queue Unsubscribed');
    }
  }

  /** A ControlCommand from the stream, applied to its attachment (see applyWireCommand). */
  async command(cmd: ControlCommand): Promise<void> {
    const rt = this.runtimes.get(cmd.id);
    if (cmd.command.case === 'syncAck') return;
    if (!rt) {
      // Spec: a command for an unknown id is not an error for the stream.
      this.d.logger.debug({ attachment: cmd.id, command: cmd.command.case }, 'command for an unknown attachment ignored');
      if (cmd.nonce) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `no attachment ${cmd.id}`);
      return;
    }
    const t0 = performance.now();
    try {
      await applyWireCommand(rt, cmd);
      this.d.commandApplied?.(cmd.command.case ?? 'unknown', (performance.now() - t0) / 1000);
      this.counters.commandsApplied++;
      this.d.logger.debug({ attachment: cmd.id, command: cmd.command.case }, 'command applied');
    } catch (e) {
      this.counters.commandsRejected++;
      const err = DaemonError.from(e);
      this.d.logger.warn({ attachment: cmd.id, command: cmd.command.case, err }, 'command rejected');
      throw err;
    }
  }

  /** A drop the kernel reported: logged (rate limited per attachment) and streamed to the control plane. */
  dropEvent(ev: DatapathEvent): void {
    this.counters.denyEvents++;
    const rt = this.byNumericId.get(ev.numericId);
    const domain = rt ? rt.learnedFrom(ev.destination) : undefined;
    const attachment = rt?.id ?? `#${ev.numericId}`;
    // A workload hammering a blocked address must not flood the log: rate limited per
    // attachment (all events are still counted, and streamed to the control plane).
    this.d.workloadLog.write('drop', attachment, 'info', { event: 'drop', attachment, dst: ev.destination, port: ev.port, proto: ev.protocol, reason: ev.reason, dryRun: ev.dryRun, hook: ev.hook, learnedFrom: domain }, ev.dryRun ? 'would drop (dry-run)' : 'dropped');
    this.d.events?.publish({ timeMs: this.d.now(), attachmentId: attachment, kind: 'drop', drop: { destination: ev.destination, port: ev.port, protocol: ev.protocol, reason: ev.reason, learnedFrom: domain, dryRun: ev.dryRun, hook: ev.hook } });
    this.d.link()?.sendDenyEvents([
      { attachmentId: attachment, time: timestampFromMs(this.d.now()), destination: ev.destination, port: ev.port, protocol: ev.protocol, reason: ev.reason, domain: domain ?? '', dryRun: ev.dryRun, count: 1n },
    ]);
  }

  /** The kernel deleted this interface (RTM_DELLINK): its attachment goes (REMOVED), an attach in progress is undone. */
  interfaceGone(ifindex: number): void {
    this.targetGone(`tc:${ifindex}`);
  }

  /** This cgroup directory was removed (inotify): its attachment goes, if the cgroup it attached is gone. */
  cgroupGone(path: string): void {
    for (const rt of this.runtimes.values()) if (rt.record.kind === 'cgroup' && rt.record.target === path && !targetAlive(rt.record, new Map())) this.targetGone(identityKey(rt.record));
    for (const b of this.begun.values()) if (b.record.kind === 'cgroup' && b.record.target === path && !targetAlive(b.record, new Map())) b.gone = true;
  }

  private targetGone(key: string): void {
    const rt = this.byKey.get(key);
    if (rt) this.removeGone(rt);
    const b = this.begun.get(key);
    if (b) b.gone = true;
  }

  /**
   * Every attachment judged against the kernel now: after link events were lost (the kernel's
   * resync list), or by the fallback timer when events cannot be had. `links` (ifindex -> name)
   * judges interfaces; without it only cgroups are judged.
   */
  checkTargets(links: Map<number, string> | undefined): void {
    for (const rt of [...this.runtimes.values()]) if ((links || rt.record.kind === 'cgroup') && !targetAlive(rt.record, links ?? new Map())) this.removeGone(rt);
    for (const b of this.begun.values()) if ((links || b.record.kind === 'cgroup') && !targetAlive(b.record, links ?? new Map())) b.gone = true;
  }

  private removeGone(rt: AttachmentRuntime): void {
    const r = rt.record;
    const line = { attachment: r.id, target: r.target, autoRule: r.autoRule };
    if (r.autoRule !== undefined) this.d.workloadLog.write('auto', 'auto-attach', 'info', line, 'target removed: auto attachment unsubscribed');
    else this.d.logger.info(line, 'target removed: unsubscribing');
    this.teardown(rt, UnsubscribeReason.REMOVED, `${r.kind === 'tc' ? 'interface' : 'cgroup'} ${r.target} was removed`).catch((e: unknown) =>
      this.d.logger.error({ err: e, attachment: r.id }, 'teardown failed'),
    );
  }

  /** detach_on_exit: removes every attachment, saying Unsubscribed (DETACHED) for each. */
  async detachAll(): Promise<void> {
    for (const rt of [...this.runtimes.values()]) await this.teardown(rt, UnsubscribeReason.DETACHED, 'daemon exiting with detach_on_exit').catch(() => undefined);
  }

  /** Stops every runtime (timers, DNS servers, fds); filters stay pinned and enforcing. */
  async shutdown(): Promise<void> {
    for (const rt of this.runtimes.values()) await rt.shutdown().catch((e: unknown) => this.d.logger.warn({ err: e, attachment: rt.id }, 'shutdown'));
    this.runtimes.clear();
    this.byNumericId.clear();
    this.byKey.clear();
  }
}
