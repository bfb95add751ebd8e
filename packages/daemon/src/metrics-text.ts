// The Prometheus text of /metrics (metrics.listen): the registry's attachments and counters,
// the control plane link and the workload log's rate limit.

import type { Logger } from 'pino';
import { kernelCounterOf, statsOf } from './attachment-info';
import type { AttachmentRegistry } from './attachment-registry';
import type { WorkloadLog } from './workload-log';

export interface MetricsSources {
  readonly registry: AttachmentRegistry;
  readonly workloadLog: WorkloadLog;
  readonly connected: () => boolean;
  readonly logger: Logger;
}

export function metricsText(m: MetricsSources): string {
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
  const runtimes = m.registry.all();
  const counters = m.registry.counters;
  const per = runtimes.map((rt) => [rt.id, statsOf(rt, m.logger)] as const);
  metric('netfence_attachments', 'gauge', 'Attachments held by this daemon.', [[{}, runtimes.length]]);
  metric('netfence_control_plane_connected', 'gauge', '1 when the control plane stream is up.', [[{}, m.connected() ? 1 : 0]]);
  metric('netfence_packets_allowed_total', 'counter', 'Packets or connections allowed.', per.map(([id, s]) => [{ attachment: id }, s.packetsAllowed]));
  metric('netfence_packets_blocked_total', 'counter', 'Packets or connections blocked.', per.map(([id, s]) => [{ attachment: id }, s.packetsBlocked]));
  metric('netfence_dns_queries_allowed_total', 'counter', 'DNS queries answered.', per.map(([id, s]) => [{ attachment: id }, s.dnsQueriesAllowed]));
  metric('netfence_dns_queries_blocked_total', 'counter', 'DNS queries refused.', per.map(([id, s]) => [{ attachment: id }, s.dnsQueriesBlocked]));
  metric('netfence_dns_learned_addresses', 'gauge', 'Addresses learned from DNS answers (address, name pairs).', runtimes.map((rt) => [{ attachment: rt.id }, rt.learnedCount]));
  metric('netfence_dns_learned_evicted_total', 'counter', 'Learned addresses pushed out by dns.max_addresses_per_name (oldest unused first).', runtimes.map((rt) => [{ attachment: rt.id }, rt.learnedEvicted]));
  metric('netfence_dns_learned_over_cap_total', 'counter', 'Answer addresses not learned: the answer alone had more than dns.max_addresses_per_name.', runtimes.map((rt) => [{ attachment: rt.id }, rt.learnedOverCap]));
  metric('netfence_deny_events_total', 'counter', 'Drop events read from the kernel.', [[{}, counters.denyEvents]]);
  metric('netfence_events_lost_total', 'counter', 'Drops the kernel could not report as events (event ring full).', runtimes.map((rt) => [{ attachment: rt.id }, kernelCounterOf(rt, 'eventsLost')]));
  metric('netfence_dns_rate_limited_total', 'counter', "Queries to the attachment's DNS server the kernel dropped over dns.rate_limit_qps (not in packets_blocked).", runtimes.map((rt) => [{ attachment: rt.id }, kernelCounterOf(rt, 'dnsRateLimited')]));
  metric('netfence_log_lines_suppressed_total', 'counter', 'Workload-triggered log lines not written (rate limit).', [[{}, m.workloadLog.suppressedTotal]]);
  metric('netfence_commands_applied_total', 'counter', 'Control plane commands applied.', [[{}, counters.commandsApplied]]);
  metric('netfence_commands_rejected_total', 'counter', 'Control plane commands rejected whole.', [[{}, counters.commandsRejected]]);
  return `${lines.join('\n')}\n`;
}
