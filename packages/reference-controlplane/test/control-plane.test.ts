// End-to-end tests against an independent gRPC client (@grpc/grpc-js + proto-loader)
// that plays a daemon over h2c on 127.0.0.1.

import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createClient, createRouterTransport } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import { ControlPlane as ControlPlaneService, DaemonEventSchema } from '@netfence/proto';
import type { DaemonEvent } from '@netfence/proto';
import { createControlPlane } from '@netfence/reference-controlplane';
import type { ControlPlane } from '@netfence/reference-controlplane';
import { createControlPlaneClient, FakeDaemon, queryDns } from './support/grpc-daemon';
import type { WireCommand } from './support/grpc-daemon';

const POLICY = `# test policies
policies:
  - name: acme   # tenant acme
    match: { tenant: acme }
    mode: allowlist
    dns:
      mode: allowlist
      upstreams: [10.200.0.53]
    rules:
      - ALLOW *.pypi.org
      - ALLOW 10.0.0.0/16 ttl=5m
      - DENY ads.example.com
  - name: proxied
    match: { tenant: proxy }
    mode: allowlist
    dns:
      mode: proxy
    rules:
      - ALLOW *.example.org
      - DENY bad.example.org
  - name: default
    mode: denylist
    rules:
      - DENY 198.51.100.0/24
`;

interface Env {
  dir: string;
  file: string;
  cp: ControlPlane;
  address: string;
  client: grpc.Client;
  daemons: FakeDaemon[];
}

const envs: Env[] = [];

async function setup(policy = POLICY, extra: Partial<Parameters<typeof createControlPlane>[0]> = {}): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-'));
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, policy);
  const cp = createControlPlane({ policy: file, debounceMs: 20, pollIntervalMs: 100, ...extra });
  const bound = await cp.listen('127.0.0.1:0');
  const address = `127.0.0.1:${bound.port}`;
  const client = createControlPlaneClient(address);
  const env = { dir, file, cp, address, client, daemons: [] };
  envs.push(env);
  return env;
}

function daemon(env: Env, opts: Partial<ConstructorParameters<typeof FakeDaemon>[1]> = {}): FakeDaemon {
  const d = new FakeDaemon(env.client, { daemonId: `d${env.daemons.length}`, autoAck: true, ...opts }).open();
  env.daemons.push(d);
  return d;
}

function nextReload(cp: ControlPlane): Promise<{ changed: boolean; commands: number; error?: Error }> {
  return new Promise((resolve) => cp.events.once('reload', resolve));
}

afterEach(async () => {
  for (const env of envs.splice(0)) {
    for (const d of env.daemons) d.close();
    env.client.close();
    await env.cp.close();
    rmSync(env.dir, { recursive: true, force: true });
  }
});

const byCase = (cmds: WireCommand[], c: string): WireCommand[] => cmds.filter((x) => x.command === c);

