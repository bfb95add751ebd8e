// The reference control plane: ControlPlane.Connect / QueryDns driven by a YAML policy file,
// with minimal-diff pushes, nonce ACK/NACK tracking, an admin HTTP API and Prometheus metrics.
// This factory only composes the parts; see the README's "How it is built".

import { EventEmitter } from 'node:events';
import type * as http from 'node:http';
import { createAdminHandler } from './admin';
import { createTokenCheck } from './auth';
import { createFanOut } from './fan-out';
import { createFilePolicySource } from './file-policy-source';
import { createInlinePolicySource } from './inline-policy-source';
import { childLogger, noopLogger } from './logger';
import type { Logger } from './logger';
import { ControlPlaneMetrics } from './metrics';
import { NO_MATCH_CONFIG, selectPolicy } from './policy-file';
import type { PolicyDocument } from './policy-file';
import { createPolicyReloader } from './policy-reloader';
import type { PolicySource } from './policy-source';
import { createQueryDns } from './query-dns';
import { createRoutes } from './rpc';
import { createServers } from './servers';
import { createSessions } from './sessions';
import type { PolicyFor } from './sessions';
import { createStorePolicySource, isPolicyStore } from './store-policy-source';
import type { ControlPlane, ControlPlaneOptions } from './types';

function policySourceOf(opts: ControlPlaneOptions, log: Logger): PolicySource {
  if (typeof opts.policy === 'string') {
    return createFilePolicySource(opts.policy, {
      log,
      ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
      ...(opts.fsWatch !== undefined ? { fsWatch: opts.fsWatch } : {}),
      ...(opts.pollIntervalMs !== undefined ? { pollIntervalMs: opts.pollIntervalMs } : {}),
    });
  }
  if (isPolicyStore(opts.policy)) return createStorePolicySource(opts.policy, log);
  return createInlinePolicySource(opts.policy as PolicyDocument);
}

/** Loads and validates the policy synchronously: throws ControlPlaneError (POLICY_READ / POLICY_INVALID). */
export function createControlPlane(opts: ControlPlaneOptions): ControlPlane {
  const log = childLogger(opts.logger ?? noopLogger, { component: 'reference-controlplane' });
  const events = new EventEmitter();
  // The gauges read the sessions and the reloader at scrape time (both exist by then).
  const metrics = new ControlPlaneMetrics(
    {
      daemons: () => sessions.all.size,
      attachments: () => sessions.attachmentCount(),
      policies: () => reloader.current().policies.length,
      policyValid: () => reloader.lastError() === undefined,
    },
    { processMetrics: opts.processMetrics ?? true },
  );
  const tokens = createTokenCheck(opts.auth?.tokens ?? []);
  let closed = false;
  const isClosed = (): boolean => closed;

  const source = policySourceOf(opts, log);
  // The policy in force is the reloader's; sessions and the fan-out ask it through policyFor.
  const policyFor: PolicyFor = (metadata) => {
    const policy = selectPolicy(reloader.current(), metadata);
    return { policy, config: policy?.config ?? NO_MATCH_CONFIG };
  };
  const sessions = createSessions({ log, now: opts.now ?? Date.now, nonces: opts.nonces ?? true, metrics, policyFor });
  const push = createFanOut({ sessions, policyFor, metrics, events, log });
  const reloader = createPolicyReloader({ source, push, metrics, events, log, debounceMs: opts.debounceMs ?? 50, isClosed });
  source.watch(() => reloader.schedule());

  const queryDns = createQueryDns((id) => sessions.attachment(id), metrics);
  const routes = createRoutes({ sessions, queryDns, tokens, metrics, log, isClosed });
  let adminHandler: http.RequestListener;
  const servers = createServers({ routes, adminHandler: () => adminHandler, tls: opts.tls, auth: tokens.enabled, log, isClosed });

  const cp: ControlPlane = {
    routes,
    listen: servers.listen,
    listenAdmin: servers.listenAdmin,
    get adminHandler() {
      return adminHandler;
    },
    reload: reloader.reload,
    addRule: (p, r) => reloader.edit(p, r, 'add'),
    removeRule: (p, r) => reloader.edit(p, r, 'remove'),
    policySet: reloader.current,
    lastError: reloader.lastError,
    daemons: sessions.daemons,
    attachments: sessions.attachments,
    denyEvents: sessions.denyEvents,
    metrics: () => metrics.render(),
    registry: metrics.registry,
    readiness: () => {
      if (closed) return { ready: false, reason: 'control plane closed' };
      if (servers.grpcListeners() === 0) return { ready: false, reason: 'gRPC server not listening' };
      return { ready: true };
    },
    queryDns,
    events,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      source.close();
      const running = reloader.close();
      sessions.endAll();
      await servers.close();
      await running;
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await cp.close();
    },
  };

  adminHandler = createAdminHandler({
    cp,
    authorize: (req) => {
      const ok = tokens.ok(req.headers.authorization);
      if (!ok) metrics.authFailures.inc();
      return ok;
    },
    log,
  });
  return cp;
}
