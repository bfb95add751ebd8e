// Several replicas on one PostgreSQL (a real server started by the test, on a
// unix socket): an edit through any replica reaches the daemons of every
// replica as the minimal commands; a bad stored policy is refused by all; a
// database restart loses no change; concurrent edits both land.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createControlPlane, createPostgresPolicyStore, type ControlPlane, type Logger, type PolicyStore, type ReloadResult } from '@netfence/reference-controlplane';
import { startFromArgv } from '../src/cli';
import { createControlPlaneClient, FakeDaemon } from './support/grpc-daemon';
import { startTestPostgres, type TestPostgres } from './support/postgres';

jest.setTimeout(60_000);

const POLICY = `policies:
  - name: acme
    match: { tenant: acme }
    mode: allowlist
    rules:
      - ALLOW 10.0.0.0/16
`;

interface Replica {
  readonly store: PolicyStore;
  readonly cp: ControlPlane;
  readonly client: grpc.Client;
}

let pg: TestPostgres;
const replicas: Replica[] = [];
const daemons: FakeDaemon[] = [];

beforeAll(async () => {
  pg = await startTestPostgres();
});

afterEach(async () => {
  for (const d of daemons.splice(0)) d.close();
  for (const r of replicas.splice(0)) {
    r.client.close();
    await r.cp.close();
    await r.store.close();
  }
  pg.sql('DROP TABLE IF EXISTS netfence_policy');
});

afterAll(async () => {
  await pg?.destroy();
});

async function replica(seedText?: string, reconnectMs = 200): Promise<Replica> {
  const store = await createPostgresPolicyStore({ connectionString: pg.url, reconnectMs, ...(seedText !== undefined ? { seedText } : {}) });
  const cp = createControlPlane({ policy: store, debounceMs: 10 });
  const bound = await cp.listen('127.0.0.1:0');
  const r = { store, cp, client: createControlPlaneClient(`127.0.0.1:${bound.port}`) };
  replicas.push(r);
  return r;
}

function daemonOn(r: Replica, id: string): FakeDaemon {
  const d = new FakeDaemon(r.client, { daemonId: id, autoAck: true }).open();
  daemons.push(d);
  return d;
}

function nextReload(cp: ControlPlane, pred: (r: ReloadResult) => boolean = () => true): Promise<ReloadResult> {
  return new Promise((resolve) => {
    const on = (r: ReloadResult) => {
      if (!pred(r)) return;
      cp.events.off('reload', on);
      resolve(r);
    };
    cp.events.on('reload', on);
  });
}

