// netfenced with its embedded reference control plane (policy_file), driven through the
// built CLI and the gRPC API, with real TC and cgroup attachments in a lab.

import { statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabCgroup } from '@netfence/lab';
import {
  createDaemonLab,
  NAMES,
  pinnedAllowV4,
  pinnedIds,
  SERVER_PORT,
  startDaemon,
  writeDaemonConfig,
  type DaemonLab,
  type DaemonProcess,
  webPolicy,
} from './support/daemon-lab';
import { grpc, type GrpcError } from './support/grpc';

jest.setTimeout(60_000);

const POLICY = webPolicy(undefined, `  - name: proxied
    match: { tenant: proxied }
    mode: allowlist
    dns:
      mode: proxy
    rules:
      - ALLOW allowed.test
`);

let dl: DaemonLab;
let d: DaemonProcess;

beforeAll(async () => {
  dl = await createDaemonLab();
  const policy = join(dl.tmp, 'policy.yaml');
  writeFileSync(policy, POLICY);
  d = await startDaemon(dl, writeDaemonConfig(dl, 'embedded', { policy_file: policy, metrics: { listen: METRICS } }));
});

// Loopback of the lab's host namespace: nothing else listens there.
const METRICS = '127.0.0.1:19464';

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

async function cliJson<T>(args: string[]): Promise<T> {
  const r = await d.cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`netfenced ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface CliAttachment {
  id: string;
  target: string;
  type: string;
  mode: string;
  dnsMode: string;
  dnsAddress: string;
  metadata: Record<string, string>;
  tcDirection?: string;
}

/** Resolves `name` through the attachment's DNS server and connects to the answer at once, in one shell. */
async function resolveAndConnect(dnsAddress: string, name: string, cgroup?: LabCgroup) {
  const [host, port] = [dnsAddress.slice(0, dnsAddress.lastIndexOf(':')), dnsAddress.slice(dnsAddress.lastIndexOf(':') + 1)];
  const script = `ip=$(dig +time=2 +tries=1 +short @${host} -p ${port} ${name} A | head -1); echo "ip=$ip"; [ -n "$ip" ] && nc -z -w 1 "$ip" ${SERVER_PORT} && echo connected`;
  const r = await dl.run(cgroup ? dl.host : dl.wl, 'sh', ['-c', script], { cgroup });
  return { ip: /ip=(\S*)/.exec(r.stdout)?.[1] ?? '', connected: r.stdout.includes('connected') };
}

describe.each([
  ['TC (veth host end)', 'tc'],
  ['cgroup', 'cgroup'],
] as const)('attach through the CLI: %s', (_label, kind) => {
  let att: CliAttachment;
  let cg: LabCgroup | undefined;

  beforeAll(async () => {
    cg = kind === 'cgroup' ? dl.cgroup('web') : undefined;
    const target = kind === 'tc' ? ['--interface', dl.wlVeth.a] : ['--cgroup', cg!.path];
    const before = await dl.canConnect('203.0.113.20', { cgroup: cg });
    expect(before).toBe(true); // no filter yet: the lab works
    const r = await cliJson<{ id: string; dnsAddress: string }>(['attach', ...target, '--metadata', 'tenant=web,job=e2e']);
    const list = await cliJson<{ attachments: CliAttachment[] }>(['list', '--all']);
    att = list.attachments.find((a) => a.id === r.id)!;
    expect(att).toBeDefined();
    expect(att.dnsAddress).toBe(r.dnsAddress);
  });

  afterAll(async () => {
    if (att) await d.cli(['detach', '--id', att.id]);
  });

  test('the SubscribedAck was applied before Attach returned: List shows its mode and DNS mode', () => {
    expect(att).toMatchObject({ type: kind, mode: 'allowlist', dnsMode: 'allowlist', metadata: { tenant: 'web', job: 'e2e' } });
    if (kind === 'tc') expect(att.tcDirection).toBe('ingress');
    expect(att.dnsAddress).toMatch(/^10\.200\.1\.1:\d+$/);
  });

  test('real traffic: the allowed CIDR connects, anything else is blocked', async () => {
    expect(await dl.canConnect('203.0.113.30', { cgroup: cg })).toBe(true);
    expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false);
    expect(await dl.canConnect('203.0.113.40', { cgroup: cg })).toBe(false);
  });

  test('DNS: an allowed name resolves and its address is in the allow map before the answer', async () => {
    expect(pinnedAllowV4(dl, att.id)).not.toContain(`${NAMES['allowed.test']}/32`);
    const r = await resolveAndConnect(att.dnsAddress, 'allowed.test', cg);
    expect(r).toEqual({ ip: NAMES['allowed.test'], connected: true });
    expect(pinnedAllowV4(dl, att.id)).toContain(`${NAMES['allowed.test']}/32`);
  });

  test('DNS: a denied name and a name no rule allows are REFUSED; the upstream directly is unreachable', async () => {
    expect((await dl.dig(att.dnsAddress, 'evil.test', { cgroup: cg })).status).toBe('REFUSED');
    expect((await dl.dig(att.dnsAddress, 'www.allowed.test', { cgroup: cg })).status).toBe('REFUSED');
    const direct = await dl.dig('10.200.2.2:53', 'allowed.test', { cgroup: cg });
    if (kind === 'tc') expect(direct.answers).toEqual([]); // dropped
    else expect(direct.answers).toEqual([NAMES['allowed.test']]); // transparently redirected to the attachment's server
    expect(await dl.canConnect(NAMES['evil.test'], { cgroup: cg })).toBe(false);
  });
});

test('the API socket is created with mode 0600', () => {
  expect(statSync(d.socket).mode & 0o777).toBe(0o600);
  expect(statSync(d.socket).isSocket()).toBe(true);
});

describe('API errors carry proper gRPC codes, never UNKNOWN', () => {
  async function codeOf(p: Promise<unknown>): Promise<grpc.status> {
    try {
      await p;
    } catch (e) {
      const code = (e as GrpcError).code;
      expect(code).not.toBe(grpc.status.UNKNOWN);
      return code;
    }
    throw new Error('the call succeeded');
  }

  test('attach to a missing interface: NOT_FOUND (and the CLI exits 1 naming the code)', async () => {
    expect(await codeOf(d.api.attach({ interface_name: 'nfnosuchif0' }))).toBe(grpc.status.NOT_FOUND);
    const r = await d.cli(['attach', '--interface', 'nfnosuchif0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NotFound/);
  });

  test('attach to an invalid interface name: INVALID_ARGUMENT', async () => {
    expect(await codeOf(d.api.attach({ interface_name: '../../etc' }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test('attach with no target: INVALID_ARGUMENT', async () => {
    expect(await codeOf(d.api.attach({ metadata: { a: 'b' } }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test('detach of an unknown id: NOT_FOUND', async () => {
    expect(await codeOf(d.api.detach('att-000000000000'))).toBe(grpc.status.NOT_FOUND);
    const r = await d.cli(['detach', '--id', 'att-000000000000']);
    expect(r.code).toBe(1);
  });

  test('the same interface under another name (an altname): ALREADY_EXISTS', async () => {
    const v = dl.extraVeth();
    const alt = `${v.a}x`;
    dl.host.exec('ip', ['link', 'property', 'add', 'dev', v.a, 'altname', alt]);
    const first = await d.api.attach({ interface_name: v.a });
    try {
      expect(await codeOf(d.api.attach({ interface_name: v.a }))).toBe(grpc.status.ALREADY_EXISTS);
      expect(await codeOf(d.api.attach({ interface_name: alt }))).toBe(grpc.status.ALREADY_EXISTS);
    } finally {
      await d.api.detach(first.id);
    }
    // Attached by its altname, the interface is listed under its primary name.
    const byAlt = await d.api.attach({ interface_name: alt });
    try {
      expect((await d.api.listAll()).find((a) => a.id === byAlt.id)?.target).toBe(v.a);
      expect(await codeOf(d.api.attach({ interface_name: v.a }))).toBe(grpc.status.ALREADY_EXISTS);
    } finally {
      await d.api.detach(byAlt.id);
    }
  });

  test('the same cgroup written differently (trailing slash, double slash, symlink): ALREADY_EXISTS', async () => {
    const cg = dl.cgroup('dup');
    const link = join(dl.tmp, 'cg-link');
    symlinkSync(cg.path, link);
    const first = await d.api.attach({ cgroup_path: cg.path });
    try {
      expect(await codeOf(d.api.attach({ cgroup_path: cg.path }))).toBe(grpc.status.ALREADY_EXISTS);
      expect(await codeOf(d.api.attach({ cgroup_path: `${cg.path}/` }))).toBe(grpc.status.ALREADY_EXISTS);
      expect(await codeOf(d.api.attach({ cgroup_path: cg.path.replace(/\/([^/]+)$/, '//$1') }))).toBe(grpc.status.ALREADY_EXISTS);
      expect(await codeOf(d.api.attach({ cgroup_path: link }))).toBe(grpc.status.ALREADY_EXISTS);
    } finally {
      await d.api.detach(first.id);
    }
  });

  test('cgroup paths outside the cgroup2 mount, with .., relative, or missing', async () => {
    const cg = dl.cgroup('esc');
    expect(await codeOf(d.api.attach({ cgroup_path: dl.tmp }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(d.api.attach({ cgroup_path: `${cg.path}/../${cg.path.split('/').pop()!}` }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(d.api.attach({ cgroup_path: `${cg.path}/..` }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(d.api.attach({ cgroup_path: 'relative/cgroup' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(d.api.attach({ cgroup_path: `${cg.path}-missing` }))).toBe(grpc.status.NOT_FOUND);
    // A symlink that leads out of the mount is judged by where it leads.
    const out = join(dl.tmp, 'escape-link');
    symlinkSync(dl.tmp, out);
    expect(await codeOf(d.api.attach({ cgroup_path: out }))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test('a page token the daemon did not issue: INVALID_ARGUMENT', async () => {
    expect(await codeOf(d.api.list(2, 'garbage!'))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test('failed attaches left nothing behind', async () => {
    const ids = (await d.api.listAll()).map((a) => a.id).sort();
    expect(pinnedIds(dl).sort()).toEqual(ids);
  });
});

test('List: keyset pagination is stable across pages, total_count counts everything', async () => {
  const cgs = Array.from({ length: 5 }, (_, i) => dl.cgroup(`page${i}`));
  const ids: string[] = [];
  for (const cg of cgs) ids.push((await d.api.attach({ cgroup_path: cg.path })).id);
  try {
    const all = (await d.api.listAll()).map((a) => a.id);
    expect(all).toEqual([...all].sort());
    for (const id of ids) expect(all).toContain(id);

    const p1 = await d.api.list(2);
    expect(p1.attachments).toHaveLength(2);
    expect(p1.total_count).toBe(all.length);
    expect(p1.next_page_token).not.toBe('');
    // The same token gives the same page.
    const p2 = await d.api.list(2, p1.next_page_token);
    expect((await d.api.list(2, p1.next_page_token)).attachments.map((a) => a.id)).toEqual(p2.attachments.map((a) => a.id));
    // Removing an item already seen does not shift the later pages.
    await d.api.detach(p1.attachments[0]!.id);
    ids.splice(ids.indexOf(p1.attachments[0]!.id), 1);
    const seen = [...p1.attachments, ...p2.attachments].map((a) => a.id);
    let token = p2.next_page_token;
    let pages = 2;
    while (token) {
      const p = await d.api.list(2, token);
      expect(p.attachments.length).toBeGreaterThan(0);
      expect(p.attachments.length).toBeLessThanOrEqual(2);
      expect(p.total_count).toBe(all.length - 1);
      seen.push(...p.attachments.map((a) => a.id));
      token = p.next_page_token;
      pages++;
    }
    expect(pages).toBe(Math.ceil(all.length / 2));
    expect(seen).toEqual(all);
    // CLI --all follows the tokens.
    const viaCli = await cliJson<{ attachments: { id: string }[]; totalCount: number }>(['list', '--all', '--page-size', '2']);
    expect(viaCli.totalCount).toBe(all.length - 1);
    expect(viaCli.attachments.map((a) => a.id)).toEqual(all.filter((id) => id !== p1.attachments[0]!.id));
  } finally {
    for (const id of ids) await d.api.detach(id).catch(() => undefined);
  }
});

test('Prometheus metrics: attachments and per-attachment counters in text format', async () => {
  const cg = dl.cgroup('metrics');
  const { id } = await cliJson<{ id: string }>(['attach', '--cgroup', cg.path, '--metadata', 'tenant=web']);
  expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false); // one blocked connect
  const list = await cliJson<{ attachments: { id: string; packetsBlocked: string }[] }>(['list', '--all']);
  const fetch = `require('http').get('http://${METRICS}/metrics', (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => process.stdout.write(r.statusCode + '\\n' + b)); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
  const r = await dl.run(dl.host, 'node', ['-e', fetch]);
  const [status, ...rest] = r.stdout.split('\n');
  const text = rest.join('\n');
  expect(status).toBe('200');
  expect(text).toContain('# TYPE netfence_packets_blocked_total counter');
  expect(text).toMatch(new RegExp(`^netfence_attachments ${list.attachments.length}$`, 'm'));
  for (const a of list.attachments) expect(text).toMatch(new RegExp(`^netfence_packets_blocked_total\\{attachment="${a.id}"\\} \\d+$`, 'm'));
  expect(text).toMatch(/^netfence_control_plane_connected 1$/m);
  expect(Number(new RegExp(`^netfence_packets_blocked_total\\{attachment="${id}"\\} (\\d+)$`, 'm').exec(text)?.[1])).toBeGreaterThan(0);
  expect((await d.cli(['detach', '--id', id])).code).toBe(0);
});

test('DNS proxy mode: the control plane decides each name (QueryDns); its answer feeds the filter', async () => {
  const cg = dl.cgroup('proxied');
  const { id, dnsAddress } = await cliJson<{ id: string; dnsAddress: string }>(['attach', '--cgroup', cg.path, '--metadata', 'tenant=proxied']);
  try {
    const list = await cliJson<{ attachments: CliAttachment[] }>(['list', '--all']);
    expect(list.attachments.find((a) => a.id === id)?.dnsMode).toBe('proxy');
    const ok = await resolveAndConnect(dnsAddress, 'allowed.test', cg);
    expect(ok).toEqual({ ip: NAMES['allowed.test'], connected: true });
    expect((await dl.dig(dnsAddress, 'evil.test', { cgroup: cg })).status).toBe('REFUSED');
  } finally {
    expect((await d.cli(['detach', '--id', id])).code).toBe(0);
  }
});
