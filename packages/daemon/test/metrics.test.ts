// The daemon's metrics listener against a running netfenced: the README's metrics table checked
// against a real scrape both ways (names, types, labels), the embedded control plane's
// netfence_cp_* merged into the same scrape, the new histograms fed by a real attach, DNS answer
// and control plane command, and the /healthz and /readyz probes (ready, and not ready while the
// control plane link is down).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDaemonLab, eventually, startDaemon, webPolicy, writeDaemonConfig, type DaemonLab, type DaemonProcess } from './support/daemon-lab';

jest.setTimeout(60_000);

// Loopback of the lab's host namespace: nothing else listens there.
const METRICS = '127.0.0.1:19470';
const METRICS_UNREADY = '127.0.0.1:19471';
const ALLOWED = 'allowed.test';

const POLICY = (extra: string) => webPolicy([`ALLOW ${ALLOWED}`]) + extra;

let dl: DaemonLab;
let d: DaemonProcess;
let policy: string;

beforeAll(async () => {
  dl = await createDaemonLab();
  policy = join(dl.tmp, 'policy.yaml');
  writeFileSync(policy, POLICY(''));
  d = await startDaemon(dl, writeDaemonConfig(dl, 'metrics', { policy_file: policy, metrics: { listen: METRICS } }));
});

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await dl?.close();
});

/** GET inside the lab's host namespace (where the daemon listens): status, content type, body. */
async function get(addr: string, path: string): Promise<{ status: number; type: string; text: string }> {
  const js = `require('http').get('http://${addr}${path}', (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => process.stdout.write(JSON.stringify({ status: r.statusCode, type: r.headers['content-type'], text: b }))); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
  const r = await dl.run(dl.host, 'node', ['-e', js]);
  if (r.code !== 0) throw new Error(`GET ${path}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { status: number; type: string; text: string };
}

type Families = Map<string, { type: string; labels: Set<string> }>;

/** `name -> {type, labels}` of every metric family in a Prometheus text exposition. */
function families(text: string): Families {
  const out: Families = new Map();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, { type: m[2]!, labels: new Set() });
  for (const m of text.matchAll(/^([a-zA-Z_:][\w:]*)\{([^}]*)\}/gm)) {
    const fam = out.get(m[1]!) ?? out.get(m[1]!.replace(/_(bucket|sum|count)$/, ''));
    for (const l of m[2]!.matchAll(/(\w+)="/g)) if (l[1] !== 'le') fam?.labels.add(l[1]!);
  }
  return out;
}

/** A README's metrics table rows matching `prefix`: `name -> {type, labels}`. */
function documented(readmePath: string, prefix: RegExp): Families {
  const readme = readFileSync(readmePath, 'utf8');
  const out: Families = new Map();
  for (const m of readme.matchAll(/^\| `(netfence_\w+)` \| (\w+) \|([^|]*)\|/gm)) {
    if (!prefix.test(m[1]!)) continue;
    // Label names are the backquoted words outside parentheses (those list example values).
    out.set(m[1]!, { type: m[2]!, labels: new Set([...m[3]!.replace(/\([^)]*\)/g, '').matchAll(/`(\w+)`/g)].map((l) => l[1]!)) });
  }
  return out;
}

