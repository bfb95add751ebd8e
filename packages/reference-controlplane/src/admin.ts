// The admin API: plain JSON over HTTP, plus Prometheus /metrics and the /healthz, /readyz probes.

import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { PolicyError } from '@netfence/policy-engine';
import { ControlPlaneError } from './errors';
import type { Logger } from './logger';
import type { ControlPlane } from './types';

const MAX_BODY = 64 * 1024;

interface AdminDeps {
  readonly cp: ControlPlane;
  readonly authorize: (req: IncomingMessage) => boolean;
  readonly log: Logger;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function errorBody(code: string, message: string, extra: Record<string, unknown> = {}): unknown {
  return { error: { code, message, ...extra } };
}

function statusOf(e: ControlPlaneError): number {
  switch (e.code) {
    case 'NETFENCE_ERR_POLICY_NOT_FOUND':
    case 'NETFENCE_ERR_RULE_NOT_FOUND':
      return 404;
    case 'NETFENCE_ERR_RULE_EXISTS':
    case 'NETFENCE_ERR_POLICY_CONFLICT':
      return 409;
    case 'NETFENCE_ERR_POLICY_READ':
    case 'NETFENCE_ERR_POLICY_WRITE':
      return 503;
    case 'NETFENCE_ERR_POLICY_INVALID':
    case 'NETFENCE_ERR_INVALID_REQUEST':
      return 400;
    case 'NETFENCE_ERR_UNAUTHENTICATED':
      return 401;
    case 'NETFENCE_ERR_CLOSED':
      return 503;
    default:
      return 500;
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ControlPlaneError('NETFENCE_ERR_INVALID_REQUEST', `request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function ruleFrom(req: IncomingMessage, url: URL): Promise<string> {
  const q = url.searchParams.get('rule');
  const text = await readBody(req);
  if (text.trim() === '') {
    if (q) return q;
    throw new ControlPlaneError('NETFENCE_ERR_INVALID_REQUEST', 'body must be JSON {"rule": "ALLOW example.com"}');
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new ControlPlaneError('NETFENCE_ERR_INVALID_REQUEST', `body is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const rule = (body as { rule?: unknown } | null)?.rule;
  if (typeof rule !== 'string' || rule.trim() === '') {
    throw new ControlPlaneError('NETFENCE_ERR_INVALID_REQUEST', 'body must be JSON {"rule": "ALLOW example.com"}');
  }
  return rule;
}

export function createAdminHandler(deps: AdminDeps): RequestListener {
  const { cp, authorize, log } = deps;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const method = req.method ?? 'GET';
    const path = url.pathname.replace(/\/+$/, '') || '/';
    // Probes answer without a token, like a load balancer or kubelet asks.
    if (path === '/healthz') return json(res, 200, { ok: true });
    if (path === '/readyz') {
      const r = cp.readiness();
      return json(res, r.ready ? 200 : 503, r);
    }
    if (!authorize(req)) {
      return json(res, 401, errorBody('NETFENCE_ERR_UNAUTHENTICATED', 'missing or invalid bearer token'), {
        'www-authenticate': 'Bearer realm="netfence"',
      });
    }
    const notAllowed = (allowed: string): void =>
      json(res, 405, errorBody('NETFENCE_ERR_INVALID_REQUEST', `method ${method} not allowed on ${path}`), { allow: allowed });

    if (path === '/metrics') {
      if (method !== 'GET') return notAllowed('GET');
      const text = await cp.metrics();
      res.writeHead(200, { 'content-type': cp.registry.contentType, 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (path === '/v1/daemons') {
      if (method !== 'GET') return notAllowed('GET');
      return json(res, 200, { daemons: cp.daemons() });
    }
    if (path === '/v1/attachments') {
      if (method !== 'GET') return notAllowed('GET');
      return json(res, 200, { attachments: cp.attachments() });
    }
    if (path === '/v1/deny-events') {
      if (method !== 'GET') return notAllowed('GET');
      return json(res, 200, { events: cp.denyEvents() });
    }
    if (path === '/v1/policies') {
      if (method !== 'GET') return notAllowed('GET');
      const set = cp.policySet();
      const err = cp.lastError();
      return json(res, 200, {
        file: set.file,
        hash: set.hash,
        policies: set.policies.map((p) => ({
          name: p.name,
          match: p.match,
          mode: p.config.mode,
          dryRun: p.config.dryRun,
          dns: { mode: p.config.dns.mode, upstreams: p.config.dns.upstreamServers, proxyDefault: p.proxyDefault },
          rules: p.rules,
        })),
        ...(err ? { lastError: { code: err.code, message: err.message, issues: err.issues } } : {}),
      });
    }
    if (path === '/v1/reload') {
      if (method !== 'POST') return notAllowed('POST');
      const r = await cp.reload();
      if (r.error) return json(res, 400, errorBody(r.error.code, r.error.message, { issues: r.error.issues }));
      return json(res, 200, { changed: r.changed, commands: r.commands });
    }
    const m = /^\/v1\/policies\/([^/]+)\/rules$/.exec(path);
    if (m) {
      const name = decodeURIComponent(m[1] ?? '');
      if (method !== 'POST' && method !== 'DELETE') return notAllowed('POST, DELETE');
      const rule = await ruleFrom(req, url);
      const r = method === 'POST' ? await cp.addRule(name, rule) : await cp.removeRule(name, rule);
      log.info({ method, policy: name, rule, commands: r.commands }, 'admin rule change');
      return json(res, 200, { policy: name, rule, changed: r.changed, commands: r.commands });
    }
    return json(res, 404, errorBody('NETFENCE_ERR_INVALID_REQUEST', `no such endpoint ${method} ${path}`));
  }

  return (req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (e instanceof PolicyError) {
        const pe: PolicyError = e;
        return json(res, 400, errorBody(pe.code, pe.message));
      }
      const ce = ControlPlaneError.from(e, 'NETFENCE_ERR_INVALID_REQUEST');
      const status = e instanceof ControlPlaneError ? statusOf(ce) : 500;
      if (status >= 500) log.error({ err: ce.message }, 'admin request failed');
      json(res, status, errorBody(ce.code, ce.message, ce.issues.length > 0 ? { issues: ce.issues } : {}));
    });
  };
}
