// Wire compatibility with a control plane that is not Connect: a @grpc/grpc-js server
// loading the .proto sources (root devDependency, test only).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoRoot } from '@netfence/proto';
import { waitUntil } from '../test/fake-control-plane';
import { createControlPlaneClient } from './index';
import type { ControlCommand } from '@netfence/proto';

interface PlainEvent {
  sync?: { daemonId: string; attachments: { id: string }[] };
  subscribed?: { id: string; dnsAddress: string };
  commandResult?: { nonce: string; ok: boolean; errorCode: string };
}

test('talks to a @grpc/grpc-js ControlPlane server (bidi + unary)', async () => {
  const def = protoLoader.loadSync('netfence/v1/control.proto', {
    includeDirs: [protoRoot],
    keepCase: false,
    longs: String,
    enums: Number,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    netfence: { v1: { ControlPlane: { service: grpc.ServiceDefinition } } };
  };
  const events: PlainEvent[] = [];
  let call: grpc.ServerDuplexStream<PlainEvent, unknown> | undefined;
  const server = new grpc.Server();
  server.addService(pkg.netfence.v1.ControlPlane.service, {
    connect: (c: grpc.ServerDuplexStream<PlainEvent, unknown>) => {
      call = c;
      // Headers right away, and no SyncAck: the client turns 'connected' once the stream
      // has had its headers for a while without failing.
      c.sendMetadata(new grpc.Metadata());
      c.on('data', (ev: PlainEvent) => {
        events.push(ev);
        if (ev.subscribed) c.write({ id: ev.subscribed.id, subscribedAck: { mode: 2, allowCidrs: [{ cidr: '10.200.0.0/16' }] } });
      });
      c.on('end', () => c.end());
      c.on('error', () => undefined);
    },
    queryDns: (
      c: grpc.ServerUnaryCall<{ domain: string }, unknown>,
      cb: grpc.sendUnaryData<{ allow: boolean; ips: string[]; ttlSeconds: number }>,
    ) => cb(null, { allow: c.request.domain === 'ok.test', ips: ['203.0.113.4'], ttlSeconds: 60 }),
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );
  const received: ControlCommand[] = [];
  const client = createControlPlaneClient({
    url: `http://127.0.0.1:${port}`,
    daemonId: 'd-grpc',
    hostname: 'h',
    syncState: () => ({ attachments: [{ id: 'a0' }] }),
    onCommand: (cmd) => {
      received.push(cmd);
      if (cmd.command.case === 'denyCidr') throw Object.assign(new Error('nope'), { code: 'NETFENCE_ERR_INVALID_CIDR' });
    },
    heartbeatIntervalMs: 0,
    backoff: { initialMs: 10, maxMs: 100 },
    closeTimeoutMs: 300,
  });
  try {
    const t0 = Date.now();
    await waitUntil(() => client.state === 'connected', 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(received).toHaveLength(0);
    const ack = await client.subscribe({ id: 'a1', dnsAddress: '10.200.0.1:53' });
    expect(ack.command.case).toBe('subscribedAck');
    if (ack.command.case !== 'subscribedAck') throw new Error('unreachable');
    expect(ack.command.value.allowCidrs[0]?.cidr).toBe('10.200.0.0/16');
    expect(events[0]?.sync?.daemonId).toBe('d-grpc');
    expect(events[0]?.sync?.attachments.map((a) => a.id)).toEqual(['a0']);
    expect(events[1]?.subscribed).toMatchObject({ id: 'a1', dnsAddress: '10.200.0.1:53' });
    call?.write({ id: 'a1', nonce: 'n-9', denyCidr: { cidr: 'bad' } });
    await waitUntil(() => events.some((e) => e.commandResult !== undefined && e.commandResult !== null));
    expect(events.find((e) => e.commandResult)?.commandResult).toMatchObject({ nonce: 'n-9', ok: false, errorCode: 'NETFENCE_ERR_INVALID_CIDR' });
    await expect(client.queryDns({ domain: 'ok.test', queryType: 'A' })).resolves.toMatchObject({ allow: true, ips: ['203.0.113.4'], ttlSeconds: 60 });
    expect(received.map((c) => c.command.case)).toEqual(['denyCidr']);
  } finally {
    await client.close();
    server.forceShutdown();
  }
});
