// Behaviour against a real HTTP/2 server on 127.0.0.1 (connect-node adapter): h2c, TLS/mTLS,
// bearer token, restarts, flapping, a silent peer (keepalive), QueryDns deadlines.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PolicyMode } from '@netfence/proto';
import type { ControlCommand } from '@netfence/proto';
import { FakeControlPlane, FakeServer, sleep, waitUntil } from '../test/fake-control-plane';
import type { TlsFiles } from '../test/fake-control-plane';
import { ControlPlaneClientError, createControlPlaneClient } from './index';
import type { ControlPlaneClient, ControlPlaneClientOptions, ControlPlaneConnectionState, StateChangeInfo } from './index';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(cp = new FakeControlPlane(), tls?: { files: TlsFiles; requireClientCert: boolean }): Promise<FakeServer> {
  const server = new FakeServer(cp, tls);
  await server.start();
  cleanups.push(async () => {
    cp.dispose();
    await server.stop();
  });
  return server;
}

interface Run {
  client: ControlPlaneClient;
  received: ControlCommand[];
  states: { state: ControlPlaneConnectionState; info: StateChangeInfo; at: number }[];
}

function connect(url: string, over: Partial<ControlPlaneClientOptions> = {}): Run {
  const received: ControlCommand[] = [];
  const states: Run['states'] = [];
  const client = createControlPlaneClient({
    url,
    daemonId: 'd-1',
    hostname: 'host-1',
    syncState: () => ({ attachments: [{ id: 'a0', target: 'veth0' }] }),
    onCommand: (cmd) => {
      received.push(cmd);
    },
    heartbeatIntervalMs: 0,
    subscribeAckTimeoutMs: 1000,
    backoff: { initialMs: 10, maxMs: 200, jitter: false },
    keepalive: { pingIntervalMs: 100, pingTimeoutMs: 100 },
    closeTimeoutMs: 300,
    onStateChange: (state, info) => states.push({ state, info, at: Date.now() }),
    ...over,
  });
  cleanups.push(() => client.close());
  return { client, received, states };
}

