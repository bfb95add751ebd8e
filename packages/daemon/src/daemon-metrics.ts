// The daemon's Prometheus metrics, on prom-client: one Registry per daemon (never prom-client's
// global one), so two daemons in one process never collide. Gauges and kernel counters are read
// at scrape time (collect); the histograms are observed where the work happens (attach in the
// shell, commands in the registry, DNS in dns-filter-server.ts). The embedded control plane's
// registry is merged in, so one scrape serves its netfence_cp_* metrics too. Every netfence_*
// name here is in the README's "Metrics" table; test/metrics.test.ts checks both agree.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import { kernelCounterOf, statsOf } from './attachment-info';
import type { AttachmentRegistry } from './attachment-registry';
import type { AttachmentRuntime } from './attachments';
import { VERSION } from './version';
import type { WorkloadLog } from './workload-log';

/** What the gauges and counters read at scrape time (functions: the shell creates them later). */
export interface MetricsSources {
  readonly registry: () => AttachmentRegistry;
  readonly workloadLog: () => WorkloadLog;
  readonly connected: () => boolean;
  readonly logger: Logger;
  /** Events `netfenced events` subscribers missed (they read too slowly). */
  readonly watchDropped?: () => number;
}

/** The DNS timings dns-filter-server.ts observes for every attachment's server. */
export interface DnsTimings {
  /** Seconds from a query's arrival to its upstream answer (answer latency less the map write). */
  upstream(seconds: number): void;
  /** Seconds spent writing an answer's addresses into the allow map (onResolved). */
  mapWrite(seconds: number): void;
}

const ATTACH_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const DNS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const MAP_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5];

type Rows = (rts: AttachmentRuntime[], m: MetricsSources) => [string, number | bigint][];