describe('Connect stream', () => {
  it('answers SyncRequest with SyncAck and a BulkUpdate per attachment, chosen by metadata', async () => {
    const env = await setup();
    const d = daemon(env, { metadata: { region: 'eu' } });
    d.sync([
      { id: 'a1', metadata: { tenant: 'acme' } },
      { id: 'a2', metadata: { tenant: 'someone-else' } },
    ]);
    const cmds = await d.next(3, 0);
    expect(cmds[0]).toMatchObject({ id: '', command: 'sync_ack' });
    const a1 = cmds.find((c) => c.id === 'a1')!;
    expect(a1.command).toBe('bulk_update');
    expect(a1.nonce).not.toBe('');
    expect(a1.bulk_update).toMatchObject({
      mode: 'POLICY_MODE_ALLOWLIST',
      allow_cidrs: [{ cidr: '10.0.0.0/16', ttl: { seconds: '300', nanos: 0 } }],
      deny_cidrs: [],
      dry_run: false,
      dns: {
        mode: 'DNS_MODE_ALLOWLIST',
        allow_domains: [{ domain: 'pypi.org', include_subdomains: true }],
        deny_domains: [{ domain: 'ads.example.com', include_subdomains: false }],
        upstream_servers: ['10.200.0.53'],
      },
    });
    const a2 = cmds.find((c) => c.id === 'a2')!;
    expect(a2.bulk_update).toMatchObject({ mode: 'POLICY_MODE_DENYLIST', deny_cidrs: [{ cidr: '198.51.100.0/24' }] });
    await d.waitFor(() => env.cp.attachments().every((a) => a.acks === 1) || undefined);
    expect(env.cp.daemons()).toEqual([expect.objectContaining({ daemonId: 'd0', synced: true, attachments: 2, metadata: { region: 'eu' } })]);
    expect(env.cp.attachments().map((a) => [a.id, a.policy]).sort()).toEqual([
      ['a1', 'acme'],
      ['a2', 'default'],
    ]);
  });

  it('answers Subscribed with a SubscribedAck of the matching policy; no match means BLOCK_ALL', async () => {
    const env = await setup('policies:\n  - name: only\n    match: { tenant: acme }\n    mode: allowlist\n    rules: [ALLOW 10.200.1.0/24]\n');
    const d = daemon(env);
    d.sync([]);
    await d.next(1, 0);
    d.subscribe('s1', { tenant: 'acme' });
    d.subscribe('s2', { tenant: 'nobody' });
    const [s1, s2] = await d.next(2, 1);
    expect(s1).toMatchObject({ id: 's1', command: 'subscribed_ack', subscribed_ack: { mode: 'POLICY_MODE_ALLOWLIST', allow_cidrs: [{ cidr: '10.200.1.0/24' }] } });
    expect(s2).toMatchObject({
      id: 's2',
      command: 'subscribed_ack',
      subscribed_ack: { mode: 'POLICY_MODE_BLOCK_ALL', allow_cidrs: [], deny_cidrs: [], dns: { mode: 'DNS_MODE_DISABLED' } },
    });
    expect(env.cp.attachments().find((a) => a.id === 's2')?.policy).toBeUndefined();
  });

  it('matches on daemon metadata overlaid by attachment metadata', async () => {
    const env = await setup();
    const d = daemon(env, { metadata: { tenant: 'acme' } });
    d.sync([{ id: 'x1' }, { id: 'x2', metadata: { tenant: 'other' } }]);
    const cmds = await d.next(3, 0);
    expect(cmds.find((c) => c.id === 'x1')!.bulk_update).toMatchObject({ mode: 'POLICY_MODE_ALLOWLIST' });
    expect(cmds.find((c) => c.id === 'x2')!.bulk_update).toMatchObject({ mode: 'POLICY_MODE_DENYLIST' });
  });

  it('pushes a policy file change as the minimal commands, not a BulkUpdate', async () => {
    const env = await setup();
    const d = daemon(env);
    d.sync([
      { id: 'a1', metadata: { tenant: 'acme' } },
      { id: 'a2', metadata: { tenant: 'acme' } },
      { id: 'b1', metadata: { tenant: 'zzz' } },
    ]);
    await d.next(4, 0);
    let r = nextReload(env.cp);
    writeFileSync(env.file, POLICY.replace('      - DENY ads.example.com\n', '      - DENY ads.example.com\n      - ALLOW files.pythonhosted.org\n'));
    expect(await r).toMatchObject({ changed: true, commands: 2 });
    const pushed = await d.next(2, 4);
    expect(pushed.map((c) => [c.id, c.command]).sort()).toEqual([
      ['a1', 'allow_domain'],
      ['a2', 'allow_domain'],
    ]);
    expect(pushed[0]!.allow_domain).toEqual({ domain: 'files.pythonhosted.org', include_subdomains: false });

    // a CIDR rule for the default policy: one allow_cidr for b1 only
    r = nextReload(env.cp);
    writeFileSync(env.file, readFileSync(env.file, 'utf8').replace('      - DENY 198.51.100.0/24\n', '      - DENY 198.51.100.0/24\n      - ALLOW 203.0.113.0/24 ttl=90s\n'));
    expect(await r).toMatchObject({ changed: true, commands: 1 });
    const [c] = await d.next(1, 6);
    expect(c).toMatchObject({ id: 'b1', command: 'allow_cidr', allow_cidr: { cidr: '203.0.113.0/24', ttl: { seconds: '90' } } });

    // mode change + rule removal
    r = nextReload(env.cp);
    writeFileSync(env.file, readFileSync(env.file, 'utf8').replace('    mode: denylist\n', '    mode: block_all\n').replace('      - DENY 198.51.100.0/24\n', ''));
    expect(await r).toMatchObject({ changed: true, commands: 2 });
    const two = await d.next(2, 7);
    expect(two.map((x) => x.command)).toEqual(['remove_cidr', 'set_mode']);
    expect(two[0]!.remove_cidr).toBe('198.51.100.0/24');
    expect(two[1]!.set_mode).toEqual({ mode: 'POLICY_MODE_BLOCK_ALL' });

    // a change that moves an attachment to another policy, with its metadata unchanged, only diffs
    await new Promise((res) => setTimeout(res, 150));
    expect(d.received).toHaveLength(9);
  });

  it('notices changes by polling when fs.watch is off (atomic rename by an editor)', async () => {
    const env = await setup(POLICY, { fsWatch: false, pollIntervalMs: 30 });
    const d = daemon(env);
    d.sync([{ id: 'a1' }]);
    await d.next(2, 0);
    const r = nextReload(env.cp);
    writeFileSync(`${env.file}.new`, POLICY.replace('DENY 198.51.100.0/24', 'DENY 198.51.100.0/25'));
    renameSync(`${env.file}.new`, env.file);
    expect(await r).toMatchObject({ changed: true, commands: 2 });
    expect((await d.next(2, 2)).map((c) => c.command)).toEqual(['deny_cidr', 'remove_cidr']);
  });

  it('rejects an invalid policy file naming file:line:key and keeps the last good policy', async () => {
    const env = await setup();
    const d = daemon(env);
    d.sync([{ id: 'a1', metadata: { tenant: 'acme' } }]);
    await d.next(2, 0);
    const r = nextReload(env.cp);
    writeFileSync(env.file, POLICY.replace('ALLOW 10.0.0.0/16 ttl=5m', 'ALLOW 10.0.0.0/33'));
    const res = await r;
    expect(res.changed).toBe(false);
    expect(res.error?.message).toContain(`${env.file}:11:9: policies[0].rules[1]: NETFENCE_ERR_INVALID_CIDR`);
    expect(env.cp.lastError()?.issues[0]).toMatchObject({ file: env.file, line: 11, key: 'policies[0].rules[1]' });
    expect(await env.cp.metrics()).toContain('netfence_cp_policy_valid 0');
    // the old policy is still served
    d.subscribe('a2', { tenant: 'acme' });
    const [ack] = await d.next(1, 2);
    expect(ack!.subscribed_ack).toMatchObject({ allow_cidrs: [{ cidr: '10.0.0.0/16' }] });
    expect(d.received.filter((c) => c.id === 'a1')).toHaveLength(1);
    // fixing the file pushes the difference from what the daemon holds
    const r2 = nextReload(env.cp);
    writeFileSync(env.file, POLICY.replace('ALLOW 10.0.0.0/16 ttl=5m', 'ALLOW 10.1.0.0/16'));
    expect(await r2).toMatchObject({ changed: true });
    expect(env.cp.lastError()).toBeUndefined();
    const cmds = await d.next(4, 3);
    for (const id of ['a1', 'a2']) {
      expect(cmds.filter((c) => c.id === id).map((c) => c.command).sort()).toEqual(['allow_cidr', 'remove_cidr']);
    }
  });

  it('removes unsubscribed attachments and records heartbeat stats', async () => {
    const env = await setup();
    const d = daemon(env);
    d.sync([{ id: 'a1' }, { id: 'a2' }]);
    await d.next(3, 0);
    d.heartbeat([{ id: 'a1', packets_allowed: 10, packets_blocked: 2, dns_queries_allowed: 3, dns_queries_blocked: 1 }]);
    d.unsubscribe('a2');
    await d.waitFor(() => (env.cp.attachments().length === 1 && env.cp.attachments()[0]!.lastHeartbeat ? true : undefined));
    expect(env.cp.attachments()[0]).toMatchObject({
      id: 'a1',
      lastHeartbeat: { packetsAllowed: 10, packetsBlocked: 2, dnsQueriesAllowed: 3, dnsQueriesBlocked: 1 },
    });
  });

  it('records NACKs and resynchronises the attachment with a BulkUpdate', async () => {
    const env = await setup();
    const d = daemon(env, { nack: (c) => (c.command === 'allow_domain' ? { code: 'NETFENCE_ERR_MAP_FULL', message: 'map full' } : undefined) });
    d.sync([{ id: 'a1', metadata: { tenant: 'acme' } }]);
    await d.next(2, 0);
    writeFileSync(env.file, POLICY.replace('      - DENY ads.example.com\n', '      - DENY ads.example.com\n      - ALLOW extra.example.com\n'));
    const [push, resync] = await d.next(2, 2);
    expect(push!.command).toBe('allow_domain');
    expect(resync!.command).toBe('bulk_update');
    await d.waitFor(() => env.cp.attachments()[0]?.nacks === 1 || undefined);
    expect(env.cp.attachments()[0]!.lastNack).toMatchObject({ ok: false, command: 'allowDomain', errorCode: 'NETFENCE_ERR_MAP_FULL', errorMessage: 'map full' });
    await d.waitFor(() => env.cp.attachments()[0]?.lastResult?.command === 'bulkUpdate' || undefined);
    expect(env.cp.attachments()[0]!.lastResult).toMatchObject({ ok: true });
    // the resync is not itself resynced again: exactly 4 commands in all
    expect(d.received).toHaveLength(4);
    expect(await env.cp.metrics()).toMatch(/netfence_cp_command_nacks_total 1/);
  });

  it('never requires results: a daemon without the nonce extension is tracked only a bounded amount', async () => {
    const env = await setup();
    const d = daemon(env, { autoAck: false });
    d.sync(Array.from({ length: 300 }, (_, i) => ({ id: `n${i}` })));
    await d.next(301, 0);
    expect(d.received.slice(1).every((c) => c.nonce !== '')).toBe(true);
    expect(env.cp.daemons()[0]!.pendingResults).toBe(256);
    d.subscribe('late');
    expect((await d.next(1, 301))[0]).toMatchObject({ id: 'late', command: 'subscribed_ack' });
  });

  it('ends the previous stream when the same daemon id syncs again', async () => {
    const env = await setup();
    const d1 = daemon(env, { daemonId: 'same' });
    d1.sync([{ id: 'a1' }]);
    await d1.next(2, 0);
    const d2 = daemon(env, { daemonId: 'same' });
    d2.sync([{ id: 'a1' }]);
    await d2.next(2, 0);
    await d1.closed();
    expect(env.cp.daemons()).toHaveLength(1);
  });
});