describe('over a real HTTP/2 server (h2c)', () => {
  test('sync, subscribe, commands with nonce, queryDns', async () => {
    const server = await startServer();
    const cp = server.cp;
    const r = connect(server.url);
    const s = await cp.waitForStream(1);
    await waitUntil(() => r.client.state === 'connected');
    const ack = await r.client.subscribe({ id: 'a1', target: 'veth1', dnsAddress: '10.200.0.1:53' });
    expect(ack.command.case).toBe('subscribedAck');
    s.send({ id: 'a1', nonce: 'n1', command: { case: 'setMode', value: { mode: PolicyMode.BLOCK_ALL } } });
    await waitUntil(() => s.cases().includes('commandResult'));
    expect(s.cases()).toEqual(['sync', 'subscribed', 'commandResult']);
    expect(r.received.map((c) => c.command.case)).toEqual(['syncAck', 'setMode']);
    cp.dns = async (req) => ({ allow: true, ips: ['203.0.113.1'], addToFilter: req.queryType === 'A' });
    await expect(r.client.queryDns({ id: 'a1', domain: 'x.test', queryType: 'A' })).resolves.toMatchObject({
      allow: true,
      addToFilter: true,
      ips: ['203.0.113.1'],
    });
  });

  test('server restart mid-stream: reconnects, SyncRequest first, pending Subscribed re-sent', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = (sub) => (sub.id === 'late' ? false : 0);
    const server = await startServer(cp);
    const r = connect(server.url, { subscribeAckTimeoutMs: 3000 });
    const s1 = await cp.waitForStream(1);
    await waitUntil(() => r.client.state === 'connected');
    const pending = r.client.subscribe({ id: 'late' });
    await waitUntil(() => s1.cases().includes('subscribed'));
    cp.subscribedAckDelay = () => 0; // the restarted control plane acks
    await server.restart(50);
    const s2 = await cp.waitForStream(2, 3000);
    await s2.waitForEvents(2);
    expect(s2.cases().slice(0, 2)).toEqual(['sync', 'subscribed']);
    await expect(pending).resolves.toMatchObject({ id: 'late' });
    await waitUntil(() => r.client.state === 'connected');
    const seq = r.states.map((x) => x.state);
    expect(seq.slice(0, 3)).toEqual(['connecting', 'connected', 'disconnected']);
    expect(seq[seq.length - 1]).toBe('connected');
  });

  test('connect-node sends no headers before the first message: connected comes with the first command', async () => {
    const cp = new FakeControlPlane();
    cp.autoSyncAck = false;
    const server = await startServer(cp);
    const r = connect(server.url);
    await cp.waitForStream(1);
    await sleep(700);
    expect(r.client.state).toBe('connecting');
    cp.last.send({ id: '', command: { case: 'syncAck', value: {} } });
    await waitUntil(() => r.client.state === 'connected', 2000);
    expect(cp.last.cases()).toEqual(['sync']);
  });

  test('slow ack resolves; missing ack rejects at the timeout', async () => {
    const cp = new FakeControlPlane();
    cp.subscribedAckDelay = (sub) => (sub.id === 'slow' ? 120 : false);
    const server = await startServer(cp);
    const r = connect(server.url, { subscribeAckTimeoutMs: 300 });
    await expect(r.client.subscribe({ id: 'slow' })).resolves.toMatchObject({ id: 'slow' });
    const t0 = Date.now();
    const err = await r.client.subscribe({ id: 'never' }).catch((e: unknown) => e);
    expect((err as ControlPlaneClientError).code).toBe('NETFENCE_ERR_ACK_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  test('reconnect storm: converges, never two streams, no duplicate delivery, backoff grows while down', async () => {
    const cp = new FakeControlPlane();
    const server = await startServer(cp);
    const r = connect(server.url, { stableAfterMs: 10_000 });
    await cp.waitForStream(1);
    for (let i = 0; i < 5; i++) {
      await server.restart(i % 2 === 0 ? 0 : 30);
      await sleep(15);
    }
    // A longer outage: connection refused, repeatedly.
    await server.stop();
    const mark = r.states.length;
    await sleep(500);
    const downDelays = r.states
      .slice(mark)
      .filter((x) => x.state === 'disconnected')
      .map((x) => x.info.retryInMs ?? 0);
    expect(downDelays.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < downDelays.length; i++) expect(downDelays[i]).toBeGreaterThanOrEqual(downDelays[i - 1] as number);
    expect(downDelays[downDelays.length - 1]).toBeGreaterThan(downDelays[0] as number);
    expect(Math.max(...downDelays)).toBeLessThanOrEqual(200);
    await server.start();
    await waitUntil(() => r.client.state === 'connected', 3000);
    expect(cp.maxActive).toBe(1);
    for (const s of cp.streams) {
      await s.waitForEvents(1);
      expect(s.events[0]?.event.case).toBe('sync');
    }
    const live = cp.last;
    live.send({ id: 'a0', nonce: 'once', command: { case: 'removeCidr', value: '10.200.1.0/24' } });
    await waitUntil(() => live.cases().includes('commandResult'));
    await sleep(50);
    expect(r.received.filter((c) => c.nonce === 'once')).toHaveLength(1);
    expect(live.cases().filter((c) => c === 'commandResult')).toHaveLength(1);
  });

  test('a silent peer is noticed by HTTP/2 keepalive within pingInterval + pingTimeout', async () => {
    const server = await startServer();
    const cp = server.cp;
    // A TCP relay that can go silent (drops bytes both ways, keeps the sockets open).
    let silent = false;
    const sockets = new Set<net.Socket>();
    const relay = net.createServer((c) => {
      const u = net.connect(server.port, '127.0.0.1');
      sockets.add(c).add(u);
      c.on('data', (d) => (silent ? undefined : u.write(d)));
      u.on('data', (d) => (silent ? undefined : c.write(d)));
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
      c.on('close', () => u.destroy());
      u.on('close', () => c.destroy());
    });
    await new Promise<void>((res) => relay.listen(0, '127.0.0.1', () => res()));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => relay.close(() => res()));
    });
    const port = (relay.address() as net.AddressInfo).port;
    const r = connect(`http://127.0.0.1:${port}`, { keepalive: { pingIntervalMs: 50, pingTimeoutMs: 100 } });
    await cp.waitForStream(1);
    await waitUntil(() => r.client.state === 'connected');
    const t0 = Date.now();
    silent = true;
    await waitUntil(() => r.client.state !== 'connected', 2000, 'dead peer detection');
    const took = Date.now() - t0;
    expect(took).toBeLessThan(1000);
    silent = false;
    await waitUntil(() => r.client.state === 'connected' && cp.streams.length >= 2, 3000, 'reconnect through relay');
    expect(cp.last.events[0]?.event.case).toBe('sync');
  });

  test('queryDns deadline against a real server', async () => {
    // connect-node's server adapter logs the write to the cancelled stream; keep it quiet.
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    cleanups.push(() => quiet.mockRestore());
    const server = await startServer();
    server.cp.dns = async (_req, ctx) => {
      await new Promise((res) => {
        const t = setTimeout(res, 400);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          res(undefined);
        });
      });
      return { allow: true };
    };
    const r = connect(server.url);
    const t0 = Date.now();
    const err = await r.client.queryDns({ domain: 'slow.test' }, { deadlineMs: 60 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlPlaneClientError);
    expect((err as ControlPlaneClientError).code).toBe('NETFENCE_ERR_DEADLINE');
    expect(Date.now() - t0).toBeLessThan(350);
  });

  test('unreachable control plane: queryDns fails NETFENCE_ERR_UNAVAILABLE', async () => {
    const server = await startServer();
    const url = server.url;
    await server.stop();
    const r = connect(url);
    await expect(r.client.queryDns({ domain: 'x.test' })).rejects.toMatchObject({ code: 'NETFENCE_ERR_UNAVAILABLE' });
    await waitUntil(() => r.states.some((x) => x.state === 'disconnected'));
    expect(r.states.find((x) => x.state === 'disconnected')?.info.error?.code).toBe('NETFENCE_ERR_UNAVAILABLE');
  });

  test('bearer token is checked by the server', async () => {
    const cp = new FakeControlPlane();
    cp.requiredToken = 'tok-1';
    const server = await startServer(cp);
    const bad = connect(server.url, { bearerToken: 'nope' });
    await waitUntil(() => bad.states.some((x) => x.state === 'disconnected'));
    expect(bad.states.find((x) => x.state === 'disconnected')?.info.error?.code).toBe('NETFENCE_ERR_UNAUTHENTICATED');
    expect(bad.states.some((x) => x.state === 'connected')).toBe(false);
    await bad.client.close();
    expect(cp.streams.length).toBe(0);
    const good = connect(server.url, { bearerToken: 'tok-1' });
    const s = await cp.waitForStream(1);
    expect(s.headers.get('authorization')).toBe('Bearer tok-1');
    await waitUntil(() => good.client.state === 'connected');
    await expect(good.client.queryDns({ domain: 'ok.test' })).resolves.toMatchObject({ allow: true });
  });
});

