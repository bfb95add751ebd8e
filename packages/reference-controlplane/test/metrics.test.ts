// The control plane's Prometheus metrics (prom-client, one registry per instance), the README's
// metrics table checked against a real scrape, and the /healthz and /readyz probes.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { createControlPlane } from '@netfence/reference-controlplane';
import type { ControlPlane, ControlPlaneOptions } from '@netfence/reference-controlplane';
import { createControlPlaneClient, FakeDaemon } from './support/grpc-daemon';

const DOC = {
  policies: [
    { name: 'acme', match: { tenant: 'acme' }, mode: 'allowlist' as const, dns: { mode: 'allowlist' as const }, rules: ['ALLOW *.pypi.org'] },
    { name: 'default', mode: 'block_all' as const },
  ],
};

interface Env {
  cp: ControlPlane;
  client?: grpc.Client;
  daemons: FakeDaemon[];
}
const envs: Env[] = [];

function start(extra: Partial<ControlPlaneOptions> = {}): Env {
  const env: Env = { cp: createControlPlane({ policy: DOC, ...extra }), daemons: [] };
  envs.push(env);
  return env;
}

async function withDaemon(env: Env, id: string, attachments: string[], token?: string): Promise<FakeDaemon> {
  if (!env.client) {
    const bound = await env.cp.listen('127.0.0.1:0');
    env.client = createControlPlaneClient(`127.0.0.1:${bound.port}`);
  }
  const d = new FakeDaemon(env.client, { daemonId: id, autoAck: true, ...(token ? { token } : {}) }).open();
  env.daemons.push(d);
  d.sync(attachments.map((a) => ({ id: a, metadata: { tenant: 'acme' } })));
  await d.next(1 + attachments.length, 0);
  return d;
}

afterEach(async () => {
  for (const env of envs.splice(0)) {
    for (const d of env.daemons) d.close();
    env.client?.close();
    await env.cp.close();
  }
});

async function get(url: string, token?: string): Promise<{ status: number; text: string; type: string | null }> {
  const r = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: r.status, text: await r.text(), type: r.headers.get('content-type') };
}