describe('QueryDns (proxy mode)', () => {
  it('decides with the attachment policy domain rules and adds answers to the filter', async () => {
    const env = await setup();
    const d = daemon(env);
    d.sync([{ id: 'p1', metadata: { tenant: 'proxy' } }]);
    await d.next(2, 0);
    expect(await queryDns(env.client, { id: 'p1', domain: 'www.Example.org.' })).toMatchObject({ allow: true, add_to_filter: true });
    expect(await queryDns(env.client, { id: 'p1', domain: 'bad.example.org' })).toMatchObject({ allow: false });
    expect(await queryDns(env.client, { id: 'p1', domain: 'elsewhere.net' })).toMatchObject({ allow: false });
    expect(await queryDns(env.client, { id: 'unknown', domain: 'www.example.org' })).toMatchObject({ allow: false });
    expect(await queryDns(env.client, { id: 'p1', domain: 'bad..name' })).toMatchObject({ allow: false });
    expect(await env.cp.metrics()).toMatch(/netfence_cp_dns_queries_total\{verdict="allow"\} 1/);
  });

  it('uses dns.proxy_default for names no rule matches', async () => {
    const env = await setup('policies:\n  - name: open\n    mode: denylist\n    dns: { mode: proxy, proxy_default: allow }\n    rules: [DENY *.tracker.test]\n');
    const d = daemon(env);
    d.sync([{ id: 'p1' }]);
    await d.next(2, 0);
    expect(await queryDns(env.client, { id: 'p1', domain: 'anything.test' })).toMatchObject({ allow: true });
    expect(await queryDns(env.client, { id: 'p1', domain: 'x.tracker.test' })).toMatchObject({ allow: false });
  });

  it("follows netfence.v1's walk: at the same name a subdomain deny beats an exact allow", async () => {
    const env = await setup('policies:\n  - name: open\n    mode: denylist\n    dns: { mode: proxy, proxy_default: allow }\n    rules: [DENY *.foo.test, ALLOW foo.test, ALLOW api.foo.test]\n');
    const d = daemon(env);
    d.sync([{ id: 'p1' }]);
    await d.next(2, 0);
    expect(await queryDns(env.client, { id: 'p1', domain: 'foo.test' })).toMatchObject({ allow: false });
    expect(await queryDns(env.client, { id: 'p1', domain: 'www.foo.test' })).toMatchObject({ allow: false });
    expect(await queryDns(env.client, { id: 'p1', domain: 'api.foo.test' })).toMatchObject({ allow: true }); // more specific name
  });
});