describe('over TLS with a test CA (openssl)', () => {
  let dir: string;
  let files: TlsFiles;
  let otherCa: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nf-cpc-tls-'));
    const ossl = (...args: string[]): void => {
      execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=netfence-test-ca');
    ossl('req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '1', '-subj', '/CN=other-ca');
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    for (const who of ['server', 'client']) {
      ossl('req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=netfence-test-${who}`);
      ossl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.pem`, '-days', '1', '-extfile', `${who}.ext`);
    }
    files = {
      ca: join(dir, 'ca.pem'),
      cert: join(dir, 'server.pem'),
      key: join(dir, 'server.key'),
      clientCert: join(dir, 'client.pem'),
      clientKey: join(dir, 'client.key'),
    };
    otherCa = join(dir, 'other-ca.pem');
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('mTLS: client with CA + cert connects, subscribes and queries DNS', async () => {
    const server = await startServer(new FakeControlPlane(), { files, requireClientCert: true });
    expect(server.url.startsWith('https://')).toBe(true);
    const r = connect(server.url, { tls: { caFile: files.ca, certFile: files.clientCert, keyFile: files.clientKey } });
    await waitUntil(() => r.client.state === 'connected', 3000);
    await expect(r.client.subscribe({ id: 't1' })).resolves.toMatchObject({ id: 't1' });
    await expect(r.client.queryDns({ domain: 'ok.test' })).resolves.toMatchObject({ allow: true });
    expect(server.cp.last.events[0]?.event.case).toBe('sync');
  });

  test('mTLS: client without a certificate is refused; server cert from an unknown CA is refused', async () => {
    const server = await startServer(new FakeControlPlane(), { files, requireClientCert: true });
    const noCert = connect(server.url, { tls: { caFile: files.ca } });
    const wrongCa = connect(server.url, { tls: { caFile: otherCa, certFile: files.clientCert, keyFile: files.clientKey } });
    await waitUntil(() => noCert.states.some((x) => x.state === 'disconnected'), 3000);
    await waitUntil(() => wrongCa.states.some((x) => x.state === 'disconnected'), 3000);
    await sleep(50);
    // The server's certificate is not trusted: the client names it a TLS failure.
    expect(wrongCa.states.find((x) => x.state === 'disconnected')?.info.error?.code).toBe('NETFENCE_ERR_TLS');
    expect(noCert.client.state).not.toBe('connected');
    expect(wrongCa.client.state).not.toBe('connected');
    expect(server.cp.streams.length).toBe(0);
  });

  test('TLS without client certificate (server does not ask for one)', async () => {
    const server = await startServer(new FakeControlPlane(), { files, requireClientCert: false });
    const r = connect(server.url, { tls: { caFile: files.ca } });
    await waitUntil(() => r.client.state === 'connected', 3000);
    expect(server.cp.streams.length).toBe(1);
  });
});
