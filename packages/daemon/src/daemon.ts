// The process shell of netfenced: config, the data_dir lock, the capability check, the
// datapath, the control plane link (remote or embedded), the API socket, the metrics listener
// and the order they start and stop in. The attachments themselves live in the registry
// (attachment-registry.ts).

import { hostname as osHostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { createControlPlaneClient, type ControlPlaneClient, type ControlPlaneConnectionState } from '@netfence/controlplane-client';
import { ConnectionState, DaemonStatusSchema } from '@netfence/proto';
import type { Logger } from 'pino';
import { listPage, statsOf, toAttachmentPb } from './attachment-info';
import { AttachmentRegistry } from './attachment-registry';
import type { DaemonConfig } from './config';
import { DaemonError } from './daemon-error';
import type { Datapath } from './datapath';
import type { StartDnsServer } from './dns-server-types';
import { createStateStore } from './state-store';
import { createMetricsServer, type MetricsServer, type Readiness } from './metrics';
import { DaemonMetrics } from './daemon-metrics';
import { EventHub } from './event-hub';
import { startEmbeddedControlPlane, type ControlPlaneMode, type EmbeddedControlPlane } from './embedded-controlplane';
import { BACKGROUND_ACK_RESEND_MS } from './background-subscribe';
import { createBpfDatapath } from './bpf-datapath';
import { startFilterDnsServer } from './dns-filter-server';
import { VERSION } from './version';
import { startApiServer, type AttachInput, type DaemonApi, type ListPage } from './api-server';
import { lockStateDir, type StateLock } from './state-lock';
import { capabilityWarnings, checkCapabilities } from './capabilities';
import { createWorkloadLog } from './workload-log';
import { AutoAttacher } from './auto-attach';
import { autoAttachRulesFromPb, autoAttachRulesToPb } from './auto-attach-wire';
import { TargetWatch } from './target-watch';

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

/** What the shell holds once started (each part is undefined until its step of start). */
interface Running {
  datapath?: Datapath;
  client?: ControlPlaneClient;
  embedded?: EmbeddedControlPlane;
  api?: { close(): Promise<void> };
  metrics?: MetricsServer;
  stateLock?: StateLock;
}

export function createDaemon(config: DaemonConfig, opts: DaemonOptions): Daemon {
  const logger = opts.logger;
  const now = opts.now ?? Date.now;
  const store = createStateStore(config.data_dir, config.daemon_id, (e) => logger.error({ err: e }, 'cannot flush attachment records to disk (they stay written; retried with the next write)'));
  const hostname = config.hostname ?? osHostname();
  const upstreams = config.dns.upstream.length ? [...config.dns.upstream] : resolvConfUpstreams();
  /** Every log line a workload can trigger goes through this per-attachment rate limit. */
  const workloadLog = createWorkloadLog(logger);
  const run: Running = { datapath: opts.datapath };
  /** Attach calls in progress, so close() lets them finish (or roll back) first. */
  const inflight = new Set<Promise<unknown>>();
  let phase: 'new' | 'started' | 'closing' = 'new';
  let daemonId = '';
  let cpUrl = config.control_plane.url;
  let cpMode: ControlPlaneMode = 'remote';
  let cpState: ControlPlaneConnectionState = 'disconnected';
  let restored = false;
  /** Drop events and DNS decisions for `netfenced events`, bounded (event-hub.ts). */
  const events = new EventHub();
  const metrics = new DaemonMetrics({ registry: () => registry, workloadLog: () => workloadLog, connected: () => cpState === 'connected', logger, watchDropped: () => events.droppedForSlowSubscribers });

  const startDnsServer: StartDnsServer =
    opts.startDnsServer ??
    ((p) => startFilterDnsServer(p, { upstreams, minTtlSec: config.dns.min_ttl / 1000, maxTtlSec: config.dns.max_ttl / 1000, blockedRcode: config.dns.blocked_rcode, queryTimeoutMs: config.dns.query_timeout, logger: logger.child({ component: 'dns' }), workloadLog, timings: metrics.dns, events }));
  const registry = new AttachmentRegistry({ config, logger, store, now, workloadLog, startDnsServer, datapath: () => run.datapath!,
    link: () => run.client,
    commandApplied: (command, seconds) => metrics.commandApplyDuration.observe({ command }, seconds),
    events,
    held: (r, held) => targetWatch.held(r, held),
  });
  /** auto_attach: targets attached as the kernel announces them; and every target followed until it goes. */
  const auto = new AutoAttacher({ registry, logger: logger.child({ component: 'auto-attach' }), workloadLog });
  const targetWatch = new TargetWatch({ registry, auto, logger: logger.child({ component: 'target-watch' }), fallbackMs: config.target_watch_interval });

  /** /readyz: the control plane link up (or the embedded one serving) and every saved attachment taken back. */
  function readiness(): Readiness {
    if (phase === 'closing') return { ready: false, reason: 'stopping' };
    if (!restored) return { ready: false, reason: 'restoring saved attachments' };
    if (registry.unrestored.length > 0) return { ready: false, reason: `${registry.unrestored.length} saved attachment(s) not restored: ${registry.unrestored.slice(0, 10).join(', ')}` };
    if (run.embedded) {
      const r = run.embedded.controlPlane.readiness();
      if (!r.ready) return { ready: false, reason: `embedded control plane: ${r.reason ?? 'not ready'}` };
      return { ready: true };
    }
    if (cpState !== 'connected') return { ready: false, reason: `control plane link ${cpState}` };
    return { ready: true };
  }

  function connectControlPlane(url: string): ControlPlaneClient {
    const tls = config.control_plane.tls;
    const token = config.control_plane.token ?? (config.control_plane.token_file ? () => readFileSync(config.control_plane.token_file!, 'utf8').trim() : undefined);
    const noWait = config.control_plane.subscribe_ack_timeout === 0;
    return createControlPlaneClient({
      url,
      daemonId,
      hostname,
      metadata: { ...config.metadata },
      syncState: () => ({ attachments: registry.all().map((r) => toAttachmentPb(r.record)) }),
      onCommand: (cmd) => registry.command(cmd),
      heartbeatIntervalMs: config.control_plane.heartbeat_interval,
      heartbeatStats: () => registry.all().map((r) => ({ id: r.id, ...statsOf(r, logger) })),
      subscribeAckTimeoutMs: noWait ? BACKGROUND_ACK_RESEND_MS : config.control_plane.subscribe_ack_timeout,
      dnsQueryDeadlineMs: config.control_plane.query_dns_timeout,
      tls: url.startsWith('https:') ? { caFile: tls.ca_file, certFile: tls.cert_file, keyFile: tls.key_file } : undefined,
      bearerToken: token,
      // The client binds component: 'controlplane-client' itself (binding it here too wrote the key twice).
      logger,
      onStateChange: (s, info) => {
        cpState = s;
        if (s === 'disconnected' && phase !== 'closing') logger.warn({ retryInMs: info.retryInMs, err: info.error }, 'control plane disconnected');
        else logger.info({ state: s }, 'control plane link');
      },
    });
  }

  const daemon: Daemon = {
    get controlPlaneUrl() {
      return cpUrl;
    },

    async start() {
      if (phase !== 'new') return;
      phase = 'started';
      // Before anything else: the privileges the kernel will ask for (read only), then this
      // daemon's exclusive hold on data_dir; without both nothing is opened, bound or changed.
      if (!opts.datapath) {
        checkCapabilities();
        for (const w of capabilityWarnings()) logger.warn({ capability: w.slice(0, w.indexOf(' ')) }, w);
      }
      run.stateLock = lockStateDir(config.data_dir);
      daemonId = store.daemonId();
      run.datapath ??= createBpfDatapath({
        root: config.bpffs_root,
        mapSizes: { allow: config.maps.allow_entries, deny: config.maps.deny_entries, ringbufBytes: config.maps.ringbuf_bytes, maxAttachments: config.maps.max_attachments },
        dnsRateLimit: { rateQps: config.dns.rate_limit_qps, burst: config.dns.rate_limit_burst },
        onEvent: (ev) => registry.dropEvent(ev),
        logger: logger.child({ component: 'datapath' }),
      });
      // The listener comes up before restore, so /readyz can say what the daemon waits for.
      if (config.metrics.listen) run.metrics = await createMetricsServer(config.metrics.listen, { render: () => metrics.render(), contentType: metrics.contentType, readiness });
      await registry.restore();
      restored = true;
      run.datapath.warm(['tc', 'cgroup']);
      if (!cpUrl) {
        run.embedded = await startEmbeddedControlPlane({ policyFile: config.policy_file, logger: logger.child({ component: 'embedded-controlplane' }) });
        metrics.merge(run.embedded.controlPlane.registry);
        cpUrl = run.embedded.url;
        cpMode = run.embedded.emptyPolicy ? 'embedded-empty' : 'embedded';
      }
      run.client = connectControlPlane(cpUrl);
      registry.flushVanished(run.client);
      // From here a removed target goes at once, and a new one matching a rule is attached.
      targetWatch.start(config.auto_attach);
      run.api = await startApiServer(config.socket, config.socket_mode, daemon, logger.child({ component: 'api' }));
      logger.info(
        { daemonId, socket: config.socket, controlPlane: cpUrl, controlPlaneMode: cpMode, attachments: registry.size, version: VERSION },
        cpMode === 'embedded-empty' ? 'netfenced started with no control plane URL and no policy file: embedded control plane with an empty policy, every attachment is block-all' : 'netfenced started',
      );
    },

    attach(input) {
      if (phase !== 'started') return Promise.reject(new DaemonError('NETFENCE_ERR_SHUTTING_DOWN', 'the daemon is not accepting attachments'));
      const t0 = performance.now();
      const p = registry.attach(input);
      const kind = input.cgroupPath ? 'cgroup' : 'tc';
      p.then(() => metrics.attachDuration.observe({ kind }, (performance.now() - t0) / 1000), () => undefined);
      inflight.add(p);
      const done = () => inflight.delete(p);
      p.then(done, done);
      return p;
    },

    detach: (id) => registry.detach(id),

    watchEvents: (o) => events.watch(o),

    getAutoAttachRules: () => autoAttachRulesToPb(auto.rules),

    setAutoAttachRules(msg) {
      if (phase !== 'started') throw new DaemonError('NETFENCE_ERR_SHUTTING_DOWN', 'the daemon is not accepting rules');
      const rules = autoAttachRulesFromPb(msg);
      targetWatch.setRules(rules);
      logger.info({ rules: rules.length }, 'auto-attach rules set');
      return autoAttachRulesToPb(rules);
    },

    list: (pageSize, pageToken) => listPage(registry, pageSize, pageToken, logger),

    status() {
      return create(DaemonStatusSchema, {
        version: VERSION,
        daemonId,
        hostname,
        controlPlaneState: cpState === 'connected' ? ConnectionState.CONNECTED : cpState === 'connecting' ? ConnectionState.CONNECTING : ConnectionState.DISCONNECTED,
        controlPlaneAddress: cpUrl,
        attachmentCount: registry.size,
        controlPlaneMode: cpMode,
        attachmentsAwaitingAck: registry.all().filter((rt) => registry.awaiting.has(rt.id)).length,
      });
    },

    async close() {
      if (phase === 'closing') return;
      phase = 'closing';
      targetWatch.close();
      await run.metrics?.close().catch(() => undefined);
      await run.api?.close().catch((e: unknown) => logger.warn({ err: e }, 'api close'));
      await Promise.allSettled([...inflight]); // an Attach in progress completes or rolls back
      await auto.close(); // and so does every auto attach begun
      if (config.detach_on_exit) await registry.detachAll();
      await run.client?.close().catch(() => undefined);
      await run.embedded?.close().catch(() => undefined);
      await registry.shutdown();
      await store.flushed().catch(() => undefined); // logged by the flusher
      await run.datapath?.close();
      workloadLog.close();
      run.stateLock?.release();
      logger.info({ detached: config.detach_on_exit }, 'netfenced stopped');
    },
  };

  return daemon;
}
