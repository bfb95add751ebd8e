// The netfence.v1 ControlPlane service: Connect (one Session per stream) and QueryDns, behind
// the bearer-token interceptor when tokens are set.

import { Code, ConnectError, createContextKey } from '@connectrpc/connect';
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect';
import { ControlPlane as ControlPlaneService } from '@netfence/proto';
import type { ControlCommand, DaemonEvent, DnsQueryRequest } from '@netfence/proto';
import { authInterceptor } from './auth';
import type { TokenCheck } from './auth';
import type { Logger } from './logger';
import type { ControlPlaneMetrics } from './metrics';
import type { QueryDns } from './query-dns';
import type { Sessions } from './sessions';

/** The peer address of a call, set by the server (servers.ts) in the handler context. */
export const PEER_KEY = createContextKey<string>('');

export interface RoutesOptions {
  readonly sessions: Sessions;
  readonly queryDns: QueryDns;
  readonly tokens: TokenCheck;
  readonly metrics: ControlPlaneMetrics;
  readonly log: Logger;
  readonly isClosed: () => boolean;
}

export function createRoutes(opts: RoutesOptions): (router: ConnectRouter) => void {
  const { sessions, log } = opts;

  /** One daemon stream: events in are applied as they come; the session's queue goes out. */
  async function* connect(requests: AsyncIterable<DaemonEvent>, ctx: HandlerContext): AsyncGenerator<ControlCommand> {
    if (opts.isClosed()) throw new ConnectError('control plane is closing', Code.Unavailable);
    const s = sessions.open(ctx.values.get(PEER_KEY));
    log.debug({ session: s.id, peer: s.peer }, 'stream opened');
    const onAbort = (): void => sessions.end(s);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    void (async () => {
      try {
        for await (const ev of requests) {
          if (s.ended) break;
          sessions.handle(s, ev);
        }
      } catch (e) {
        log.debug({ session: s.id, err: String(e) }, 'stream read ended with error');
      } finally {
        sessions.end(s);
      }
    })();
    try {
      yield* s.outgoing();
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      sessions.end(s);
    }
  }

  const interceptors = opts.tokens.enabled ? [authInterceptor(opts.tokens, () => opts.metrics.authFailures.inc())] : undefined;
  return (router) => {
    router.service(
      ControlPlaneService,
      {
        connect,
        queryDns: (req: DnsQueryRequest) => opts.queryDns({ id: req.id, domain: req.domain, queryType: req.queryType }),
      },
      interceptors ? { interceptors } : {},
    );
  };
}
