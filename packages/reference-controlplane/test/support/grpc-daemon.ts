// An independent netfence.v1 daemon simulator built on @grpc/grpc-js and
// @grpc/proto-loader (no protobuf-es, no connect): it loads the .proto files
// directly, so tests check the wire, not our own generated code.

import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_DIR = join(__dirname, '..', '..', '..', '..', 'proto');

/** A command as proto-loader decodes it (keepCase, enums as strings, oneofs named). */
export interface WireCommand {
  id: string;
  nonce: string;
  command: string;
  [k: string]: unknown;
}

let cachedPkg: any;
export function loadNetfence(): any {
  if (!cachedPkg) {
    const def = protoLoader.loadSync(['netfence/v1/control.proto', 'netfence/v1/types.proto'], {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    cachedPkg = grpc.loadPackageDefinition(def);
  }
  return cachedPkg.netfence.v1;
}

export function createControlPlaneClient(address: string, creds?: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): grpc.Client {
  const v1 = loadNetfence();
  return new v1.ControlPlane(address, creds ?? grpc.credentials.createInsecure(), options);
}

export interface FakeDaemonOptions {
  readonly daemonId: string;
  readonly hostname?: string;
  readonly metadata?: Record<string, string>;
  readonly token?: string;
  /** Answer every command carrying a nonce with a CommandResult (ok unless nack() says otherwise). */
  readonly autoAck?: boolean;
  readonly nack?: (cmd: WireCommand) => { code: string; message: string } | undefined;
}

export class FakeDaemon {
  readonly received: WireCommand[] = [];
  readonly errors: grpc.ServiceError[] = [];
  ended = false;
  private call: grpc.ClientDuplexStream<any, any> | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    readonly client: grpc.Client,
    readonly opts: FakeDaemonOptions,
  ) {}

  open(): this {
    const md = new grpc.Metadata();
    if (this.opts.token) md.set('authorization', `Bearer ${this.opts.token}`);
    const call = (this.client as any).Connect(md) as grpc.ClientDuplexStream<any, any>;
    this.call = call;
    call.on('data', (cmd: WireCommand) => {
      this.received.push(cmd);
      if (this.opts.autoAck && cmd.nonce) {
        const bad = this.opts.nack?.(cmd);
        call.write({
          command_result: {
            nonce: cmd.nonce,
            attachment_id: cmd.id,
            ok: !bad,
            error_code: bad?.code ?? '',
            error_message: bad?.message ?? '',
          },
        });
      }
      this.notify();
    });
    call.on('error', (e: grpc.ServiceError) => {
      this.errors.push(e);
      this.notify();
    });
    call.on('end', () => {
      this.ended = true;
      this.notify();
    });
    call.on('status', () => this.notify());
    return this;
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(ev: unknown): void {
    if (!this.call) throw new Error('not open');
    this.call.write(ev);
  }

  sync(attachments: { id: string; target?: string; metadata?: Record<string, string> }[]): void {
    this.write({
      sync: {
        daemon_id: this.opts.daemonId,
        hostname: this.opts.hostname ?? `host-${this.opts.daemonId}`,
        metadata: this.opts.metadata ?? {},
        attachments: attachments.map((a) => ({
          id: a.id,
          target: a.target ?? `veth-${a.id}`,
          type: 'ATTACHMENT_TYPE_TC',
          mode: 'POLICY_MODE_DISABLED',
          dns_mode: 'DNS_MODE_DISABLED',
          metadata: a.metadata ?? {},
        })),
      },
    });
  }

  subscribe(id: string, metadata: Record<string, string> = {}): void {
    this.write({
      subscribed: {
        id,
        target: `veth-${id}`,
        type: 'ATTACHMENT_TYPE_TC',
        mode: 'POLICY_MODE_DISABLED',
        dns_mode: 'DNS_MODE_DISABLED',
        dns_address: '10.200.0.1:53',
        metadata,
      },
    });
  }

  unsubscribe(id: string): void {
    this.write({ unsubscribed: { id, reason: 'UNSUBSCRIBE_REASON_DETACHED', error: '' } });
  }

  heartbeat(stats: { id: string; packets_allowed?: number; packets_blocked?: number; dns_queries_allowed?: number; dns_queries_blocked?: number }[]): void {
    this.write({ heartbeat: { stats } });
  }

  /** Waits until `pred` holds over the received commands (or the stream failed). */
  async waitFor<T>(pred: (cmds: WireCommand[]) => T | undefined | false, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred(this.received);
      if (v !== undefined && v !== false) return v;
      if (this.errors.length > 0) throw this.errors[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting; received: ${JSON.stringify(this.received.map((c) => [c.id, c.command]))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 20));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for `n` commands after index `from`. */
  async next(n: number, from: number, timeoutMs = 5000): Promise<WireCommand[]> {
    return this.waitFor((c) => (c.length >= from + n ? c.slice(from, from + n) : undefined), timeoutMs);
  }

  /** Waits until the stream has failed or ended. */
  async closed(timeoutMs = 5000): Promise<grpc.ServiceError | undefined> {
    await this.waitFor(() => this.errors.length > 0 || this.ended || undefined, timeoutMs);
    return this.errors[0];
  }

  close(): void {
    try {
      this.call?.end();
      this.call?.cancel();
    } catch {
      /* already closed */
    }
  }
}

export function queryDns(client: grpc.Client, req: { id: string; domain: string; query_type?: string }, token?: string): Promise<any> {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    (client as any).QueryDns({ query_type: 'A', ...req }, md, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
  });
}
