import { hostname as osHostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { createControlPlaneClient, type ControlPlaneClient, type ControlPlaneConnectionState } from '@netfence/controlplane-client';
import { emptyState, type PolicyCommand } from '@netfence/policy-engine';
import { AttachmentInfoSchema, ConnectionState, UnsubscribeReason, type AttachmentInfo, type ControlCommand, type DaemonStatus } from '@netfence/proto';
import { DaemonStatusSchema } from '@netfence/proto';
import type { Logger } from 'pino';
import { AttachmentRuntime, joinHostPort, newAttachmentId, splitHostPort } from './attachments';
import type { DaemonConfig } from './config';
import { attachmentTypeToPb, dnsModeToPb, policyModeToPb } from '@netfence/policy-wire';
import { readCommand } from './wire-command';
import { DaemonError } from './daemon-error';
import type { AttachParams, AttachmentDatapath, Datapath, DatapathEvent } from './datapath';
import type { DnsServer, StartDnsServer } from './dns-servers';
import { createPortPool } from './ports';
import { createStateStore, type AttachmentRecord, type TcDirection } from './state-store';
import { cgroupAlive, defaultTcDirection, interfaceAlive, interfaceSnapshot, interfaceSnapshotAsync, resolveCgroup, resolveInterface } from './targets';
import { createMetricsServer, type MetricsServer } from './metrics';
import { startEmbeddedControlPlane, type ControlPlaneMode, type EmbeddedControlPlane } from './embedded-controlplane';
import { AwaitingAcks, BACKGROUND_ACK_RESEND_MS } from './background-subscribe';
import { createBpfDatapath } from './bpf-datapath';
import { startFilterDnsServer } from './dns-filter-server';
import { VERSION } from './version';
import { startApiServer, type AttachInput, type DaemonApi, type ListPage } from './api-server';
import { quoteInput } from './request-limits';
import { lockStateDir, type StateLock } from './state-lock';
import { checkCapabilities } from './capabilities';
import { createWorkloadLog } from './workload-log';

export type { AttachInput, ListPage };

export interface Daemon extends DaemonApi {
  /** Opens state, restores attachments from pins, starts the API socket and the control plane link. */
  start(): Promise<void>;
  /** Graceful stop in reverse order of start. Filters stay pinned unless detach_on_exit. Idempotent. */
  close(): Promise<void>;
  /** The control plane URL in use (the embedded one's loopback URL when no url is configured). */
  readonly controlPlaneUrl: string;
}

export interface DaemonOptions {
  readonly logger: Logger;
  /** Overrides for embedding and tests. */
  readonly datapath?: Datapath;
  readonly startDnsServer?: StartDnsServer;
  readonly now?: () => number;
}

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

function encodeToken(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString('base64url');
}

function decodeToken(token: string): string {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'string') return v.after;
  } catch {
    /* fall through */
  }
  throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `page_token ${quoteInput(token)} is not a token this daemon issued`);
}

function resolvConfUpstreams(): string[] {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8')
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
      .filter((x): x is string => !!x)
      .map((ip) => (ip.includes(':') ? `[${ip}]:53` : `${ip}:53`));
  } catch {
    return [];
  }
}