/** `name -> {type, labels}` of every metric family in a Prometheus text exposition. */
function families(text: string): Map<string, { type: string; labels: Set<string> }> {
  const out = new Map<string, { type: string; labels: Set<string> }>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, { type: m[2]!, labels: new Set() });
  for (const m of text.matchAll(/^([a-zA-Z_:][\w:]*)\{([^}]*)\}/gm)) {
    const name = m[1]!.replace(/_(bucket|sum|count)$/, '');
    const fam = out.get(m[1]!) ?? out.get(name);
    for (const l of m[2]!.matchAll(/(\w+)="/g)) if (l[1] !== 'le') fam?.labels.add(l[1]!);
  }
  return out;
}

/** The README's metrics table: `name -> {type, labels}`. */
function documented(): Map<string, { type: string; labels: Set<string> }> {
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  const out = new Map<string, { type: string; labels: Set<string> }>();
  for (const m of readme.matchAll(/^\| `(netfence_cp_\w+)` \| (\w+) \|([^|]*)\|/gm)) {
    // Label names are the backquoted words outside parentheses (those list example values).
    const labels = new Set([...m[3]!.replace(/\([^)]*\)/g, '').matchAll(/`(\w+)`/g)].map((l) => l[1]!));
    out.set(m[1]!, { type: m[2]!, labels });
  }
  return out;
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics', () => {
  it('exports exactly the netfence_cp_* metrics the README table documents (names, types, labels)', async () => {
    const env = start({ auth: { tokens: ['s3cret'] } });
    const admin = await env.cp.listenAdmin('127.0.0.1:0');
    await get(`${admin.url}/v1/daemons`); // one auth failure
    const d = await withDaemon(env, 'd1', ['a1'], 's3cret');
    d.write({ command_result: { nonce: 'unknown', attachment_id: 'a1', ok: true, error_code: '', error_message: '' } });
    env.cp.queryDns({ id: 'a1', domain: 'files.pypi.org' });
    await env.cp.addRule('acme', 'ALLOW example.org');

    const scrape = await get(`${admin.url}/metrics`, 's3cret');
    expect(scrape.status).toBe(200);
    expect(scrape.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const exported = new Map([...families(scrape.text)].filter(([n]) => n.startsWith('netfence_cp_')));
    const docs = documented();
    expect(docs.size).toBeGreaterThan(5); // the table was found and parsed
    expect([...exported.keys()].filter((n) => !docs.has(n))).toEqual([]); // exported but not documented
    expect([...docs.keys()].filter((n) => !exported.has(n))).toEqual([]); // documented but not exported
    for (const [name, doc] of docs) {
      expect({ name, type: exported.get(name)?.type, labels: [...(exported.get(name)?.labels ?? [])].sort() }).toEqual({ name, type: doc.type, labels: [...doc.labels].sort() });
    }
    // prom-client's process metrics are in the same registry.
    expect(scrape.text).toMatch(/^process_cpu_seconds_total /m);
    expect(scrape.text).toMatch(/^nodejs_heap_size_used_bytes /m);
    const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(scrape.text).toContain(`netfence_cp_build_info{version="${version}",node="${process.version}"} 1`);
  });

  it('counts across scrapes: commands by kind, fan-out per policy change, ACKs, gauges', async () => {
    const env = start();
    await withDaemon(env, 'd1', ['a1', 'a2']);
    const d2 = await withDaemon(env, 'd2', ['b1']);
    await d2.waitFor(() => env.cp.attachments().every((a) => a.acks === 1) || undefined);
    let text = await env.cp.metrics();
    expect(sample(text, 'netfence_cp_connected_daemons')).toBe(2);
    expect(sample(text, 'netfence_cp_attachments')).toBe(3);
    expect(sample(text, 'netfence_cp_policies')).toBe(2);
    expect(sample(text, 'netfence_cp_commands_sent_total{kind="syncAck"}')).toBe(2);
    expect(sample(text, 'netfence_cp_commands_sent_total{kind="bulkUpdate"}')).toBe(3);
    expect(sample(text, 'netfence_cp_command_acks_total')).toBe(3);
    expect(sample(text, 'netfence_cp_push_latency_seconds_count')).toBe(3);
    expect(sample(text, 'netfence_cp_push_fanout_seconds_count')).toBe(0);

    // Two policy changes: one fan-out each, one allowDomain per attachment each; the counter
    // keeps counting across scrapes (it is fed at scrape time from the send path's tally).
    await env.cp.addRule('acme', 'ALLOW example.org');
    text = await env.cp.metrics();
    expect(sample(text, 'netfence_cp_commands_sent_total{kind="allowDomain"}')).toBe(3);
    await env.cp.addRule('acme', 'ALLOW example.net');
    await env.cp.metrics(); // a scrape in between must not double-count
    text = await env.cp.metrics();
    expect(sample(text, 'netfence_cp_commands_sent_total{kind="allowDomain"}')).toBe(6);
    expect(sample(text, 'netfence_cp_commands_sent_total{kind="bulkUpdate"}')).toBe(3);
    expect(sample(text, 'netfence_cp_push_fanout_seconds_count')).toBe(2);
    expect(sample(text, 'netfence_cp_policy_reloads_total{result="ok"}')).toBe(2);

    d2.close();
    await d2.closed();
    for (let i = 0; i < 100 && env.cp.daemons().length > 1; i++) await new Promise((r) => setTimeout(r, 10));
    text = await env.cp.metrics();
    expect(sample(text, 'netfence_cp_connected_daemons')).toBe(1);
    expect(sample(text, 'netfence_cp_attachments')).toBe(2);
  });

  it('keeps each control plane in its own registry (two in one process, never the global one)', async () => {
    const { register } = await import('prom-client');
    const a = start();
    const b = start({ processMetrics: false });
    expect(a.cp.registry).not.toBe(b.cp.registry);
    expect(a.cp.registry).not.toBe(register);
    a.cp.queryDns({ id: 'nobody', domain: 'example.org' });
    expect(sample(await a.cp.metrics(), 'netfence_cp_dns_queries_total{verdict="deny"}')).toBe(1);
    const bText = await b.cp.metrics();
    expect(sample(bText, 'netfence_cp_dns_queries_total{verdict="deny"}')).toBe(0);
    expect(bText).not.toMatch(/^process_/m);
    expect((await register.metrics()).trim()).toBe('');
  });
});

describe('probes', () => {
  it('/healthz is 200; /readyz is 503 with a reason until the gRPC server listens, then 200; no token needed', async () => {
    const env = start({ auth: { tokens: ['s3cret'] } });
    const admin = await env.cp.listenAdmin('127.0.0.1:0');
    expect(await get(`${admin.url}/healthz`)).toMatchObject({ status: 200 });
    const before = await get(`${admin.url}/readyz`);
    expect(before.status).toBe(503);
    expect(JSON.parse(before.text)).toEqual({ ready: false, reason: 'gRPC server not listening' });
    await env.cp.listen('127.0.0.1:0');
    const after = await get(`${admin.url}/readyz`);
    expect(after.status).toBe(200);
    expect(JSON.parse(after.text)).toEqual({ ready: true });
    expect((await get(`${admin.url}/metrics`)).status).toBe(401);
  });

  it('stays ready on a rejected reload (the last good policy serves) and is not ready once closed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-metrics-'));
    try {
      const file = join(dir, 'policy.yaml');
      writeFileSync(file, 'policies:\n  - name: default\n    mode: block_all\n');
      const env = start({ policy: file, watch: false });
      await env.cp.listen('127.0.0.1:0');
      writeFileSync(file, 'policies:\n  - name: default\n    mode: nonsense\n');
      expect((await env.cp.reload()).error?.code).toBe('NETFENCE_ERR_POLICY_INVALID');
      expect(env.cp.readiness()).toEqual({ ready: true });
      const text = await env.cp.metrics();
      expect(sample(text, 'netfence_cp_policy_valid')).toBe(0);
      expect(sample(text, 'netfence_cp_policy_reloads_total{result="error"}')).toBe(1);
      await env.cp.close();
      expect(env.cp.readiness()).toEqual({ ready: false, reason: 'control plane closed' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
