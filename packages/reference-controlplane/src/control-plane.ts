// The reference control plane: ControlPlane.Connect / QueryDns driven by a
// YAML policy file, with minimal-diff pushes, nonce ACK/NACK tracking, an
// admin HTTP API and Prometheus metrics.

import { EventEmitter } from 'node:events';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fsp, readFileSync, stat as fsStat, statSync, watch as fsWatch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createContextKey, createContextValues } from '@connectrpc/connect';
import type { ConnectRouter, HandlerContext, Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { ControlPlane as ControlPlaneService, DnsQueryResponseSchema, UnsubscribeReason } from '@netfence/proto';
import type { ControlCommand, DaemonEvent, DnsQueryRequest, DnsQueryResponse } from '@netfence/proto';
import { createDomainRuleSet, diffConfigs } from '@netfence/policy-engine';
import type { DomainRule, DomainRuleSet, PolicyConfig } from '@netfence/policy-engine';
import { ControlPlaneError } from './errors';
import {
  addRuleToText,
  compilePolicyDocument,
  editInlineDocument,
  NO_MATCH_CONFIG,
  parsePolicyText,
  removeRuleFromText,
  selectPolicy,
} from './policy-file';
import type { CompiledPolicy, PolicyDocument, PolicySet } from './policy-file';
import { bulkUpdateCommand, commandFactory, commandKind, subscribedAckCommand, syncAckCommand } from './policy-to-wire';
import { Histogram, renderGauge, renderLabelled } from './metrics';
import { parseListenAddress } from './listen-address';
import { createAdminHandler } from './admin';
import { noopLogger } from './logger';
import type {
  AttachmentStatsView,
  AttachmentView,
  CommandResultView,
  ControlPlane,
  ControlPlaneOptions,
  DaemonView,
  DenyEventView,
  ListeningAddress,
  PolicyStore,
  ReloadResult,
} from './types';

function isPolicyStore(p: unknown): p is PolicyStore {
  return typeof p === 'object' && p !== null && typeof (p as PolicyStore).read === 'function' && typeof (p as PolicyStore).write === 'function';
}

interface AttachmentRecord {
  readonly id: string;
  readonly session: Session;
  target: string;
  type: number;
  metadata: Record<string, string>;
  policy: CompiledPolicy | undefined;
  /** The config the daemon was last sent (what it holds, as far as we know). */
  sent: PolicyConfig;
  commandsSent: number;
  acks: number;
  nacks: number;
  lastResult?: CommandResultView;
  lastNack?: CommandResultView;
  stats?: AttachmentStatsView;
}

interface Pending {
  readonly attachmentId: string;
  readonly kind: string;
  readonly sentAt: number;
}

const MAX_PENDING_PER_SESSION = 10_000;
/** A daemon that has never answered a nonce is tracked only this far (it may not know the extension). */
const MAX_PENDING_WITHOUT_RESULTS = 256;
const MAX_DENY_EVENTS = 500;

class Session {
  daemonId = '';
  hostname = '';
  metadata: Record<string, string> = {};
  synced = false;
  lastHeartbeatAt?: number;
  commandsSent = 0;
  readonly attachments = new Map<string, AttachmentRecord>();
  readonly pending = new Map<string, Pending>();
  /** True once the daemon has sent any CommandResult. */
  resultsSeen = false;
  private queue: ControlCommand[] = [];
  private wake: (() => void) | undefined;
  ended = false;

  constructor(
    readonly id: number,
    readonly peer: string,
    readonly connectedAt: number,
  ) {}

  push(cmd: ControlCommand): void {
    if (this.ended) return;
    this.queue.push(cmd);
    this.commandsSent++;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *outgoing(): AsyncGenerator<ControlCommand> {
    for (;;) {
      if (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        for (const c of batch) yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

const PEER_KEY = createContextKey<string>('');

function tokenHash(t: string): Buffer {
  return createHash('sha256').update(t).digest();
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function createControlPlane(opts: ControlPlaneOptions): ControlPlane {
  const log = (opts.logger ?? noopLogger).child({ component: 'reference-controlplane' });
  const now = opts.now ?? Date.now;
  const useNonces = opts.nonces ?? true;
  const filePath = typeof opts.policy === 'string' ? opts.policy : undefined;
  const store = isPolicyStore(opts.policy) ? opts.policy : undefined;
  let inlineDoc: PolicyDocument | undefined = typeof opts.policy === 'string' || store ? undefined : (opts.policy as PolicyDocument);
  const events = new EventEmitter();
  const tokenHashes = (opts.auth?.tokens ?? []).filter((t) => t.length > 0).map(tokenHash);

  // ---- policy set (synchronous initial load: a bad file fails creation) ----
  let set: PolicySet;
  let lastErr: ControlPlaneError | undefined;
  if (filePath !== undefined) {
    let text: string;
    try {
      text = readFileSync(filePath, 'utf8');
    } catch (e) {
      throw new ControlPlaneError('NETFENCE_ERR_POLICY_READ', `cannot read policy file ${filePath}: ${(e as Error).message}`, { cause: e });
    }
    set = parsePolicyText(text, filePath);
  } else if (store) {
    set = parsePolicyText(store.current().text, store.source);
  } else {
    set = compilePolicyDocument(inlineDoc);
  }

  // ---- state ----
  const sessions = new Set<Session>();
  const byDaemonId = new Map<string, Session>();
  const attachmentIndex = new Map<string, AttachmentRecord>();
  const ruleSets = new WeakMap<CompiledPolicy, DomainRuleSet>();
  const denyEvents: DenyEventView[] = [];
  let sessionSeq = 0;
  let nonceSeq = 0;
  let closed = false;
  const nonceBase = randomBytes(4).toString('hex');

  // ---- metrics ----
  const commandsSentByKind = new Map<string, number>();
  let acksTotal = 0;
  let nacksTotal = 0;
  let reloadsOk = 0;
  let reloadsFailed = 0;
  let denyEventsTotal = 0;
  let dnsAllowed = 0;
  let dnsDenied = 0;
  let authFailures = 0;
  const ackLatency = new Histogram([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  const pushFanout = new Histogram([0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);

  function send(s: Session, cmd: ControlCommand, attachmentId: string | undefined): void {
    if (s.ended) return;
    const kind = commandKind(cmd);
    if (useNonces && attachmentId !== undefined) {
      const nonce = `${nonceBase}-${(++nonceSeq).toString(36)}`;
      cmd.nonce = nonce;
      if (s.resultsSeen || s.pending.size < MAX_PENDING_WITHOUT_RESULTS) {
        if (s.pending.size >= MAX_PENDING_PER_SESSION) {
          const oldest = s.pending.keys().next().value;
          if (oldest !== undefined) s.pending.delete(oldest);
        }
        s.pending.set(nonce, { attachmentId, kind, sentAt: now() });
      }
    }
    commandsSentByKind.set(kind, (commandsSentByKind.get(kind) ?? 0) + 1);
    if (attachmentId !== undefined) {
      const rec = s.attachments.get(attachmentId);
      if (rec) rec.commandsSent++;
    }
    s.push(cmd);
  }

  function configFor(metadata: Record<string, string>): { policy: CompiledPolicy | undefined; config: PolicyConfig } {
    const policy = selectPolicy(set, metadata);
    return { policy, config: policy?.config ?? NO_MATCH_CONFIG };
  }

  function removeRecord(rec: AttachmentRecord): void {
    rec.session.attachments.delete(rec.id);
    if (attachmentIndex.get(rec.id) === rec) attachmentIndex.delete(rec.id);
  }

  function addRecord(
    s: Session,
    a: { id: string; target: string; type: number; metadata: Record<string, string> },
  ): AttachmentRecord {
    const old = s.attachments.get(a.id);
    if (old) removeRecord(old);
    const metadata = { ...s.metadata, ...a.metadata };
    const { policy, config } = configFor(metadata);
    const rec: AttachmentRecord = {
      id: a.id,
      session: s,
      target: a.target,
      type: a.type,
      metadata,
      policy,
      sent: config,
      commandsSent: 0,
      acks: 0,
      nacks: 0,
    };
    s.attachments.set(a.id, rec);
    attachmentIndex.set(a.id, rec);
    return rec;
  }

  function endSession(s: Session): void {
    s.end();
    if (!sessions.delete(s)) return;
    for (const rec of s.attachments.values()) if (attachmentIndex.get(rec.id) === rec) attachmentIndex.delete(rec.id);
    if (s.daemonId && byDaemonId.get(s.daemonId) === s) byDaemonId.delete(s.daemonId);
    s.pending.clear();
    log.info({ session: s.id, daemonId: s.daemonId }, 'daemon disconnected');
  }

  function handleEvent(s: Session, ev: DaemonEvent): void {
    const e = ev.event;
    switch (e.case) {
      case 'sync': {
        const sync = e.value;
        if (s.daemonId && byDaemonId.get(s.daemonId) === s) byDaemonId.delete(s.daemonId);
        s.daemonId = sync.daemonId;
        s.hostname = sync.hostname;
        s.metadata = { ...sync.metadata };
        if (sync.daemonId) {
          const prev = byDaemonId.get(sync.daemonId);
          if (prev && prev !== s) {
            log.warn({ daemonId: sync.daemonId, old: prev.id, session: s.id }, 'daemon reconnected; ending its previous stream');
            endSession(prev);
          }
          byDaemonId.set(sync.daemonId, s);
        }
        for (const rec of [...s.attachments.values()]) removeRecord(rec);
        s.synced = true;
        send(s, syncAckCommand(), undefined);
        for (const a of sync.attachments) {
          const rec = addRecord(s, { id: a.id, target: a.target, type: a.type, metadata: { ...a.metadata } });
          send(s, bulkUpdateCommand(a.id, rec.sent), a.id);
        }
        log.info({ session: s.id, daemonId: s.daemonId, attachments: sync.attachments.length }, 'daemon synced');
        return;
      }
      case 'subscribed': {
        const sub = e.value;
        const rec = addRecord(s, { id: sub.id, target: sub.target, type: sub.type, metadata: { ...sub.metadata } });
        send(s, subscribedAckCommand(sub.id, rec.sent), sub.id);
        log.info({ daemonId: s.daemonId, attachment: sub.id, policy: rec.policy?.name ?? null }, 'attachment subscribed');
        return;
      }
      case 'unsubscribed': {
        const rec = s.attachments.get(e.value.id);
        if (rec) removeRecord(rec);
        log.info(
          { daemonId: s.daemonId, attachment: e.value.id, reason: UnsubscribeReason[e.value.reason], error: e.value.error || undefined },
          'attachment unsubscribed',
        );
        return;
      }
      case 'heartbeat': {
        const t = now();
        s.lastHeartbeatAt = t;
        for (const st of e.value.stats) {
          const rec = s.attachments.get(st.id);
          if (!rec) continue;
          rec.stats = {
            at: iso(t),
            packetsAllowed: Number(st.packetsAllowed),
            packetsBlocked: Number(st.packetsBlocked),
            dnsQueriesAllowed: Number(st.dnsQueriesAllowed),
            dnsQueriesBlocked: Number(st.dnsQueriesBlocked),
          };
        }
        return;
      }
      case 'commandResult': {
        const r = e.value;
        s.resultsSeen = true;
        const p = s.pending.get(r.nonce);
        if (!p) return;
        s.pending.delete(r.nonce);
        const t = now();
        const rec = s.attachments.get(p.attachmentId);
        const view: CommandResultView = {
          nonce: r.nonce,
          command: p.kind,
          ok: r.ok,
          ...(r.ok ? {} : { errorCode: r.errorCode, errorMessage: r.errorMessage }),
          at: iso(t),
        };
        if (r.ok) {
          acksTotal++;
          ackLatency.observe((t - p.sentAt) / 1000);
          if (rec) {
            rec.acks++;
            rec.lastResult = view;
          }
          return;
        }
        nacksTotal++;
        log.warn({ daemonId: s.daemonId, attachment: p.attachmentId, command: p.kind, code: r.errorCode, error: r.errorMessage }, 'command rejected (NACK)');
        if (rec) {
          rec.nacks++;
          rec.lastResult = view;
          rec.lastNack = view;
          // The daemon never half-applies: resynchronise the attachment once with its whole config.
          if (p.kind !== 'bulkUpdate' && p.kind !== 'subscribedAck') send(s, bulkUpdateCommand(rec.id, rec.sent), rec.id);
        }
        return;
      }
      case 'denyEvents': {
        for (const d of e.value.events) {
          denyEventsTotal++;
          denyEvents.push({
            daemonId: s.daemonId,
            attachmentId: d.attachmentId,
            destination: d.destination,
            port: d.port,
            protocol: d.protocol,
            reason: d.reason,
            domain: d.domain,
            dryRun: d.dryRun,
            count: Number(d.count),
          });
        }
        if (denyEvents.length > MAX_DENY_EVENTS) denyEvents.splice(0, denyEvents.length - MAX_DENY_EVENTS);
        return;
      }
      default:
        return;
    }
  }

  // ---- pushing a new policy set ----
  function applySet(next: PolicySet): number {
    const t0 = performance.now();
    set = next;
    const diffCache = new Map<PolicyConfig, Map<PolicyConfig, readonly ((id: string) => ControlCommand)[]>>();
    let count = 0;
    for (const s of sessions) {
      for (const rec of s.attachments.values()) {
        const { policy, config } = configFor(rec.metadata);
        rec.policy = policy;
        const from = rec.sent;
        if (from === config) continue;
        let inner = diffCache.get(from);
        if (!inner) diffCache.set(from, (inner = new Map()));
        let cmds = inner.get(config);
        if (cmds === undefined) {
          cmds = diffConfigs(from, config).map(commandFactory);
          inner.set(config, cmds);
        }
        rec.sent = config;
        for (const make of cmds) {
          send(s, make(rec.id), rec.id);
          count++;
        }
      }
    }
    const ms = performance.now() - t0;
    pushFanout.observe(ms / 1000);
    events.emit('pushed', { commands: count, ms });
    log.info({ commands: count, ms: Math.round(ms * 10) / 10, policies: next.policies.length }, 'policy pushed');
    return count;
  }

  // ---- reload / edits, serialised ----
  let chain: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  }

  function rejectReload(err: ControlPlaneError): ReloadResult {
    lastErr = err;
    reloadsFailed++;
    log.error({ err: err.message, issues: err.issues }, 'policy file rejected; keeping the last good policy');
    events.emit('reloadError', err);
    const r: ReloadResult = { changed: false, commands: 0, error: err };
    events.emit('reload', r);
    return r;
  }

  function acceptSet(next: PolicySet): ReloadResult {
    lastErr = undefined;
    if (next.hash === set.hash) {
      const r: ReloadResult = { changed: false, commands: 0 };
      events.emit('reload', r);
      return r;
    }
    reloadsOk++;
    const commands = applySet(next);
    const r: ReloadResult = { changed: true, commands };
    events.emit('reload', r);
    return r;
  }

  /** The policy text, the name its errors carry, and (from a store) its version: from the store, or the file. */
  async function readPolicySource(): Promise<{ text: string; source: string; version?: number }> {
    if (store) return { ...(await store.read()), source: store.source };
    const path = filePath as string;
    try {
      return { text: await fsp.readFile(path, 'utf8'), source: path };
    } catch (e) {
      throw new ControlPlaneError('NETFENCE_ERR_POLICY_READ', `cannot read policy file ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  async function doReload(): Promise<ReloadResult> {
    if (closed) return { changed: false, commands: 0 };
    if (!store && filePath === undefined) return acceptSet(compilePolicyDocument(inlineDoc));
    let src: { text: string; source: string };
    try {
      src = await readPolicySource();
    } catch (e) {
      return rejectReload(ControlPlaneError.from(e, 'NETFENCE_ERR_POLICY_READ'));
    }
    try {
      return acceptSet(parsePolicyText(src.text, src.source));
    } catch (e) {
      return rejectReload(ControlPlaneError.from(e, 'NETFENCE_ERR_POLICY_INVALID'));
    }
  }

  async function atomicWrite(path: string, text: string): Promise<void> {
    const tmp = `${dirname(path)}/.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      let mode = 0o644;
      try {
        mode = (await fsp.stat(path)).mode & 0o777;
      } catch {
        /* new file */
      }
      const fh = await fsp.open(tmp, 'w', mode);
      try {
        await fh.writeFile(text, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, path);
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw new ControlPlaneError('NETFENCE_ERR_POLICY_WRITE', `cannot write policy file ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  function editRule(policyName: string, rule: string, op: 'add' | 'remove'): Promise<ReloadResult> {
    return serial(async () => {
      if (closed) throw new ControlPlaneError('NETFENCE_ERR_CLOSED', 'control plane is closed');
      if (!store && filePath === undefined) {
        const nextDoc = editInlineDocument(inlineDoc as PolicyDocument, policyName, rule, op);
        const next = compilePolicyDocument(nextDoc);
        inlineDoc = nextDoc;
        return acceptSet(next);
      }
      // A store writes by compare and swap: a replica that wrote in between makes us read again (a few times).
      for (let attempt = 1; ; attempt++) {
        const { text, source, version } = await readPolicySource();
        const nextText = op === 'add' ? addRuleToText(text, policyName, rule) : removeRuleFromText(text, policyName, rule);
        const next = parsePolicyText(nextText, source); // throws POLICY_INVALID: nothing written
        try {
          if (store) await store.write(nextText, version as number);
          else await atomicWrite(source, nextText);
        } catch (e) {
          if (e instanceof ControlPlaneError && e.code === 'NETFENCE_ERR_POLICY_CONFLICT' && attempt < 5) continue;
          throw e;
        }
        log.info({ policy: policyName, rule, op, source }, 'policy rule edited');
        return acceptSet(next);
      }
    });
  }

  // ---- store changes (other replicas' edits) ----
  store?.onChange(() => schedule());

  // ---- file watching ----
  let watcher: FSWatcher | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let debounceTimer: NodeJS.Timeout | undefined;
  const debounceMs = opts.debounceMs ?? 50;
  function schedule(): void {
    if (closed) return;
    if (debounceTimer) clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      debounceTimer = undefined;
      void serial(doReload);
    }, debounceMs);
  }
  if (filePath !== undefined && (opts.watch ?? true)) {
    const base = basename(filePath);
    if (opts.fsWatch ?? true) try {
      watcher = fsWatch(dirname(filePath), { persistent: false }, (_ev, name) => {
        if (!name || name.toString() === base) schedule();
      });
      watcher.on('error', (e) => log.warn({ err: String(e) }, 'policy file watcher failed; polling only'));
    } catch (e) {
      log.warn({ err: String(e) }, 'cannot watch policy directory; polling only');
    }
    const pollMs = opts.pollIntervalMs ?? 1000;
    if (pollMs > 0) {
      let lastSig = '';
      try {
        const st = statSync(filePath);
        lastSig = `${st.ino}:${st.size}:${st.mtimeMs}`;
      } catch {
        /* ignore */
      }
      pollTimer = setInterval(() => {
        fsStat(filePath, (err, st) => {
          const sig = err ? 'missing' : `${st.ino}:${st.size}:${st.mtimeMs}`;
          if (sig !== lastSig) {
            lastSig = sig;
            schedule();
          }
        });
      }, pollMs);
      pollTimer.unref();
    }
  }

  // ---- RPCs ----
  function ruleSetOf(p: CompiledPolicy): DomainRuleSet {
    let rs = ruleSets.get(p);
    if (!rs) {
      const rules: DomainRule[] = [
        ...p.config.dns.allowDomains.map((d) => ({ domain: d.domain, includeSubdomains: d.includeSubdomains, action: 'allow' as const })),
        ...p.config.dns.denyDomains.map((d) => ({ domain: d.domain, includeSubdomains: d.includeSubdomains, action: 'deny' as const })),
      ];
      rs = createDomainRuleSet(rules);
      ruleSets.set(p, rs);
    }
    return rs;
  }

  function queryDns(req: { id: string; domain: string; queryType?: string }): DnsQueryResponse {
    const rec = attachmentIndex.get(req.id);
    let allow = false;
    if (rec?.policy) {
      try {
        const d = ruleSetOf(rec.policy).decide(req.domain);
        allow = d.verdict === 'allow' || (d.verdict === 'none' && rec.policy.proxyDefault === 'allow');
      } catch {
        allow = false;
      }
    }
    if (allow) dnsAllowed++;
    else dnsDenied++;
    return create(DnsQueryResponseSchema, { allow, addToFilter: true });
  }

  function tokenOk(header: string | null | undefined): boolean {
    if (tokenHashes.length === 0) return true;
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    if (!m || !m[1]) return false;
    const h = tokenHash(m[1].trim());
    let ok = false;
    for (const t of tokenHashes) if (timingSafeEqual(t, h)) ok = true;
    return ok;
  }

  const authInterceptor: Interceptor = (next) => async (req) => {
    if (!tokenOk(req.header.get('authorization'))) {
      authFailures++;
      throw new ConnectError('NETFENCE_ERR_UNAUTHENTICATED: missing or invalid bearer token', Code.Unauthenticated);
    }
    return next(req);
  };

  async function* connectImpl(requests: AsyncIterable<DaemonEvent>, ctx: HandlerContext): AsyncGenerator<ControlCommand> {
    if (closed) throw new ConnectError('control plane is closing', Code.Unavailable);
    const s = new Session(++sessionSeq, ctx.values.get(PEER_KEY), now());
    sessions.add(s);
    log.debug({ session: s.id, peer: s.peer }, 'stream opened');
    const onAbort = (): void => endSession(s);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    void (async () => {
      try {
        for await (const ev of requests) {
          if (s.ended) break;
          handleEvent(s, ev);
        }
      } catch (e) {
        log.debug({ session: s.id, err: String(e) }, 'stream read ended with error');
      } finally {
        endSession(s);
      }
    })();
    try {
      yield* s.outgoing();
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      endSession(s);
    }
  }

  const routes = (router: ConnectRouter): void => {
    router.service(
      ControlPlaneService,
      {
        connect: connectImpl,
        queryDns: (req: DnsQueryRequest) => queryDns({ id: req.id, domain: req.domain, queryType: req.queryType }),
      },
      tokenHashes.length > 0 ? { interceptors: [authInterceptor] } : {},
    );
  };

  // ---- servers ----
  const servers: { close: () => Promise<void> }[] = [];

  function listenOn(server: http.Server | http2.Http2Server | https.Server | http2.Http2SecureServer, addr: string, scheme: string): Promise<ListeningAddress> {
    const target = parseListenAddress(addr);
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void =>
        reject(new ControlPlaneError('NETFENCE_ERR_LISTEN', `cannot listen on ${addr}: ${e.message}`, { cause: e }));
      server.once('error', onError);
      const done = (): void => {
        server.off('error', onError);
        if (target.kind === 'unix') return resolve({ url: `unix:${target.path}`, path: target.path });
        const a = server.address() as AddressInfo;
        const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ url: `${scheme}://${host}:${a.port}`, host: a.address, port: a.port });
      };
      if (target.kind === 'unix') {
        fsp
          .rm(target.path, { force: true })
          .catch(() => undefined)
          .then(() => server.listen(target.path, done));
      } else server.listen(target.port, target.host, done);
    });
  }

  function tlsServerOptions(): { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requestCert: boolean; rejectUnauthorized: boolean } | undefined {
    if (!opts.tls) return undefined;
    return {
      cert: opts.tls.cert,
      key: opts.tls.key,
      ...(opts.tls.ca ? { ca: opts.tls.ca } : {}),
      requestCert: !!opts.tls.ca,
      rejectUnauthorized: !!opts.tls.ca,
    };
  }

  async function listen(addr: string): Promise<ListeningAddress> {
    if (closed) throw new ControlPlaneError('NETFENCE_ERR_CLOSED', 'control plane is closed');
    const handler = connectNodeAdapter({
      routes,
      contextValues: (req) => createContextValues().set(PEER_KEY, `${req.socket?.remoteAddress ?? 'unix'}:${req.socket?.remotePort ?? ''}`),
    });
    const settings = { maxConcurrentStreams: 100_000 };
    const tls = tlsServerOptions();
    let server: http2.Http2Server | http2.Http2SecureServer;
    try {
      server = tls ? http2.createSecureServer({ ...tls, settings }, handler) : http2.createServer({ settings }, handler);
    } catch (e) {
      throw new ControlPlaneError('NETFENCE_ERR_TLS', `invalid TLS material: ${(e as Error).message}`, { cause: e });
    }
    const h2sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (sess: http2.ServerHttp2Session) => {
      h2sessions.add(sess);
      sess.on('close', () => h2sessions.delete(sess));
    });
    const bound = await listenOn(server, addr, tls ? 'https' : 'http');
    servers.push({
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const sess of h2sessions) sess.destroy();
        }),
    });
    log.info({ url: bound.url, tls: !!tls, mtls: !!opts.tls?.ca, auth: tokenHashes.length > 0 }, 'control plane listening');
    return bound;
  }

  const cp: ControlPlane = {
    routes,
    listen,
    async listenAdmin(addr: string): Promise<ListeningAddress> {
      if (closed) throw new ControlPlaneError('NETFENCE_ERR_CLOSED', 'control plane is closed');
      const tls = tlsServerOptions();
      let server: http.Server | https.Server;
      try {
        server = tls ? https.createServer(tls, adminHandler) : http.createServer(adminHandler);
      } catch (e) {
        throw new ControlPlaneError('NETFENCE_ERR_TLS', `invalid TLS material: ${(e as Error).message}`, { cause: e });
      }
      const bound = await listenOn(server, addr, tls ? 'https' : 'http');
      servers.push({
        close: () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      });
      log.info({ url: bound.url }, 'admin API listening');
      return bound;
    },
    get adminHandler() {
      return adminHandler;
    },
    reload: () => serial(doReload),
    addRule: (p, r) => editRule(p, r, 'add'),
    removeRule: (p, r) => editRule(p, r, 'remove'),
    policySet: () => set,
    lastError: () => lastErr,
    daemons(): DaemonView[] {
      return [...sessions].map((s) => ({
        session: s.id,
        daemonId: s.daemonId,
        hostname: s.hostname,
        metadata: { ...s.metadata },
        peer: s.peer,
        connectedAt: iso(s.connectedAt),
        synced: s.synced,
        ...(s.lastHeartbeatAt !== undefined ? { lastHeartbeatAt: iso(s.lastHeartbeatAt) } : {}),
        attachments: s.attachments.size,
        commandsSent: s.commandsSent,
        pendingResults: s.pending.size,
      }));
    },
    attachments(): AttachmentView[] {
      const out: AttachmentView[] = [];
      for (const s of sessions)
        for (const r of s.attachments.values())
          out.push({
            id: r.id,
            daemonId: s.daemonId,
            target: r.target,
            type: r.type,
            metadata: { ...r.metadata },
            policy: r.policy?.name,
            config: r.sent,
            commandsSent: r.commandsSent,
            acks: r.acks,
            nacks: r.nacks,
            ...(r.lastResult ? { lastResult: r.lastResult } : {}),
            ...(r.lastNack ? { lastNack: r.lastNack } : {}),
            ...(r.stats ? { lastHeartbeat: r.stats } : {}),
          });
      return out;
    },
    denyEvents: () => [...denyEvents],
    metrics(): string {
      let attachments = 0;
      for (const s of sessions) attachments += s.attachments.size;
      const parts = [
        renderGauge('netfence_cp_connected_daemons', 'Daemons with an open Connect stream.', sessions.size),
        renderGauge('netfence_cp_attachments', 'Attachments known across connected daemons.', attachments),
        renderGauge('netfence_cp_policies', 'Policies in the policy set in force.', set.policies.length),
        renderLabelled('netfence_cp_commands_sent_total', 'Commands sent to daemons, by kind.', 'counter', 'kind', commandsSentByKind),
        renderGauge('netfence_cp_command_acks_total', 'Command results with ok=true (nonce extension).', acksTotal, 'counter'),
        renderGauge('netfence_cp_command_nacks_total', 'Command results with ok=false (nonce extension).', nacksTotal, 'counter'),
        ackLatency.render('netfence_cp_push_latency_seconds', 'Time from sending a command to its ACK.'),
        pushFanout.render('netfence_cp_push_fanout_seconds', 'Time to compute and queue the commands of one policy change for all daemons.'),
        renderLabelled(
          'netfence_cp_policy_reloads_total',
          'Policy (re)loads that changed the policy set, and rejected ones.',
          'counter',
          'result',
          new Map([
            ['ok', reloadsOk],
            ['error', reloadsFailed],
          ]),
        ),
        renderGauge('netfence_cp_policy_valid', '1 when the policy file on disk is the one in force, 0 when it was rejected.', lastErr ? 0 : 1),
        renderLabelled(
          'netfence_cp_dns_queries_total',
          'QueryDns decisions.',
          'counter',
          'verdict',
          new Map([
            ['allow', dnsAllowed],
            ['deny', dnsDenied],
          ]),
        ),
        renderGauge('netfence_cp_deny_events_total', 'Deny events received from daemons.', denyEventsTotal, 'counter'),
        renderGauge('netfence_cp_auth_failures_total', 'Requests rejected for a missing or wrong bearer token.', authFailures, 'counter'),
      ];
      return parts.join('\n') + '\n';
    },
    queryDns,
    events,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      watcher?.close();
      if (pollTimer) clearInterval(pollTimer);
      if (debounceTimer) clearTimeout(debounceTimer);
      for (const s of [...sessions]) endSession(s);
      await Promise.all(servers.splice(0).map((s) => s.close()));
      await chain.catch(() => undefined);
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await cp.close();
    },
  };

  const adminHandler = createAdminHandler({
    cp,
    authorize: (req) => {
      const ok = tokenOk(req.headers.authorization);
      if (!ok) authFailures++;
      return ok;
    },
    log,
  });

  return cp;
}

