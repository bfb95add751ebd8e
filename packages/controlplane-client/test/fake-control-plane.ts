// Test-only fake ControlPlane: records every stream and its DaemonEvents, lets a test push
// ControlCommands, answers SyncAck and (optionally delayed) SubscribedAck automatically.
// Served either through createRouterTransport (in memory) or a real HTTP/2 server.
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createRouterTransport } from '@connectrpc/connect';
import type { ConnectRouter, HandlerContext, ServiceImpl, Transport } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { ControlCommandSchema, ControlPlane, DnsQueryResponseSchema } from '@netfence/proto';
import type { ControlCommand, DaemonEvent, DnsQueryRequest, DnsQueryResponse, Subscribed } from '@netfence/proto';

export type ControlCommandInit = MessageInitShape<typeof ControlCommandSchema>;

export async function waitUntil(pred: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Channel<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiter: (() => void) | undefined;
  closed = false;
  push(v: T): void {
    if (this.closed) return;
    this.items.push(v);
    this.waiter?.();
  }
  close(): void {
    this.closed = true;
    this.waiter?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const v = this.items.shift();
      if (v !== undefined) {
        yield v;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
  }
}

export class FakeStream {
  readonly events: DaemonEvent[] = [];
  readonly channel = new Channel<ControlCommand>();
  requestEnded = false;
  responseEnded = false;
  constructor(
    readonly index: number,
    readonly headers: Headers,
  ) {}
  send(cmd: ControlCommandInit): void {
    this.channel.push(create(ControlCommandSchema, cmd));
  }
  end(): void {
    this.channel.close();
  }
  cases(): string[] {
    return this.events.map((e) => e.event.case ?? 'none');
  }
  waitForEvents(n: number, timeoutMs = 2000): Promise<void> {
    return waitUntil(() => this.events.length >= n, timeoutMs, `${n} events on stream ${this.index} (have ${this.cases().join(',')})`);
  }
}

export class FakeControlPlane {
  readonly streams: FakeStream[] = [];
  active = 0;
  maxActive = 0;
  autoSyncAck = true;
  /** Delay (ms) before acking a Subscribed; false = never ack. */
  subscribedAckDelay: (s: Subscribed) => number | false = () => 0;
  subscribedAck: (s: Subscribed) => ControlCommandInit = (s) => ({
    id: s.id,
    command: { case: 'subscribedAck', value: { mode: 2 } },
  });
  requiredToken: string | undefined;
  /** While true, Connect fails with Unavailable (the control plane is "down"). */
  down = false;
  dns: (req: DnsQueryRequest, ctx: HandlerContext) => Promise<MessageInitShape<typeof DnsQueryResponseSchema>> = async () => ({
    allow: true,
  });
  readonly dnsHeaders: Headers[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  get last(): FakeStream {
    const s = this.streams[this.streams.length - 1];
    if (!s) throw new Error('no stream yet');
    return s;
  }

  waitForStream(count: number, timeoutMs = 2000): Promise<FakeStream> {
    return waitUntil(() => this.streams.length >= count, timeoutMs, `stream #${count}`).then(() => this.streams[count - 1] as FakeStream);
  }

  /** Ends every open response stream (the server side of a restart). */
  endAll(): void {
    for (const s of this.streams) s.end();
  }

  dispose(): void {
    for (const t of this.timers) clearTimeout(t);
    this.endAll();
  }

  private checkAuth(ctx: HandlerContext): void {
    if (this.requiredToken !== undefined && ctx.requestHeader.get('authorization') !== `Bearer ${this.requiredToken}`) {
      throw new ConnectError('bad or missing bearer token', Code.Unauthenticated);
    }
  }

  impl(): ServiceImpl<typeof ControlPlane> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    return {
      async *connect(requests: AsyncIterable<DaemonEvent>, ctx: HandlerContext): AsyncGenerator<ControlCommand> {
        self.checkAuth(ctx);
        if (self.down) throw new ConnectError('control plane down', Code.Unavailable);
        const stream = new FakeStream(self.streams.length, ctx.requestHeader);
        self.streams.push(stream);
        self.active++;
        self.maxActive = Math.max(self.maxActive, self.active);
        const onAbort = (): void => stream.end();
        ctx.signal.addEventListener('abort', onAbort);
        void (async () => {
          try {
            for await (const ev of requests) {
              stream.events.push(ev);
              self.onEvent(stream, ev);
            }
          } catch {
            // client went away
          } finally {
            stream.requestEnded = true;
            stream.end();
          }
        })();
        try {
          for await (const cmd of stream.channel) yield cmd;
        } finally {
          stream.responseEnded = true;
          ctx.signal.removeEventListener('abort', onAbort);
          self.active--;
        }
      },
      async queryDns(req: DnsQueryRequest, ctx: HandlerContext): Promise<DnsQueryResponse> {
        self.checkAuth(ctx);
        self.dnsHeaders.push(ctx.requestHeader);
        return create(DnsQueryResponseSchema, await self.dns(req, ctx));
      },
    };
  }

  routes = (router: ConnectRouter): void => {
    router.service(ControlPlane, this.impl());
  };

  transport(): Transport {
    return createRouterTransport(this.routes);
  }

  private onEvent(stream: FakeStream, ev: DaemonEvent): void {
    if (ev.event.case === 'sync' && this.autoSyncAck) {
      stream.send({ id: '', command: { case: 'syncAck', value: {} } });
    }
    if (ev.event.case === 'subscribed') {
      const sub = ev.event.value;
      const d = this.subscribedAckDelay(sub);
      if (d === false) return;
      const ack = this.subscribedAck(sub);
      if (d === 0) stream.send(ack);
      else {
        const t = setTimeout(() => {
          this.timers.delete(t);
          stream.send(ack);
        }, d);
        this.timers.add(t);
      }
    }
  }
}

export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/**
 * A real HTTP/2 server (h2c, or TLS when `tls` is given) serving a FakeControlPlane on
 * 127.0.0.1. restart() kills every connection and listens again on the same port.
 */
export class FakeServer {
  private server: http2.Http2Server | http2.Http2SecureServer | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  port = 0;

  constructor(
    readonly cp: FakeControlPlane,
    private readonly tls?: { files: TlsFiles; requireClientCert: boolean },
  ) {}

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const handler = connectNodeAdapter({ routes: this.cp.routes });
    const server = this.tls
      ? http2.createSecureServer(
          {
            key: readFileSync(this.tls.files.key),
            cert: readFileSync(this.tls.files.cert),
            ca: readFileSync(this.tls.files.ca),
            requestCert: this.tls.requireClientCert,
            rejectUnauthorized: this.tls.requireClientCert,
          },
          handler,
        )
      : http2.createServer(handler);
    server.on('session', (s: http2.ServerHttp2Session) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Kills every connection (no goodbye) and stops listening. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.cp.endAll();
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await sleep(downMs);
    await this.start();
  }
}
