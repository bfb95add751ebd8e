// The RPC side of the client: the Connect transport (gRPC over HTTP/2, h2c or TLS/mTLS, with
// keepalive PINGs, or an injected one), the per-call headers (bearer token, extra headers) and
// the QueryDns deadline. It knows nothing of the link state or the command order.
import { readFileSync } from 'node:fs';
import type { ClientHttp2Session, ClientHttp2Stream, ClientSessionRequestOptions, OutgoingHttpHeaders, SecureClientSessionOptions } from 'node:http2';
import { create } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { Http2SessionManager, createGrpcTransport } from '@connectrpc/connect-node';
import type { GrpcTransportOptions } from '@connectrpc/connect-node';
import { ControlPlane, DnsQueryRequestSchema } from '@netfence/proto';
import type { ControlCommand, DaemonEvent, DnsQueryResponse } from '@netfence/proto';
import { ControlPlaneClientError } from './controlplane-client-error';
import type { ResolvedOptions, TlsOptions } from './options';
import type { ControlPlaneClientLogger, DnsQueryRequestInit } from './types';

type NodeHttp2ClientSessionManager = NonNullable<GrpcTransportOptions['sessionManager']>;

export interface StreamCallOptions {
  readonly signal: AbortSignal;
  /** From callHeaders(), computed by the caller before it opens the stream. */
  readonly headers: Record<string, string>;
  /** Called with the response headers (and with trailers-only responses). */
  readonly onHeader: (headers: Headers) => void;
}

/** The two RPCs of ControlPlane, with the client's headers and deadlines applied. */
export interface ControlPlaneRpc {
  /** Request headers of one call: `headers` plus `authorization: Bearer …` (token computed per call). */
  callHeaders(): Promise<Record<string, string>>;
  /** Opens ControlPlane.Connect: `outbound` is the request stream, the result the response stream. */
  connect(outbound: AsyncIterable<DaemonEvent>, opts: StreamCallOptions): AsyncIterable<ControlCommand>;
  /** ControlPlane.QueryDns with a deadline; NETFENCE_ERR_DEADLINE when it passes. */
  queryDns(req: DnsQueryRequestInit, deadlineMs: number, signal: AbortSignal | undefined): Promise<DnsQueryResponse>;
  /** Closes the HTTP/2 session (nothing with an injected transport). */
  close(): void;
}

/**
 * Creates the RPC side. With `transport` unset it builds a gRPC transport over its own HTTP/2
 * session (TLS files read now: NETFENCE_ERR_TLS when one cannot be read).
 */
export function createControlPlaneRpc(o: ResolvedOptions): ControlPlaneRpc {
  let transport = o.transport;
  let sessionManager: Http2SessionManager | undefined;
  if (transport === undefined) {
    sessionManager = new Http2SessionManager(o.url, o.keepalive, tlsNodeOptions(o.tls));
    transport = createGrpcTransport({ baseUrl: o.url, sessionManager: guardSessions(sessionManager, o.log) });
  }
  const client: Client<typeof ControlPlane> = createClient(ControlPlane, transport);

  const callHeaders = async (): Promise<Record<string, string>> => {
    const h: Record<string, string> = { ...o.headers };
    const t = o.bearerToken;
    if (t !== undefined) {
      const token = typeof t === 'function' ? await t() : t;
      h['authorization'] = `Bearer ${token}`;
    }
    return h;
  };

  return {
    callHeaders,
    connect: (outbound, opts) => client.connect(outbound, opts),
    async queryDns(req, deadlineMs, signal) {
      try {
        const callOpts: { timeoutMs: number; headers: Record<string, string>; signal?: AbortSignal } = {
          timeoutMs: deadlineMs,
          headers: await callHeaders(),
        };
        if (signal) callOpts.signal = signal;
        return await client.queryDns(create(DnsQueryRequestSchema, req), callOpts);
      } catch (err) {
        const e = ControlPlaneClientError.from(err);
        if (e.code === 'NETFENCE_ERR_DEADLINE') {
          throw new ControlPlaneClientError('NETFENCE_ERR_DEADLINE', `QueryDns exceeded its ${deadlineMs} ms deadline`, {
            cause: err,
            rpcCode: e.rpcCode,
          });
        }
        throw e;
      }
    },
    close() {
      sessionManager?.abort();
    },
  };
}

function tlsNodeOptions(t: TlsOptions | undefined): SecureClientSessionOptions | undefined {
  if (t === undefined) return undefined;
  const read = (file: string | undefined, inline: string | Buffer | undefined, what: string): string | Buffer | undefined => {
    if (inline !== undefined) return inline;
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ControlPlaneClientError('NETFENCE_ERR_TLS', `cannot read TLS ${what} file ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const ca = read(t.caFile, t.ca, 'CA');
  const cert = read(t.certFile, t.cert, 'certificate');
  const key = read(t.keyFile, t.key, 'key');
  if ((cert === undefined) !== (key === undefined)) {
    throw new ControlPlaneClientError('NETFENCE_ERR_TLS', 'a client certificate needs its key and vice versa (mTLS)');
  }
  const out: SecureClientSessionOptions = {};
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (key !== undefined) out.key = key;
  if (t.serverName !== undefined) out.servername = t.serverName;
  return out;
}

/**
 * Wraps the session manager so that every HTTP/2 session and stream it hands out has an
 * 'error' listener. The manager detaches its own listener when it leaves a connection's state,
 * and a session destroyed by a keepalive timeout emits 'error' on a later tick: under load
 * that error could find no listener and become an uncaught exception in the daemon. The
 * errors themselves still reach the call through connect-node's own listeners.
 */
function guardSessions(inner: Http2SessionManager, log: ControlPlaneClientLogger): NodeHttp2ClientSessionManager {
  const guarded = new WeakSet<ClientHttp2Session>();
  const onSessionError = (err: unknown): void => log.debug({ err }, 'http/2 session error');
  const ignore = (): void => {};
  return {
    authority: inner.authority,
    async request(
      method: string,
      path: string,
      headers: OutgoingHttpHeaders,
      options: Omit<ClientSessionRequestOptions, 'signal'>,
    ): Promise<ClientHttp2Stream> {
      const stream = await inner.request(method, path, headers, options);
      stream.on('error', ignore);
      const session = stream.session as ClientHttp2Session | undefined;
      if (session && !guarded.has(session)) {
        guarded.add(session);
        session.on('error', onSessionError);
      }
      return stream;
    },
    notifyResponseByteRead(stream: ClientHttp2Stream): void {
      inner.notifyResponseByteRead(stream);
    },
  };
}