export function createDaemon(config: DaemonConfig, opts: DaemonOptions): Daemon {
  const logger = opts.logger;
  const now = opts.now ?? Date.now;
  const store = createStateStore(config.data_dir, config.daemon_id);
  const hostname = config.hostname ?? osHostname();
  const ports = createPortPool(config.dns.port_min, config.dns.port_max);
  const upstreams = config.dns.upstream.length ? [...config.dns.upstream] : resolvConfUpstreams();
  const runtimes = new Map<string, AttachmentRuntime>();
  /** Drop events name their attachment by the small number the kernel knows it by. */
  const byNumericId = new Map<number, AttachmentRuntime>();
  const addRuntime = (rt: AttachmentRuntime) => {
    runtimes.set(rt.id, rt);
    byNumericId.set(rt.record.numericId, rt);
  };
  const dropRuntime = (rt: AttachmentRuntime) => {
    runtimes.delete(rt.id);
    byNumericId.delete(rt.record.numericId);
  };
  /** Attach calls in progress, by target identity, so a duplicate is refused before it races. */
  const pendingTargets = new Set<string>();
  /** Attached with subscribe_ack_timeout 0: their SubscribedAck goes on in the background. */
  const awaiting = new AwaitingAcks();
  const noWait = config.control_plane.subscribe_ack_timeout === 0;
  /** Attach calls in progress, so close() lets them finish (or roll back) first. */
  const inflight = new Set<Promise<unknown>>();
  /** Every log line a workload can trigger goes through this per-attachment rate limit. */
  const workloadLog = createWorkloadLog(logger);
  const startDns = opts.startDnsServer ?? ((p) => startFilterDnsServer(p, { upstreams, minTtlSec: config.dns.min_ttl / 1000, maxTtlSec: config.dns.max_ttl / 1000, blockedRcode: config.dns.blocked_rcode, queryTimeoutMs: config.dns.query_timeout, logger: logger.child({ component: 'dns' }), workloadLog }));
  let datapath: Datapath | undefined = opts.datapath;
  let client: ControlPlaneClient | undefined;
  let embedded: EmbeddedControlPlane | undefined;
  let api: { close(): Promise<void> } | undefined;
  let metrics: MetricsServer | undefined;
  let watchTimer: NodeJS.Timeout | undefined;
  let daemonId = '';
  let cpUrl = config.control_plane.url;
  let cpMode: ControlPlaneMode = 'remote';
  let cpState: ControlPlaneConnectionState = 'disconnected';
  let nextNumericId = 1;
  let closing = false;
  let started = false;
  let stateLock: StateLock | undefined;
  const counters = { denyEvents: 0, commandsApplied: 0, commandsRejected: 0 };

  const deps = {
    store,
    logger: logger.child({ component: 'attachment' }),
    minTtlSec: config.dns.min_ttl / 1000,
    maxTtlSec: config.dns.max_ttl / 1000,
    graceMs: config.dns.grace,
    maxAddressesPerName: config.dns.max_addresses_per_name,
    now,
  };

  /** What the datapath needs of a record (its kind, identity and TC direction). */
  function datapathParams(r: AttachmentRecord): AttachParams {
    return r.kind === 'tc'
      ? { kind: 'tc', id: r.id, numericId: r.numericId, ifindex: r.identity.ifindex!, direction: r.tcDirection ?? 'ingress', l3: !!r.l3 }
      : { kind: 'cgroup', id: r.id, numericId: r.numericId, cgroupPath: r.target };
  }

  function identityKey(r: { kind: string; identity: { ifindex?: number; cgroupId?: string } }): string {
    return r.kind === 'tc' ? `tc:${r.identity.ifindex}` : `cg:${r.identity.cgroupId}`;
  }

  function toAttachmentPb(r: AttachmentRecord) {
    return {
      id: r.id,
      target: r.target,
      type: attachmentTypeToPb(r.kind),
      mode: policyModeToPb(r.policy.mode),
      dnsMode: dnsModeToPb(r.policy.dns.mode),
      metadata: { ...r.metadata },
      dryRun: r.policy.dryRun,
    };
  }

  function statsOf(rt: AttachmentRuntime) {
    let allowed = 0n;
    let blocked = 0n;
    try {
      const c = rt.datapath.counters();
      allowed = c.allowed;
      blocked = c.blocked;
    } catch (e) {
      logger.warn({ err: e, attachment: rt.id }, 'cannot read counters');
    }
    const d = rt.dns?.counters() ?? { allowed: 0n, blocked: 0n };
    return { packetsAllowed: allowed, packetsBlocked: blocked, dnsQueriesAllowed: d.allowed, dnsQueriesBlocked: d.blocked };
  }

  function dnsRateLimitedOf(rt: AttachmentRuntime): bigint {
    try {
      return rt.datapath.counters().dnsRateLimited ?? 0n;
    } catch {
      return 0n;
    }
  }

  function eventsLostOf(rt: AttachmentRuntime): bigint {
    try {
      return rt.datapath.counters().eventsLost ?? 0n;
    } catch {
      return 0n;
    }
  }

  function onDatapathEvent(ev: DatapathEvent): void {
    counters.denyEvents++;
    const rt = byNumericId.get(ev.numericId);
    const domain = rt ? rt.learnedFrom(ev.destination) : undefined;
    const attachment = rt?.id ?? `#${ev.numericId}`;
    // A workload hammering a blocked address must not flood the log: rate limited per
    // attachment (all events are still counted, and streamed to the control plane).
    workloadLog.write('drop', attachment, 'info', { event: 'drop', attachment, dst: ev.destination, port: ev.port, proto: ev.protocol, reason: ev.reason, dryRun: ev.dryRun, hook: ev.hook, learnedFrom: domain }, ev.dryRun ? 'would drop (dry-run)' : 'dropped');
    client?.sendDenyEvents([
      { attachmentId: attachment, time: timestampFromMs(now()), destination: ev.destination, port: ev.port, protocol: ev.protocol, reason: ev.reason, domain: domain ?? '', dryRun: ev.dryRun, count: 1n },
    ]);
  }

  async function startDnsFor(record: AttachmentRecord, rtRef: { rt?: AttachmentRuntime }): Promise<DnsServer> {
    const [host, port] = splitHostPort(record.dnsAddress);
    return startDns({
      attachmentId: record.id,
      host,
      port,
      policy: record.policy.dns,
      onResolved: async (answer) => {
        if (!rtRef.rt) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `attachment ${record.id} is not ready`);
        await rtRef.rt.learn(answer);
      },
      decide: async (name, qtype) => {
        if (!client) throw new DaemonError('NETFENCE_ERR_CONTROL_PLANE_UNAVAILABLE', 'no control plane to decide in proxy mode');
        const r = await client.queryDns({ id: record.id, domain: name, queryType: qtype }, { deadlineMs: config.control_plane.query_dns_timeout });
        return { allow: r.allow, ips: r.ips, addToFilter: r.addToFilter, ttlSec: r.ttlSeconds || undefined };
      },
    });
  }

  /** Binds the attachment's DNS server on the first free port of the pool. */
  async function startDnsOnFreePort(record: AttachmentRecord, rtRef: { rt?: AttachmentRuntime }): Promise<{ server: DnsServer; record: AttachmentRecord }> {
    let lastErr: unknown;
    for (const port of ports.candidates()) {
      const r = { ...record, dnsAddress: joinHostPort(config.dns.listen_addr, port) };
      try {
        const server = await startDnsFor(r, rtRef);
        ports.reserve(port);
        return { server, record: r };
      } catch (e) {
        lastErr = e;
        // dns-filter's own code for a taken address; a plain errno from a custom startDnsServer
        const code = (e as { code?: string }).code;
        if (code !== 'NETFENCE_ERR_DNS_ADDRESS_IN_USE' && code !== 'EADDRINUSE') throw e;
      }
    }
    throw new DaemonError('NETFENCE_ERR_DNS_PORTS_EXHAUSTED', `no free DNS port in ${config.dns.port_min}-${config.dns.port_max} on ${config.dns.listen_addr}`, { cause: lastErr });
  }

  async function handleCommand(cmd: ControlCommand): Promise<void> {
    const rt = runtimes.get(cmd.id);
    if (cmd.command.case === 'syncAck') return;
    if (!rt) {
      // Spec: a command for an unknown id is not an error for the stream.
      logger.debug({ attachment: cmd.id, command: cmd.command.case }, 'command for an unknown attachment ignored');
      if (cmd.nonce) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `no attachment ${cmd.id}`);
      return;
    }
    let pc: PolicyCommand | undefined;
    try {
      pc = readCommand(cmd, rt.state);
      if (pc) await rt.applyCommand(pc);
      counters.commandsApplied++;
      logger.debug({ attachment: cmd.id, command: cmd.command.case }, 'command applied');
    } catch (e) {
      counters.commandsRejected++;
      const err = DaemonError.from(e);
      logger.warn({ attachment: cmd.id, command: cmd.command.case, err }, 'command rejected');
      throw err;
    }
  }

  function connectControlPlane(url: string): ControlPlaneClient {
    const tls = config.control_plane.tls;
    const token = config.control_plane.token ?? (config.control_plane.token_file ? () => readFileSync(config.control_plane.token_file!, 'utf8').trim() : undefined);
    return createControlPlaneClient({
      url,
      daemonId,
      hostname,
      metadata: { ...config.metadata },
      syncState: () => ({ attachments: [...runtimes.values()].map((r) => toAttachmentPb(r.record)) }),
      onCommand: handleCommand,
      heartbeatIntervalMs: config.control_plane.heartbeat_interval,
      heartbeatStats: () => [...runtimes.values()].map((r) => ({ id: r.id, ...statsOf(r) })),
      subscribeAckTimeoutMs: noWait ? BACKGROUND_ACK_RESEND_MS : config.control_plane.subscribe_ack_timeout,
      dnsQueryDeadlineMs: config.control_plane.query_dns_timeout,
      tls: url.startsWith('https:') ? { caFile: tls.ca_file, certFile: tls.cert_file, keyFile: tls.key_file } : undefined,
      bearerToken: token,
      logger: logger.child({ component: 'controlplane-client' }),
      onStateChange: (s, info) => {
        cpState = s;
        if (s === 'disconnected' && !closing) logger.warn({ retryInMs: info.retryInMs, err: info.error }, 'control plane disconnected');
        else logger.info({ state: s }, 'control plane link');
      },
    });
  }

  async function restore(): Promise<void> {
    const { records, problems } = store.loadAll();
    const removed: string[] = [];
    // An attachment whose record cannot be read keeps its pinned filter (fail closed): it is left
    // enforcing, unmanaged, never taken for an orphan and removed.
    const unmanaged = new Set<string>();
    for (const p of problems) {
      logger.error({ file: p.file, attachment: p.id, problem: p.error }, 'unreadable attachment record left in place; its pinned filter keeps enforcing, unmanaged');
      unmanaged.add(p.id);
    }
    const links = interfaceSnapshot();
    for (const rec of records) {
      nextNumericId = Math.max(nextNumericId, rec.numericId + 1);
      const log = logger.child({ attachment: rec.id });
      const alive = rec.kind === 'tc' ? interfaceAlive(rec.identity.ifindex ?? -1, links) : cgroupAlive(rec.target, rec.identity.cgroupId ?? '');
      if (rec.pending || !alive) {
        log.info({ pending: !!rec.pending, alive }, rec.pending ? 'rolling back an attach that never completed' : 'target vanished while the daemon was down');
        try {
          datapath!.removePins(rec.id);
        } catch (e) {
          log.warn({ err: e }, 'could not remove pins');
        }
        store.remove(rec.id);
        if (!rec.pending) removed.push(rec.id);
        continue;
      }
      let dp: AttachmentDatapath;
      try {
        dp = datapath!.reopen(datapathParams(rec));
      } catch (e) {
        log.warn({ err: e }, 'pins missing or unusable: attaching again from the saved state');
        try {
          dp = await datapath!.reattach(datapathParams(rec));
        } catch (e2) {
          // Fail closed: whatever is still pinned keeps enforcing; the record stays for the next start.
          log.error({ err: e2 }, 'cannot attach again; the attachment is not managed until the next start, its pinned filter is left in place');
          unmanaged.add(rec.id);
          continue;
        }
      }
      const ref: { rt?: AttachmentRuntime } = {};
      const rt = new AttachmentRuntime(rec, dp, undefined, deps);
      ref.rt = rt;
      addRuntime(rt);
      await rt.reconcile();
      const [, port] = splitHostPort(rec.dnsAddress);
      try {
        rt.dns = await startDnsFor(rt.record, ref);
        ports.reserve(port);
      } catch (e) {
        log.error({ err: e, dnsAddress: rec.dnsAddress }, 'cannot restart the DNS server on its address; the filter keeps enforcing');
      }
      log.info({ target: rec.target, dnsAddress: rec.dnsAddress }, 'attachment restored');
    }
    // Pins without a record: an attach that crashed before saving; nothing vouches for them.
    for (const id of datapath!.pinnedIds()) {
      if (!runtimes.has(id) && !unmanaged.has(id) && !records.some((r) => r.id === id)) {
        logger.info({ attachment: id }, 'removing orphaned pins');
        datapath!.removePins(id);
      }
    }
    pendingUnsubscribes.push(...removed);
  }

  const pendingUnsubscribes: string[] = [];

  async function teardown(rt: AttachmentRuntime, reason: UnsubscribeReason, why: string): Promise<void> {
    dropRuntime(rt);
    const [, port] = splitHostPort(rt.record.dnsAddress);
    await rt.destroy();
    ports.release(port);
    try {
      client?.unsubscribe(rt.id, reason, why);
    } catch (e) {
      logger.warn({ err: e, attachment: rt.id }, 'could not queue Unsubscribed');
    }
  }

  /**
   * Unsubscribes (REMOVED) attachments whose interface or cgroup is gone, by identity. Runs
   * every target_watch_interval without blocking the event loop (commands and DNS answers keep
   * flowing): the interface list is only asked for when an interface is attached, and only
   * attachments that existed before it was asked for are judged by it.
   */
  let watching = false;
  async function watchTargets(): Promise<void> {
    if (runtimes.size === 0 || watching) return;
    watching = true;
    try {
      const before = [...runtimes.values()];
      let links = new Map<number, string>();
      if (before.some((rt) => rt.record.kind === 'tc')) {
        try {
          links = await interfaceSnapshotAsync();
        } catch (e) {
          logger.warn({ err: e }, 'cannot list interfaces; target watch skipped');
          return;
        }
      }
      for (const rt of before) if (runtimes.get(rt.id) === rt) judgeTarget(rt, links);
    } finally {
      watching = false;
    }
  }

  function judgeTarget(rt: AttachmentRuntime, links: Map<number, string>): void {
    const r = rt.record;
    const alive = r.kind === 'tc' ? interfaceAlive(r.identity.ifindex ?? -1, links) : cgroupAlive(r.target, r.identity.cgroupId ?? '');
    if (alive) return;
    logger.info({ attachment: r.id, target: r.target }, 'target removed: unsubscribing');
    teardown(rt, UnsubscribeReason.REMOVED, `${r.kind === 'tc' ? 'interface' : 'cgroup'} ${r.target} was removed`).catch((e: unknown) =>
      logger.error({ err: e, attachment: r.id }, 'teardown failed'),
    );
  }

  async function attachNow(input: AttachInput): Promise<{ id: string; dnsAddress: string }> {
    const metadata = { ...(input.metadata ?? {}) };
    let kind: 'tc' | 'cgroup';
    let target: string;
    let identity: { ifindex?: number; cgroupId?: string };
    let direction: TcDirection | undefined;
    let l3 = false;
    if (input.interfaceName && !input.cgroupPath) {
      const t = resolveInterface(input.interfaceName);
      kind = 'tc';
      target = t.ifname;
      identity = { ifindex: t.ifindex };
      direction = input.tcDirection ?? defaultTcDirection(t);
      l3 = t.l3;
    } else if (input.cgroupPath && !input.interfaceName) {
      if (input.tcDirection) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', 'tc_direction applies to interfaces, not cgroups');
      const t = resolveCgroup(input.cgroupPath);
      kind = 'cgroup';
      target = t.path;
      identity = { cgroupId: t.cgroupId };
    } else {
      throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', 'give exactly one of interface_name or cgroup_path');
    }
    const key = identityKey({ kind, identity });
    const dup = [...runtimes.values()].find((r) => identityKey(r.record) === key);
    if (dup || pendingTargets.has(key))
      throw new DaemonError('NETFENCE_ERR_ALREADY_EXISTS', `${kind === 'tc' ? 'interface' : 'cgroup'} ${target} is already attached${dup ? ` as ${dup.id}` : ''}`);
    pendingTargets.add(key);
    const id = newAttachmentId();
    const log = logger.child({ attachment: id });
    let record: AttachmentRecord = {
      version: 1,
      id,
      numericId: nextNumericId++,
      kind,
      target,
      identity,
      tcDirection: direction,
      l3,
      metadata,
      dnsAddress: '',
      attachedAt: new Date(now()).toISOString(),
      policy: emptyState(),
      pending: true,
    };
    const ref: { rt?: AttachmentRuntime } = {};
    let dp: AttachmentDatapath | undefined;
    let dns: DnsServer | undefined;
    try {
      // 1. DNS server on a free port, so its address is known to the filter and the ack.
      const started = await startDnsOnFreePort(record, ref);
      dns = started.server;
      record = started.record;
      // 2. Saved as pending first: a crash from here on is rolled back at the next start.
      store.save(record);
      // 3. eBPF programs attached in mode DISABLED with empty maps.
      dp = await datapath!.attach(datapathParams(record));
      const rt = new AttachmentRuntime(record, dp, dns, deps);
      ref.rt = rt;
      const subscribed = { id, target, type: attachmentTypeToPb(kind), mode: policyModeToPb(record.policy.mode), dnsMode: dnsModeToPb(record.policy.dns.mode), dnsAddress: record.dnsAddress, metadata };
      if (noWait) return await attachWithoutWaiting(rt, subscribed, log);
      // 4. Subscribed -> SubscribedAck, applied before Attach returns.
      await client!.subscribe(subscribed, {
        applyAck: async (cmd) => {
          const pc = readCommand(cmd, rt.state);
          if (pc) await rt.applyCommand(pc);
        },
      });
      rt.setRecord({ ...rt.record, pending: false });
      rt.persistNow();
      addRuntime(rt);
      log.info({ target, kind, tcDirection: direction, dnsAddress: record.dnsAddress, mode: rt.state.mode }, 'attached');
      return { id, dnsAddress: record.dnsAddress };
    } catch (e) {
      const err = DaemonError.from(e);
      log.warn({ err }, 'attach failed: rolling back');
      await dns?.close().catch(() => undefined);
      if (record.dnsAddress) ports.release(splitHostPort(record.dnsAddress)[1]);
      try {
        if (dp) dp.destroy();
        else datapath!.removePins(id);
      } catch (de) {
        log.error({ err: de }, 'rollback could not remove the kernel objects');
      }
      store.remove(id);
      if (err.code === 'NETFENCE_ERR_ACK_TIMEOUT') {
        try {
          client?.unsubscribe(id, UnsubscribeReason.ERROR, 'no SubscribedAck before the timeout');
        } catch {
          /* closing */
        }
      }
      throw err;
    } finally {
      pendingTargets.delete(key);
    }
  }

  /**
   * subscribe_ack_timeout 0: the filter blocks all traffic (never passes it) and Attach returns;
   * Subscribed -> SubscribedAck goes on in the background and the ack applies as it would have
   * before Attach returned (an unspecified mode in it means disabled there, so here too).
   */
  async function attachWithoutWaiting(rt: AttachmentRuntime, subscribed: Parameters<ControlPlaneClient['subscribe']>[0], log: Logger): Promise<{ id: string; dnsAddress: string }> {
    await rt.applyCommand({ type: 'setMode', mode: 'block_all' });
    rt.setRecord({ ...rt.record, pending: false });
    rt.persistNow();
    addRuntime(rt);
    const alive = () => runtimes.get(rt.id) === rt;
    void awaiting.start(rt.id, {
      subscribe: () =>
        client!.subscribe(subscribed, {
          applyAck: async (cmd) => {
            const pc = readCommand(cmd, { ...rt.state, mode: 'disabled' });
            if (pc) await rt.applyCommand(pc);
          },
        }),
      alive,
      goneAfterAck: () => {
        try {
          client?.unsubscribe(rt.id, UnsubscribeReason.DETACHED, 'detached before its SubscribedAck arrived');
        } catch {
          /* closing */
        }
      },
      logger: log,
    });
    log.info({ target: rt.record.target, kind: rt.record.kind, dnsAddress: rt.record.dnsAddress, mode: rt.state.mode }, 'attached without waiting for the SubscribedAck (block-all until it is applied)');
    return { id: rt.id, dnsAddress: rt.record.dnsAddress };
  }

  const daemon: Daemon = {
    get controlPlaneUrl() {
      return cpUrl;
    },

    async start() {
      if (started) return;
      started = true;
      // Before anything else: the privileges the kernel will ask for (read only), then this
      // daemon's exclusive hold on data_dir; without both nothing is opened, bound or changed.
      if (!opts.datapath) checkCapabilities();
      stateLock = lockStateDir(config.data_dir);
      daemonId = store.daemonId();
      datapath ??= createBpfDatapath({
        root: config.bpffs_root,
        mapSizes: { allow: config.maps.allow_entries, deny: config.maps.deny_entries, ringbufBytes: config.maps.ringbuf_bytes },
        dnsRateLimit: { rateQps: config.dns.rate_limit_qps, burst: config.dns.rate_limit_burst },
        onEvent: onDatapathEvent,
        logger: logger.child({ component: 'datapath' }),
      });
      await restore();
      datapath.warm(['tc', 'cgroup']);
      if (!cpUrl) {
        embedded = await startEmbeddedControlPlane({ policyFile: config.policy_file, logger: logger.child({ component: 'embedded-controlplane' }) });
        cpUrl = embedded.url;
        cpMode = embedded.emptyPolicy ? 'embedded-empty' : 'embedded';
      }
      client = connectControlPlane(cpUrl);
      for (const id of pendingUnsubscribes.splice(0)) client.unsubscribe(id, UnsubscribeReason.REMOVED, 'target vanished while the daemon was down');
      api = await startApiServer(config.socket, config.socket_mode, daemon, logger.child({ component: 'api' }));
      if (config.metrics.listen) metrics = await createMetricsServer(config.metrics.listen, () => metricsText());
      watchTimer = setInterval(() => void watchTargets(), config.target_watch_interval);
      watchTimer.unref();
      logger.info(
        { daemonId, socket: config.socket, controlPlane: cpUrl, controlPlaneMode: cpMode, attachments: runtimes.size, version: VERSION },
        cpMode === 'embedded-empty' ? 'netfenced started with no control plane URL and no policy file: embedded control plane with an empty policy, every attachment is block-all' : 'netfenced started',
      );
    },

    attach(input) {
      if (closing || !started) return Promise.reject(new DaemonError('NETFENCE_ERR_SHUTTING_DOWN', 'the daemon is not accepting attachments'));
      const p = attachNow(input);
      inflight.add(p);
      const done = () => inflight.delete(p);
      p.then(done, done);
      return p;
    },

    async detach(id) {
      const rt = runtimes.get(id);
      if (!rt) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `no attachment ${quoteInput(id)}`);
      await teardown(rt, UnsubscribeReason.DETACHED, '');
      logger.info({ attachment: id }, 'detached');
    },

    list(pageSize, pageToken) {
      if (pageSize < 0) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `page_size ${pageSize} must not be negative`);
      const size = Math.min(pageSize || DEFAULT_PAGE, MAX_PAGE);
      const after = pageToken ? decodeToken(pageToken) : '';
      const all = [...runtimes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const rest = all.filter((r) => r.id > after);
      const page = rest.slice(0, size);
      const attachments = page.map((rt) => {
        const r = rt.record;
        return create(AttachmentInfoSchema, {
          ...toAttachmentPb(r),
          dnsAddress: r.dnsAddress,
          ...statsOf(rt),
          attachedAt: timestampFromMs(Date.parse(r.attachedAt)),
          tcDirection: r.tcDirection ?? '',
          awaitingAck: awaiting.has(rt.id),
        });
      });
      return { attachments, nextPageToken: rest.length > size ? encodeToken(page[page.length - 1]!.id) : '', totalCount: all.length };
    },

    status() {
      return create(DaemonStatusSchema, {
        version: VERSION,
        daemonId,
        hostname,
        controlPlaneState: cpState === 'connected' ? ConnectionState.CONNECTED : cpState === 'connecting' ? ConnectionState.CONNECTING : ConnectionState.DISCONNECTED,
        controlPlaneAddress: cpUrl,
        attachmentCount: runtimes.size,
        controlPlaneMode: cpMode,
        attachmentsAwaitingAck: [...runtimes.keys()].filter((id) => awaiting.has(id)).length,
      });
    },

    async close() {
      if (closing) return;
      closing = true;
      if (watchTimer) clearInterval(watchTimer);
      await metrics?.close().catch(() => undefined);
      await api?.close().catch((e: unknown) => logger.warn({ err: e }, 'api close'));
      await Promise.allSettled([...inflight]); // an Attach in progress completes or rolls back
      if (config.detach_on_exit) {
        for (const rt of [...runtimes.values()]) await teardown(rt, UnsubscribeReason.DETACHED, 'daemon exiting with detach_on_exit').catch(() => undefined);
      }
      await client?.close().catch(() => undefined);
      await embedded?.close().catch(() => undefined);
      for (const rt of runtimes.values()) await rt.shutdown().catch((e: unknown) => logger.warn({ err: e, attachment: rt.id }, 'shutdown'));
      runtimes.clear();
      byNumericId.clear();
      await datapath?.close();
      workloadLog.close();
      stateLock?.release();
      logger.info({ detached: config.detach_on_exit }, 'netfenced stopped');
    },
  };

  function metricsText(): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, rows: [Record<string, string>, number | bigint][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of rows) {
        const l = Object.entries(labels)
          .map(([k, x]) => `${k}="${x.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
          .join(',');
        lines.push(`${name}${l ? `{${l}}` : ''} ${v.toString()}`);
      }
    };
    const per = [...runtimes.values()].map((rt) => [rt.id, statsOf(rt)] as const);
    metric('netfence_attachments', 'gauge', 'Attachments held by this daemon.', [[{}, runtimes.size]]);
    metric('netfence_control_plane_connected', 'gauge', '1 when the control plane stream is up.', [[{}, cpState === 'connected' ? 1 : 0]]);
    metric('netfence_packets_allowed_total', 'counter', 'Packets or connections allowed.', per.map(([id, s]) => [{ attachment: id }, s.packetsAllowed]));
    metric('netfence_packets_blocked_total', 'counter', 'Packets or connections blocked.', per.map(([id, s]) => [{ attachment: id }, s.packetsBlocked]));
    metric('netfence_dns_queries_allowed_total', 'counter', 'DNS queries answered.', per.map(([id, s]) => [{ attachment: id }, s.dnsQueriesAllowed]));
    metric('netfence_dns_queries_blocked_total', 'counter', 'DNS queries refused.', per.map(([id, s]) => [{ attachment: id }, s.dnsQueriesBlocked]));
    metric('netfence_dns_learned_addresses', 'gauge', 'Addresses learned from DNS answers (address, name pairs).', [...runtimes.values()].map((rt) => [{ attachment: rt.id }, rt.learnedCount]));
    metric('netfence_dns_learned_evicted_total', 'counter', 'Learned addresses pushed out by dns.max_addresses_per_name (oldest unused first).', [...runtimes.values()].map((rt) => [{ attachment: rt.id }, rt.learnedEvicted]));
    metric('netfence_dns_learned_over_cap_total', 'counter', 'Answer addresses not learned: the answer alone had more than dns.max_addresses_per_name.', [...runtimes.values()].map((rt) => [{ attachment: rt.id }, rt.learnedOverCap]));
    metric('netfence_deny_events_total', 'counter', 'Drop events read from the kernel.', [[{}, counters.denyEvents]]);
    metric('netfence_events_lost_total', 'counter', 'Drops the kernel could not report as events (event ring full).', [...runtimes.values()].map((rt) => [{ attachment: rt.id }, eventsLostOf(rt)]));
    metric('netfence_dns_rate_limited_total', 'counter', "Queries to the attachment's DNS server the kernel dropped over dns.rate_limit_qps (not in packets_blocked).", [...runtimes.values()].map((rt) => [{ attachment: rt.id }, dnsRateLimitedOf(rt)]));
    metric('netfence_log_lines_suppressed_total', 'counter', 'Workload-triggered log lines not written (rate limit).', [[{}, workloadLog.suppressedTotal]]);
    metric('netfence_commands_applied_total', 'counter', 'Control plane commands applied.', [[{}, counters.commandsApplied]]);
    metric('netfence_commands_rejected_total', 'counter', 'Control plane commands rejected whole.', [[{}, counters.commandsRejected]]);
    return `${lines.join('\n')}\n`;
  }

  return daemon;
}