function expectSame(exported: Families, docs: Families): void {
  expect(docs.size).toBeGreaterThan(5); // the table was found and parsed
  expect([...exported.keys()].filter((n) => !docs.has(n))).toEqual([]); // exported but not documented
  expect([...docs.keys()].filter((n) => !exported.has(n))).toEqual([]); // documented but not exported
  for (const [name, doc] of docs) {
    expect({ name, type: exported.get(name)?.type, labels: [...(exported.get(name)?.labels ?? [])].sort() }).toEqual({ name, type: doc.type, labels: [...doc.labels].sort() });
  }
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('the scrape exports exactly the netfence_* metrics the README documents, the embedded control plane`s netfence_cp_* too, and the histograms count real work', async () => {
  const cg = dl.cgroup('metrics');
  const r = await d.cli(['attach', '--cgroup', cg.path, '--metadata', 'tenant=web', '--json']);
  expect(r.code).toBe(0);
  const { id, dnsAddress } = JSON.parse(r.stdout) as { id: string; dnsAddress: string };
  expect((await dl.dig(dnsAddress, ALLOWED, { cgroup: cg })).status).toBe('NOERROR'); // upstream answer + map write
  expect(await dl.canConnect('203.0.113.20', { cgroup: cg })).toBe(false); // a drop
  // A policy edit: the embedded control plane pushes a command to the attachment.
  writeFileSync(policy, POLICY('      - ALLOW 203.0.113.40/32\n'));
  const text = await eventually(async () => {
    const t = (await get(METRICS, '/metrics')).text;
    return (sample(t, 'netfence_commands_applied_total') ?? 0) > 0 ? t : undefined;
  }, 'a command applied after the policy edit');

  const scrape = await get(METRICS, '/metrics');
  expect(scrape.status).toBe(200);
  expect(scrape.type).toMatch(/^text\/plain; version=0\.0\.4/);
  const all = families(scrape.text);
  const pick = (re: RegExp) => new Map([...all].filter(([n]) => re.test(n)));
  expectSame(pick(/^netfence_(?!cp_)/), documented(join(__dirname, '..', 'README.md'), /^netfence_(?!cp_)/));
  expectSame(pick(/^netfence_cp_/), documented(join(__dirname, '../../reference-controlplane/README.md'), /^netfence_cp_/));
  // One set of process metrics (the embedded control plane's registry has none of its own).
  expect(scrape.text.match(/^# TYPE process_cpu_seconds_total /gm)).toHaveLength(1);
  expect(scrape.text).toMatch(/^nodejs_heap_size_used_bytes /m);
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
  expect(scrape.text).toMatch(new RegExp(`^netfence_build_info\\{version="${version.replace(/\./g, '\\.')}",node="v[\\d.]+"\\} 1$`, 'm'));

  expect(sample(text, 'netfence_attach_duration_seconds_count{kind="cgroup"}')).toBeGreaterThanOrEqual(1);
  expect(sample(text, 'netfence_dns_upstream_duration_seconds_count')).toBeGreaterThanOrEqual(1);
  expect(sample(text, 'netfence_dns_map_write_duration_seconds_count')).toBeGreaterThanOrEqual(1);
  expect(text).toMatch(/^netfence_command_apply_duration_seconds_count\{command="\w+"\} [1-9]\d*$/m);
  expect(sample(text, `netfence_packets_blocked_total{attachment="${id}"}`)).toBeGreaterThan(0);
  expect(sample(text, 'netfence_cp_connected_daemons')).toBe(1);
  expect((await d.cli(['detach', '--id', id])).code).toBe(0);
});

test('/healthz is 200; /readyz is 200 once restored and linked; anything else on the listener is 404', async () => {
  expect(await get(METRICS, '/healthz')).toMatchObject({ status: 200, text: '{"alive":true}' });
  const ready = await get(METRICS, '/readyz');
  expect(ready.status).toBe(200);
  expect(JSON.parse(ready.text)).toEqual({ ready: true });
  expect((await get(METRICS, '/nothing')).status).toBe(404);
});

test('/readyz is 503 with the reason while the control plane link is down (alive all the same)', async () => {
  // The first daemon goes first: both would share the lab's bpffs root.
  await d.stop();
  // A remote control plane nobody serves: loopback port 9 of the lab's host namespace.
  const cfg = writeDaemonConfig(dl, 'unready', { socket: join(dl.tmp, 'unready.sock'), data_dir: join(dl.tmp, 'unready-data'), control_plane: { url: 'http://127.0.0.1:9' }, metrics: { listen: METRICS_UNREADY } });
  const other = await startDaemon(dl, cfg);
  try {
    expect((await get(METRICS_UNREADY, '/healthz')).status).toBe(200);
    const r = await get(METRICS_UNREADY, '/readyz');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text)).toEqual({ ready: false, reason: expect.stringMatching(/^control plane link (connecting|disconnected)$/) as unknown });
    expect(sample((await get(METRICS_UNREADY, '/metrics')).text, 'netfence_control_plane_connected')).toBe(0);
  } finally {
    await other.stop();
  }
});