export class DaemonMetrics {
  /** This daemon's own metrics. */
  readonly registry = new Registry();
  readonly attachDuration: Histogram<'kind'>;
  readonly commandApplyDuration: Histogram<'command'>;
  readonly dns: DnsTimings;
  private served: Registry = this.registry;

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: 'netfence_build_info', help: 'Always 1; the labels name the daemon version and the Node.js version.', labelNames: ['version', 'node'], registers }).set({ version: VERSION, node: process.version }, 1);
    scalarGauge(registers, 'netfence_attachments', 'Attachments held by this daemon.', () => src.registry().size);
    scalarGauge(registers, 'netfence_control_plane_connected', '1 when the control plane stream is up.', () => (src.connected() ? 1 : 0));
    const stats = (pick: (s: ReturnType<typeof statsOf>) => bigint): Rows => (rts, m) => rts.map((rt) => [rt.id, pick(statsOf(rt, m.logger))]);
    const perAttachment = (name: string, type: 'counter' | 'gauge', help: string, rows: Rows) => attachmentMetric(registers, src, name, type, help, rows);
    perAttachment('netfence_packets_allowed_total', 'counter', 'Packets or connections allowed.', stats((s) => s.packetsAllowed));
    perAttachment('netfence_packets_blocked_total', 'counter', 'Packets or connections blocked.', stats((s) => s.packetsBlocked));
    perAttachment('netfence_dns_queries_allowed_total', 'counter', 'DNS queries answered.', stats((s) => s.dnsQueriesAllowed));
    perAttachment('netfence_dns_queries_blocked_total', 'counter', 'DNS queries refused.', stats((s) => s.dnsQueriesBlocked));
    perAttachment('netfence_dns_learned_addresses', 'gauge', 'Addresses learned from DNS answers (address, name pairs).', (rts) => rts.map((rt) => [rt.id, rt.learnedCount]));
    perAttachment('netfence_dns_learned_evicted_total', 'counter', 'Learned addresses pushed out by dns.max_addresses_per_name (oldest unused first).', (rts) => rts.map((rt) => [rt.id, rt.learnedEvicted]));
    perAttachment('netfence_dns_learned_over_cap_total', 'counter', 'Answer addresses not learned: the answer alone had more than dns.max_addresses_per_name.', (rts) => rts.map((rt) => [rt.id, rt.learnedOverCap]));
    perAttachment('netfence_events_lost_total', 'counter', 'Drops the kernel could not report as events (event ring full).', (rts) => rts.map((rt) => [rt.id, kernelCounterOf(rt, 'eventsLost')]));
    perAttachment('netfence_dns_rate_limited_total', 'counter', "Queries to the attachment's DNS server the kernel dropped over dns.rate_limit_qps (not in packets_blocked).", (rts) => rts.map((rt) => [rt.id, kernelCounterOf(rt, 'dnsRateLimited')]));
    scalarCounter(registers, 'netfence_deny_events_total', 'Drop events read from the kernel.', () => src.registry().counters.denyEvents);
    scalarCounter(registers, 'netfence_log_lines_suppressed_total', 'Workload-triggered log lines not written (rate limit).', () => src.workloadLog().suppressedTotal);
    scalarCounter(registers, 'netfence_events_watch_dropped_total', 'Events a `netfenced events` subscriber missed because it read too slowly (its queue is bounded).', () => src.watchDropped?.() ?? 0);
    scalarCounter(registers, 'netfence_commands_applied_total', 'Control plane commands applied.', () => src.registry().counters.commandsApplied);
    scalarCounter(registers, 'netfence_commands_rejected_total', 'Control plane commands rejected whole.', () => src.registry().counters.commandsRejected);
    this.attachDuration = new Histogram({ name: 'netfence_attach_duration_seconds', help: 'Successful Attach calls, request to reply (the ack applied, or block-all without waiting).', labelNames: ['kind'], buckets: ATTACH_BUCKETS, registers });
    this.commandApplyDuration = new Histogram({ name: 'netfence_command_apply_duration_seconds', help: 'Control plane commands, received to applied to the kernel maps (and saved).', labelNames: ['command'], buckets: MAP_BUCKETS, registers });
    const upstream = new Histogram({ name: 'netfence_dns_upstream_duration_seconds', help: 'Allowed DNS queries answered by an upstream: arrival to upstream answer (the answer latency less the map write).', buckets: DNS_BUCKETS, registers });
    const mapWrite = new Histogram({ name: 'netfence_dns_map_write_duration_seconds', help: "Writing a DNS answer's addresses into the allow map before the answer is released.", buckets: MAP_BUCKETS, registers });
    this.dns = { upstream: (s) => upstream.observe(s), mapWrite: (s) => mapWrite.observe(s) };
  }

  /** Serves another registry's metrics beside this daemon's (the embedded control plane's). */
  merge(other: Registry): void {
    this.served = Registry.merge([this.registry, other]);
  }

  /** Prometheus text exposition of every metric served. */
  render(): Promise<string> {
    return this.served.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function scalarGauge(registers: Registry[], name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** A counter whose value lives elsewhere (read at scrape time; it only grows). */
function scalarCounter(registers: Registry[], name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** One series per attachment held now, read at scrape time (a detached attachment's series go). */
function attachmentMetric(registers: Registry[], src: MetricsSources, name: string, type: 'counter' | 'gauge', help: string, rows: Rows): void {
  const collect = (set: (attachment: string, v: number) => void, reset: () => void) => {
    reset();
    for (const [attachment, v] of rows(src.registry().all(), src)) set(attachment, Number(v));
  };
  if (type === 'gauge') {
    new Gauge({
      name,
      help,
      labelNames: ['attachment'],
      registers,
      collect() {
        collect((attachment, v) => this.set({ attachment }, v), () => this.reset());
      },
    });
  } else {
    new Counter({
      name,
      help,
      labelNames: ['attachment'],
      registers,
      collect() {
        collect((attachment, v) => this.inc({ attachment }, v), () => this.reset());
      },
    });
  }
}
