// A tiny Prometheus text-format registry (counters, gauges, histograms), and the control
// plane's own metrics.

export class Histogram {
  readonly buckets: readonly number[];
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(buckets: readonly number[]) {
    this.buckets = [...buckets].sort((a, b) => a - b);
    this.counts = this.buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (v <= (this.buckets[i] ?? Infinity)) this.counts[i] = (this.counts[i] ?? 0) + 1;
    }
  }
  get total(): number {
    return this.count;
  }
  render(name: string, help: string): string {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${name}_bucket{le="${b}"} ${this.counts[i] ?? 0}`));
    lines.push(`${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`);
    return lines.join('\n');
  }
}

export function renderGauge(name: string, help: string, value: number, type: 'gauge' | 'counter' = 'gauge'): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}`;
}

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export function renderLabelled(
  name: string,
  help: string,
  type: 'gauge' | 'counter',
  label: string,
  values: ReadonlyMap<string, number>,
): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const [k, v] of [...values].sort((a, b) => a[0].localeCompare(b[0]))) lines.push(`${name}{${label}="${esc(k)}"} ${v}`);
  return lines.join('\n');
}

/** The control plane's counters and histograms; each module bumps the ones it sees happen. */
export class ControlPlaneMetrics {
  readonly commandsSentByKind = new Map<string, number>();
  acks = 0;
  nacks = 0;
  reloadsOk = 0;
  reloadsFailed = 0;
  denyEvents = 0;
  dnsAllowed = 0;
  dnsDenied = 0;
  authFailures = 0;
  readonly ackLatency = new Histogram([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  readonly pushFanout = new Histogram([0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);

  commandSent(kind: string): void {
    this.commandsSentByKind.set(kind, (this.commandsSentByKind.get(kind) ?? 0) + 1);
  }

  /** Prometheus text of the counters plus the gauges of the moment. */
  render(gauges: { daemons: number; attachments: number; policies: number; policyValid: boolean }): string {
    const parts = [
      renderGauge('netfence_cp_connected_daemons', 'Daemons with an open Connect stream.', gauges.daemons),
      renderGauge('netfence_cp_attachments', 'Attachments known across connected daemons.', gauges.attachments),
      renderGauge('netfence_cp_policies', 'Policies in the policy set in force.', gauges.policies),
      renderLabelled('netfence_cp_commands_sent_total', 'Commands sent to daemons, by kind.', 'counter', 'kind', this.commandsSentByKind),
      renderGauge('netfence_cp_command_acks_total', 'Command results with ok=true (nonce extension).', this.acks, 'counter'),
      renderGauge('netfence_cp_command_nacks_total', 'Command results with ok=false (nonce extension).', this.nacks, 'counter'),
      this.ackLatency.render('netfence_cp_push_latency_seconds', 'Time from sending a command to its ACK.'),
      this.pushFanout.render('netfence_cp_push_fanout_seconds', 'Time to compute and queue the commands of one policy change for all daemons.'),
      renderLabelled(
        'netfence_cp_policy_reloads_total',
        'Policy (re)loads that changed the policy set, and rejected ones.',
        'counter',
        'result',
        new Map([
          ['ok', this.reloadsOk],
          ['error', this.reloadsFailed],
        ]),
      ),
      renderGauge('netfence_cp_policy_valid', '1 when the policy file on disk is the one in force, 0 when it was rejected.', gauges.policyValid ? 1 : 0),
      renderLabelled(
        'netfence_cp_dns_queries_total',
        'QueryDns decisions.',
        'counter',
        'verdict',
        new Map([
          ['allow', this.dnsAllowed],
          ['deny', this.dnsDenied],
        ]),
      ),
      renderGauge('netfence_cp_deny_events_total', 'Deny events received from daemons.', this.denyEvents, 'counter'),
      renderGauge('netfence_cp_auth_failures_total', 'Requests rejected for a missing or wrong bearer token.', this.authFailures, 'counter'),
    ];
    return parts.join('\n') + '\n';
  }
}