async function admin(url: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(url + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

describe('admin API', () => {
  it('adds and removes rules: persisted (comments kept) and pushed as single commands', async () => {
    const env = await setup();
    const a = await env.cp.listenAdmin('127.0.0.1:0');
    const d = daemon(env);
    d.sync([{ id: 'a1', metadata: { tenant: 'acme' } }]);
    await d.next(2, 0);
    d.heartbeat([{ id: 'a1', packets_allowed: 5 }]);

    const add = await admin(a.url, 'POST', '/v1/policies/acme/rules', { rule: 'ALLOW *.npmjs.org' });
    expect(add).toMatchObject({ status: 200, json: { changed: true, commands: 1 } });
    const [cmd] = await d.next(1, 2);
    expect(cmd).toMatchObject({ id: 'a1', command: 'allow_domain', allow_domain: { domain: 'npmjs.org', include_subdomains: true } });
    const text = readFileSync(env.file, 'utf8');
    expect(text).toContain('- ALLOW *.npmjs.org');
    expect(text).toContain('# tenant acme');

    expect((await admin(a.url, 'POST', '/v1/policies/acme/rules', { rule: 'ALLOW *.npmjs.org' })).status).toBe(409);
    expect((await admin(a.url, 'POST', '/v1/policies/nope/rules', { rule: 'ALLOW x.org' })).json.error.code).toBe('NETFENCE_ERR_POLICY_NOT_FOUND');
    const bad = await admin(a.url, 'POST', '/v1/policies/acme/rules', { rule: 'ALLOW 10.0.0.0/99' });
    expect(bad).toMatchObject({ status: 400, json: { error: { code: 'NETFENCE_ERR_INVALID_CIDR' } } });
    expect((await admin(a.url, 'POST', '/v1/policies/acme/rules', { nope: 1 })).json.error.code).toBe('NETFENCE_ERR_INVALID_REQUEST');

    const del = await admin(a.url, 'DELETE', '/v1/policies/acme/rules', { rule: 'ALLOW *.npmjs.org' });
    expect(del).toMatchObject({ status: 200, json: { changed: true, commands: 1 } });
    const [rm] = await d.next(1, 3);
    expect(rm).toMatchObject({ id: 'a1', command: 'remove_domain', remove_domain: 'npmjs.org' });
    expect(readFileSync(env.file, 'utf8')).not.toContain('npmjs');
    expect((await admin(a.url, 'DELETE', '/v1/policies/acme/rules', { rule: 'ALLOW *.npmjs.org' })).status).toBe(404);

    const daemons = await admin(a.url, 'GET', '/v1/daemons');
    expect(daemons.json.daemons).toEqual([expect.objectContaining({ daemonId: 'd0', attachments: 1 })]);
    const atts = await admin(a.url, 'GET', '/v1/attachments');
    expect(atts.json.attachments[0]).toMatchObject({ id: 'a1', policy: 'acme', lastHeartbeat: { packetsAllowed: 5 } });
    const pols = await admin(a.url, 'GET', '/v1/policies');
    expect(pols.json.policies.map((p: { name: string }) => p.name)).toEqual(['acme', 'proxied', 'default']);

    const m = await admin(a.url, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toContain('netfence_cp_connected_daemons 1');
    expect(m.text).toContain('netfence_cp_attachments 1');
    expect(m.text).toMatch(/netfence_cp_commands_sent_total\{kind="allowDomain"\} 1/);
    expect(m.text).toMatch(/netfence_cp_command_acks_total [1-9]/);
    expect(m.text).toContain('netfence_cp_push_latency_seconds_count');
    expect((await admin(a.url, 'GET', '/v1/nothing')).status).toBe(404);
  });

  it('works on an inline policy document (no file)', async () => {
    const cp = createControlPlane({ policy: { policies: [{ name: 'p', mode: 'denylist', rules: [] }] } });
    try {
      const r = await cp.addRule('p', 'DENY 203.0.113.9');
      expect(r).toMatchObject({ changed: true, commands: 0 });
      expect(cp.policySet().policies[0]!.config.denyCidrs).toEqual([{ cidr: '203.0.113.9/32' }]);
    } finally {
      await cp.close();
    }
  });
});

describe('auth and transport', () => {
  it('requires the bearer token on both APIs when configured', async () => {
    const env = await setup(POLICY, { auth: { tokens: ['s3cret'] } });
    const a = await env.cp.listenAdmin('127.0.0.1:0');
    const anon = daemon(env);
    anon.sync([]);
    const err = await anon.closed();
    expect(err?.code).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = daemon(env, { token: 'nope' });
    wrong.sync([]);
    expect((await wrong.closed())?.code).toBe(grpc.status.UNAUTHENTICATED);
    await expect(queryDns(env.client, { id: 'x', domain: 'a.b' })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    const ok = daemon(env, { token: 's3cret' });
    ok.sync([{ id: 'a1' }]);
    await ok.next(2, 0);
    expect(await queryDns(env.client, { id: 'a1', domain: 'a.b' }, 's3cret')).toMatchObject({ allow: false });
    expect((await admin(a.url, 'GET', '/v1/daemons')).status).toBe(401);
    expect((await admin(a.url, 'GET', '/metrics')).status).toBe(401);
    expect((await admin(a.url, 'GET', '/v1/daemons', undefined, 's3cret')).status).toBe(200);
    expect(await env.cp.metrics()).toMatch(/netfence_cp_auth_failures_total [4-9]/);
  });

  it('serves over TLS and mTLS', async () => {
    const { execFileSync } = await import('node:child_process');
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-tls-'));
    try {
      const ossl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
      ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=nf-test-ca');
      writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
      for (const n of ['server', 'client']) {
        ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', `/CN=${n}`);
        ossl('x509', '-req', '-in', `${n}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${n}.pem`, '-days', '1', '-extfile', 'san.ext');
      }
      const f = (n: string): Buffer => readFileSync(join(dir, n));
      const env = await setup(POLICY, { tls: { cert: f('server.pem'), key: f('server.key'), ca: f('ca.pem') } });
      const addr = env.address;
      // mTLS: with a client certificate it works
      const tlsOpts = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
      const good = createControlPlaneClient(addr, grpc.credentials.createSsl(f('ca.pem'), f('client.key'), f('client.pem')), tlsOpts);
      const d = new FakeDaemon(good, { daemonId: 'tls' }).open();
      env.daemons.push(d);
      d.sync([{ id: 't1' }]);
      expect((await d.next(2, 0))[1]).toMatchObject({ id: 't1', command: 'bulk_update' });
      // without a client certificate the handshake is refused
      const noCert = createControlPlaneClient(addr, grpc.credentials.createSsl(f('ca.pem')), tlsOpts);
      await expect(queryDns(noCert, { id: 't1', domain: 'x.org' })).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      // h2c to a TLS port fails too
      await expect(queryDns(createControlPlaneClient(addr), { id: 't1', domain: 'x.org' })).rejects.toBeTruthy();
      good.close();
      noCert.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs in-process through routes(): in-memory transport and a unix socket', async () => {
    const cp = createControlPlane({ policy: { policies: [{ name: 'all', mode: 'allowlist', rules: ['ALLOW 10.200.0.0/16'] }] } });
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-unix-'));
    try {
      const transport = createRouterTransport(cp.routes);
      const client = createClient(ControlPlaneService, transport);
      const events: DaemonEvent[] = [create(DaemonEventSchema, { event: { case: 'sync', value: { daemonId: 'mem', attachments: [{ id: 'm1' }] } } })];
      async function* up(): AsyncGenerator<DaemonEvent> {
        for (const e of events) yield e;
        await new Promise((r) => setTimeout(r, 50));
      }
      const got: string[] = [];
      for await (const c of client.connect(up())) {
        got.push(`${c.id}:${c.command.case}`);
        if (got.length === 2) break;
      }
      expect(got).toEqual([':syncAck', 'm1:bulkUpdate']);

      const sock = join(dir, 'cp.sock');
      const bound = await cp.listen(`unix:${sock}`);
      expect(bound.url).toBe(`unix:${sock}`);
      const uc = createControlPlaneClient(`unix:${sock}`);
      const d = new FakeDaemon(uc, { daemonId: 'unix' }).open();
      d.sync([{ id: 'u1' }]);
      expect((await d.next(2, 0))[1]).toMatchObject({ id: 'u1', bulk_update: { allow_cidrs: [{ cidr: '10.200.0.0/16' }] } });
      d.close();
      uc.close();
    } finally {
      await cp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails creation on an invalid policy file with the file, line and key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-bad-'));
    try {
      const file = join(dir, 'p.yaml');
      writeFileSync(file, 'policies:\n  - name: a\n    mode: sometimes\n');
      expect(() => createControlPlane({ policy: file })).toThrow(`${file}:3:11: policies[0].mode`);
      expect(() => createControlPlane({ policy: join(dir, 'missing.yaml') })).toThrow(expect.objectContaining({ code: 'NETFENCE_ERR_POLICY_READ' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