describe('reference control plane on PostgreSQL', () => {
  it('an edit through one replica reaches the daemons of another as the minimal commands', async () => {
    const a = await replica(POLICY);
    const b = await replica(); // no seed: serves what the database holds
    expect(b.cp.policySet().hash).toBe(a.cp.policySet().hash);
    const d = daemonOn(b, 'db1');
    d.sync([{ id: 'x1', metadata: { tenant: 'acme' } }]);
    const [, bulk] = await d.next(2, 0);
    expect(bulk!.bulk_update).toMatchObject({ allow_cidrs: [{ cidr: '10.0.0.0/16' }] });

    const seenByB = nextReload(b.cp, (r) => r.changed);
    await a.cp.addRule('acme', 'ALLOW 203.0.113.0/24');
    expect(await seenByB).toMatchObject({ changed: true, commands: 1 });
    const [cmd] = await d.next(1, 2);
    expect(cmd).toMatchObject({ id: 'x1', command: 'allow_cidr', allow_cidr: { cidr: '203.0.113.0/24' } });
    expect(b.cp.policySet().hash).toBe(a.cp.policySet().hash);
    expect(pg.sql(`SELECT version FROM netfence_policy WHERE name = 'default'`).trim()).toBe('2');
    // the stored text is the edited YAML
    expect(pg.sql(`SELECT text FROM netfence_policy WHERE name = 'default'`)).toContain('ALLOW 203.0.113.0/24');
  });

  it('a bad policy stored by someone else is refused by every replica, naming the source and line; the last good one stays', async () => {
    const a = await replica(POLICY);
    const b = await replica();
    const d = daemonOn(b, 'db2');
    d.sync([{ id: 'x1', metadata: { tenant: 'acme' } }]);
    await d.next(2, 0);
    const failed = Promise.all([a, b].map((r) => nextReload(r.cp, (x) => !!x.error)));
    pg.sql(`UPDATE netfence_policy SET text = replace(text, '10.0.0.0/16', '10.0.0.0/33'), version = version + 1; NOTIFY netfence_policy, 'default'`);
    for (const res of await failed) {
      expect(res.changed).toBe(false);
      expect(res.error?.message).toContain('postgres:netfence_policy/default:6:9: policies[0].rules[0]: NETFENCE_ERR_INVALID_CIDR');
    }
    d.subscribe('x2', { tenant: 'acme' });
    const [ack] = await d.next(1, 2);
    expect(ack!.subscribed_ack).toMatchObject({ allow_cidrs: [{ cidr: '10.0.0.0/16' }] });
    // edits validate the rule and the whole resulting policy before writing: nothing is written
    const version = pg.sql(`SELECT version FROM netfence_policy WHERE name = 'default'`);
    await expect(a.cp.addRule('acme', 'ALLOW 10.0.0.0/99')).rejects.toMatchObject({ code: 'NETFENCE_ERR_INVALID_CIDR' });
    await expect(a.cp.addRule('acme', 'ALLOW 10.9.0.0/16')).rejects.toMatchObject({ code: 'NETFENCE_ERR_POLICY_INVALID' }); // the stored /33
    expect(pg.sql(`SELECT version FROM netfence_policy WHERE name = 'default'`)).toBe(version);
  });

  it('a database restart loses no change: a replica whose change feed was down reloads when it reconnects', async () => {
    const a = await replica(POLICY);
    const b = await replica(undefined, 1500); // slow to reconnect: the change below happens while its feed is down
    const d = daemonOn(b, 'db3');
    d.sync([{ id: 'x1', metadata: { tenant: 'acme' } }]);
    await d.next(2, 0);
    await pg.stop();
    // the database is down: edits fail with a clear error, the daemons keep what they have
    await expect(a.cp.addRule('acme', 'ALLOW 198.51.100.0/24')).rejects.toMatchObject({ code: 'NETFENCE_ERR_POLICY_READ' });
    await pg.start();
    await a.cp.addRule('acme', 'ALLOW 198.51.100.0/24'); // B's feed is still reconnecting: it misses the NOTIFY
    const [cmd] = await d.next(1, 2, 15_000);
    expect(cmd).toMatchObject({ id: 'x1', command: 'allow_cidr', allow_cidr: { cidr: '198.51.100.0/24' } });
    expect(d.received).toHaveLength(3);
  });

  it('concurrent edits through two replicas both land (compare and swap, retried)', async () => {
    const a = await replica(POLICY);
    const b = await replica();
    await Promise.all([a.cp.addRule('acme', 'ALLOW 203.0.113.1'), b.cp.addRule('acme', 'ALLOW 203.0.113.2'), a.cp.addRule('acme', 'ALLOW 203.0.113.3')]);
    const text = pg.sql(`SELECT text FROM netfence_policy WHERE name = 'default'`);
    for (const ip of ['203.0.113.1', '203.0.113.2', '203.0.113.3']) expect(text).toContain(`ALLOW ${ip}`);
    expect(pg.sql(`SELECT version FROM netfence_policy WHERE name = 'default'`).trim()).toBe('4');
  });

  it('the CLI: --postgres with --policy seeds an empty database; a second replica needs only --postgres', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nf-rcp-pgcli-'));
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, POLICY);
    const silent: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined, child: () => silent };
    const first = await startFromArgv(['node', 'x', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--postgres', pg.url, '--policy', file], {}, silent);
    const second = await startFromArgv(['node', 'x', '--listen', '127.0.0.1:0'], { NETFENCE_CP_POSTGRES: pg.url }, silent);
    const client = createControlPlaneClient(`127.0.0.1:${second.grpc.port}`);
    try {
      expect(second.cp.policySet().hash).toBe(first.cp.policySet().hash);
      const d = new FakeDaemon(client, { daemonId: 'pgcli', autoAck: true }).open();
      daemons.push(d);
      d.sync([{ id: 'c1', metadata: { tenant: 'acme' } }]);
      await d.next(2, 0);
      // a rule added through the first replica's admin API reaches the second replica's daemon
      const res = await fetch(`${first.admin!.url}/v1/policies/acme/rules`, { method: 'POST', body: JSON.stringify({ rule: 'ALLOW 203.0.113.9' }) });
      expect(res.status).toBe(200);
      expect((await d.next(1, 2))[0]).toMatchObject({ command: 'allow_cidr', allow_cidr: { cidr: '203.0.113.9/32' } });
      // the file only seeds: it is not edited
      expect(readFileSync(file, 'utf8')).toBe(POLICY);
    } finally {
      client.close();
      await second.close();
      await first.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without a stored policy or a seed, naming the source', async () => {
    await expect(createPostgresPolicyStore({ connectionString: pg.url, name: 'nothing-here' })).rejects.toMatchObject({
      code: 'NETFENCE_ERR_POLICY_NOT_FOUND',
      message: expect.stringContaining('postgres:netfence_policy/nothing-here'),
    });
  });
});
