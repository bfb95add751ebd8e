// The Grafana dashboard (docs/grafana/netfence.json) queries only metrics that exist: every
// metric name in every panel's query is in the daemon's README table or the reference control
// plane's (test/metrics.test.ts checks both tables against a live scrape), or is one of
// prom-client's default process metrics; histogram suffixes only on histograms, rate() only on
// counters and histogram series. No kernel needed.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry, collectDefaultMetrics } from 'prom-client';

const REPO = join(__dirname, '../../..');

interface Panel {
  id: number;
  title: string;
  type: string;
  targets?: { expr: string; refId: string }[];
}

const dashboard = JSON.parse(readFileSync(join(REPO, 'docs/grafana/netfence.json'), 'utf8')) as { uid: string; panels: Panel[]; templating: { list: { name: string; query: unknown }[] } };

/** `name -> type` from a README's metrics table. */
function documented(readme: string): Map<string, string> {
  const text = readFileSync(join(REPO, readme), 'utf8');
  return new Map([...text.matchAll(/^\| `(netfence_\w+)` \| (\w+) \|/gm)].map((m) => [m[1]!, m[2]!]));
}

async function exportedTypes(): Promise<Map<string, string>> {
  const process = new Registry();
  collectDefaultMetrics({ register: process });
  const defaults = (await process.getMetricsAsJSON()).map((m) => [m.name, String(m.type)] as [string, string]);
  return new Map([...documented('packages/daemon/README.md'), ...documented('packages/reference-controlplane/README.md'), ...defaults]);
}

/** The metric names a PromQL expression reads (identifiers followed by `{`, `[` or standing alone, minus functions and keywords). */
function metricNames(expr: string): string[] {
  const stripped = expr.replace(/"[^"]*"/g, '""').replace(/\{[^}]*\}/g, '{}').replace(/\[[^\]]*\]/g, '[]').replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...stripped.matchAll(/\b([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((n) => !/^(le|e\d+|\d.*)$/.test(n) && /_/.test(n));
}

test('the dashboard parses, its panels have unique ids and at least one query each', () => {
  expect(dashboard.uid).toBe('netfence-daemon');
  const ids = dashboard.panels.map((p) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect(dashboard.panels.filter((p) => (p.targets?.length ?? 0) === 0).map((p) => p.title)).toEqual([]);
});

test('every metric named in every panel query is one the daemon or its embedded control plane exports, used as its type allows', async () => {
  const types = await exportedTypes();
  expect(types.size).toBeGreaterThan(30); // both tables and the defaults were read
  const problems: string[] = [];
  const used = new Set<string>();
  for (const p of dashboard.panels) {
    for (const t of p.targets ?? []) {
      const names = metricNames(t.expr);
      if (names.length === 0) problems.push(`${p.title}/${t.refId}: no metric in ${t.expr}`);
      for (const n of names) {
        const base = n.replace(/_(bucket|sum|count)$/, '');
        const type = types.get(n) ?? (types.get(base) === 'histogram' ? 'histogram-series' : undefined);
        if (type === undefined) problems.push(`${p.title}/${t.refId}: ${n} is not exported`);
        else if (type === 'histogram') problems.push(`${p.title}/${t.refId}: ${n} is a histogram: query its _bucket, _sum or _count`);
        else if (type === 'gauge' && new RegExp(`(rate|increase)\\(${n}\\b`).test(t.expr)) problems.push(`${p.title}/${t.refId}: rate() of the gauge ${n}`);
        used.add(base);
      }
    }
  }
  expect(problems).toEqual([]);
  // What the dashboard is for (issue 14): each of these has a panel.
  for (const m of ['netfence_attach_duration_seconds', 'netfence_dns_upstream_duration_seconds', 'netfence_dns_map_write_duration_seconds', 'netfence_command_apply_duration_seconds', 'netfence_packets_allowed_total', 'netfence_packets_blocked_total', 'netfence_deny_events_total', 'netfence_events_lost_total', 'netfence_log_lines_suppressed_total', 'netfence_dns_rate_limited_total', 'netfence_control_plane_connected']) {
    expect({ m, used: used.has(m) }).toEqual({ m, used: true });
  }
});

test('the name reader finds names and leaves functions, labels and durations out (so the check above could fail)', () => {
  expect(metricNames('histogram_quantile(0.99, sum by (le, kind) (rate(netfence_attach_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))')).toEqual(['netfence_attach_duration_seconds_bucket']);
  expect(metricNames('process_resident_memory_bytes{instance=~"x"} / 1e9 + netfence_nope_total')).toEqual(['process_resident_memory_bytes', 'netfence_nope_total']);
});
