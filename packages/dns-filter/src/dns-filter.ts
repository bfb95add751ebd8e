// createDnsFilter: a filtering DNS server (UDP + TCP on one address and port).
//
// Hot path (UDP): node:dgram + the hand-written codec in wire.ts; dns2 is not
// on it (see README for the measured reason). Per query:
//   parse strictly -> policy decision (rules, or the async proxy callback with
//   a deadline) -> cache or upstream (shared sockets, random IDs, validated
//   answers, TCP on TC=1, failover) -> follow the CNAME chain from the
//   question name -> clamp and rewrite TTLs -> optional rebinding check ->
//   await onResolved(addresses) -> only then send. Any failure = SERVFAIL.

import dgram from 'node:dgram';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

import {
  createDomainRuleSet,
  noMatchVerdict,
  passesDns,
  parseDomainPattern,
  normalizeDomain,
  type DnsMode,
  type DomainDecision,
  type DomainEntryInput,
  type DomainRule,
  type DomainRuleSet,
} from '@netfence/policy-engine';

import { MAX_CACHE_SIZE } from './config-file';
import { DnsFilterError } from './dns-filter-error';
import { createLimitedLogger } from './limited-logger';
import { isPrivateAddress } from './private-address';
import { cacheKey, createResponseCache, type CachedAnswer } from './response-cache';
import { createTcpConnectionTable } from './tcp-connections';
import { serveTcpConnection } from './tcp-server';
import { createUpstreamPool, parseUpstream, type UpstreamAnswer, type UpstreamServer, type UpstreamStatus } from './upstream-pool';
import {
  CLASS_IN,
  QTYPE,
  RCODE,
  addressBytes,
  buildAddressResponse,
  buildEmptyResponse,
  followChain,
  parseQuery,
  parseResponse,
  qtypeName,
  rcodeName,
  rebuildResponse,
  rewriteTtls,
  type ParsedQuery,
} from './wire';

/** A domain written by a user ('pypi.org', '*.pypi.org') or a DomainEntryInput. */
export type DomainInput = string | DomainEntryInput;

/** What the proxy-mode callback returns (mirrors netfence.v1 DnsQueryResponse). */
export interface ProxyDecision {
  readonly allow: boolean;
  /** If set and non-empty for an A/AAAA query: answer with these addresses instead of asking upstream. */
  readonly ips?: readonly string[];
  /** Feed the answer's addresses to onResolved (default true). */
  readonly addToFilter?: boolean;
  /** TTL for synthesised answers (clamped to [minTtlSec, maxTtlSec]). */
  readonly ttlSec?: number;
}

export interface ClientInfo {
  readonly address: string;
  readonly port: number;
  readonly transport: 'udp' | 'tcp';
}

export type ProxyDecide = (name: string, qtype: string, client: ClientInfo) => Promise<ProxyDecision>;

/** Passed to onResolved before an answer is released. */
export interface ResolvedInfo {
  /** The question name (normalised). */
  readonly name: string;
  readonly qtype: string;
  /** A/AAAA addresses of the name's CNAME chain, text form, deduplicated. */
  readonly addresses: readonly string[];
  /** TTL the client is told and the filter should hold the addresses for (already clamped). */
  readonly ttlSec: number;
  /** CNAME targets followed from the question name, in order. */
  readonly cnames: readonly string[];
  readonly mode: DnsMode;
  readonly cached: boolean;
  readonly client: ClientInfo;
}

export type QueryVerdict = 'allowed' | 'blocked' | 'failed' | 'invalid';

export type QueryReason =
  | 'mode-disabled'
  | 'rule'
  | 'no-match'
  | 'proxy'
  | 'rebinding'
  | 'invalid-name'
  | 'formerr'
  | 'notimp'
  | 'not-in-class'
  | 'zone-transfer'
  | 'overload'
  | 'no-upstream'
  | 'upstream-failed'
  | 'hook-failed'
  | 'proxy-timeout'
  | 'proxy-error';

/** One event per query (for logging). */
export interface QueryEvent {
  readonly name: string;
  readonly qtype: string;
  readonly verdict: QueryVerdict;
  readonly reason: QueryReason;
  /** The domain rule that decided, if one did. */
  readonly rule?: DomainRule;
  readonly rcode: string;
  readonly latencyMs: number;
  readonly client: ClientInfo;
  readonly cached: boolean;
  readonly upstream?: string;
  readonly addresses?: readonly string[];
}

export interface DnsFilterLogger {
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
  debug(obj: unknown, msg?: string): void;
  child?(bindings: Record<string, unknown>): DnsFilterLogger;
}

/** Settings that update() can change live. */
export interface DnsFilterSettings {
  readonly mode?: DnsMode;
  /** Allow rules, e.g. ['*.pypi.org', 'files.pythonhosted.org']. Replaces the current allow list. */
  readonly allow?: readonly DomainInput[];
  /** Deny rules. Replaces the current deny list. */
  readonly deny?: readonly DomainInput[];
  /** A ready rule set (e.g. domainRuleSetFromDns(state.dns)); replaces allow/deny when given. */
  readonly rules?: DomainRuleSet;
  /** Upstream servers: '10.0.0.1', '10.0.0.1:5353', '[2001:db8::1]:53'. */
  readonly upstreams?: readonly string[];
  readonly decide?: ProxyDecide | undefined;
  readonly decideTimeoutMs?: number;
  /** Answer to blocked names: 'refused' (default) or 'nxdomain'. */
  readonly blockResponse?: 'refused' | 'nxdomain';
  readonly minTtlSec?: number;
  readonly maxTtlSec?: number;
  /** Refuse answers of non-exact-allowed names that point into private/loopback/link-local/ULA/metadata ranges. Default false. */
  readonly rebindingProtection?: boolean;
  /** Names (exact) whose answers may point into private ranges when rebinding protection is on. */
  readonly rebindingAllowedNames?: readonly string[];
}

export interface DnsFilterOptions extends DnsFilterSettings {
  /** Listen address (default '127.0.0.1'). */
  readonly address?: string;
  /** Listen port (default 0 = ephemeral; the bound port is in filter.address). UDP and TCP use the same port. */
  readonly port?: number;
  readonly mode: DnsMode;
  /** Awaited before an answer with addresses is released; a throw or rejection gives the client SERVFAIL. */
  readonly onResolved?: (info: ResolvedInfo) => void | Promise<void>;
  /** Called for every query (after the response is sent). Must not throw. */
  readonly onQuery?: (event: QueryEvent) => void;
  /** Max time for onResolved (default 2000 ms): over it, SERVFAIL. */
  readonly hookTimeoutMs?: number;
  /** Response cache size in entries (default 10000; 0 disables). */
  readonly cacheSize?: number;
  /** Queries being processed at once (default 4096); over it, SERVFAIL and counted. */
  readonly maxInFlight?: number;
  /** Per-attempt upstream timeout (default 1000 ms). */
  readonly upstreamTimeoutMs?: number;
  /** Attempts per query across upstreams, each to a different server (default 3). */
  readonly upstreamMaxAttempts?: number;
  /** Base down-time of a failing upstream (default 2000 ms, doubling to 60 s). */
  readonly upstreamBackoffMs?: number;
  /** Shared upstream UDP sockets per address family (default 4). */
  readonly upstreamSockets?: number;
  /** Listen on TCP too (default true). */
  readonly tcp?: boolean;
  /** A TCP connection with nothing received for this long is closed (default 10 000 ms; 0 = never). */
  readonly tcpIdleTimeoutMs?: number;
  /**
   * TCP connections at most, all clients together (default 512). A new connection over the
   * cap is accepted and the connection idle longest is closed to make room.
   */
  readonly maxTcpConnections?: number;
  /** TCP connections at most from one client address (default 64); over it, that client's connection idle longest is closed. */
  readonly maxTcpConnectionsPerClient?: number;
  /**
   * Internal log lines (hook failures, listener errors, socket errors: anything a workload
   * can trigger) are rate-limited per kind of line: `burst` at once, then `perSecond`
   * (defaults 20 and 10). A written line carries `suppressed` (lines of its kind dropped
   * since the previous one); kinds that went quiet get one 'log lines suppressed' line
   * every `summaryIntervalMs` (default 10 000) and at close().
   */
  readonly logRateLimit?: { readonly perSecond?: number; readonly burst?: number; readonly summaryIntervalMs?: number };
  readonly logger?: DnsFilterLogger;
}

export interface DnsFilterStats {
  readonly queries: number;
  readonly allowed: number;
  readonly blocked: number;
  readonly failed: number;
  readonly invalid: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly cacheSize: number;
  readonly overloaded: number;
  readonly hookFailures: number;
  readonly rebindingBlocked: number;
  readonly inFlight: number;
  readonly upstreamQueries: number;
  readonly upstreamTimeouts: number;
  readonly upstreamErrors: number;
  readonly tcpFallbacks: number;
  readonly spoofedDropped: number;
  /** TCP connections open now. */
  readonly tcpConnections: number;
  /** TCP connections closed to make room for new ones (caps per client and per server). */
  readonly tcpEvicted: number;
  /** Internal log lines not written because of the log rate limit. */
  readonly logSuppressed: number;
  /** Upper bounds (ms) of the latency buckets; counts has one more entry (+Inf). Not cumulative. */
  readonly latencyBucketsMs: readonly number[];
  readonly latencyCounts: readonly number[];
  readonly latencySumMs: number;
  readonly upstreams: readonly UpstreamStatus[];
}

export interface DnsFilterAddress {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export interface DnsFilter {
  /** The bound address (UDP and TCP). */
  readonly address: DnsFilterAddress;
  /** Current mode. */
  readonly mode: DnsMode;
  /** Changes mode, rules, upstreams... live. Validates everything first; never half-applies. */
  update(settings: DnsFilterSettings): void;
  stats(): DnsFilterStats;
  /** Adds/removes a per-query listener (in addition to options.onQuery). */
  on(event: 'query', listener: (e: QueryEvent) => void): this;
  off(event: 'query', listener: (e: QueryEvent) => void): this;
  clearCache(): void;
  /** Stops listening, fails in-flight queries, closes upstream sockets. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

interface Resolved {
  mode: DnsMode;
  ruleSet: DomainRuleSet;
  allow: DomainEntryInput[];
  deny: DomainEntryInput[];
  upstreams: UpstreamServer[];
  decide: ProxyDecide | undefined;
  decideTimeoutMs: number;
  blockRcode: number;
  minTtl: number;
  maxTtl: number;
  rebinding: boolean;
  rebindingAllowed: Set<string>;
}

const MODES: readonly DnsMode[] = ['disabled', 'allowlist', 'denylist', 'proxy'];

function bad(msg: string, cause?: unknown): DnsFilterError {
  return new DnsFilterError('NETFENCE_ERR_DNS_INVALID_OPTIONS', msg, cause === undefined ? undefined : { cause });
}

function toEntries(list: readonly DomainInput[], key: string): DomainEntryInput[] {
  if (!Array.isArray(list)) throw bad(`${key} must be an array`);
  return list.map((d, i) => {
    try {
      const p = typeof d === 'string' ? parseDomainPattern(d) : parseDomainPattern(d.domain, d.includeSubdomains);
      return { domain: p.domain, includeSubdomains: p.includeSubdomains };
    } catch (e) {
      throw bad(`${key}[${i}] ${JSON.stringify(typeof d === 'string' ? d : d.domain)}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  });
}

function nonNegInt(v: unknown, key: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(`${key} must be a non-negative integer`);
  return v;
}

/** Validates settings on top of the current ones; returns the complete new settings (pure). */
function resolveSettings(cur: Resolved | undefined, s: DnsFilterSettings): Resolved {
  const mode = s.mode ?? cur?.mode;
  if (mode === undefined || !MODES.includes(mode)) throw bad(`mode must be one of ${MODES.join(', ')}`);
  const allow = s.allow !== undefined ? toEntries(s.allow, 'allow') : (cur?.allow ?? []);
  const deny = s.deny !== undefined ? toEntries(s.deny, 'deny') : (cur?.deny ?? []);
  let ruleSet: DomainRuleSet;
  if (s.rules !== undefined) ruleSet = s.rules;
  else if (s.allow !== undefined || s.deny !== undefined || cur === undefined) {
    ruleSet = createDomainRuleSet([
      ...allow.map((e): DomainRule => ({ domain: e.domain, includeSubdomains: e.includeSubdomains, action: 'allow' })),
      ...deny.map((e): DomainRule => ({ domain: e.domain, includeSubdomains: e.includeSubdomains, action: 'deny' })),
    ]);
  } else ruleSet = cur.ruleSet;
  const upstreams = s.upstreams !== undefined ? s.upstreams.map((u) => parseUpstream(u)) : (cur?.upstreams ?? []);
  const decide = 'decide' in s ? s.decide : cur?.decide;
  if (decide !== undefined && typeof decide !== 'function') throw bad('decide must be a function');
  const decideTimeoutMs = s.decideTimeoutMs !== undefined ? nonNegInt(s.decideTimeoutMs, 'decideTimeoutMs') : (cur?.decideTimeoutMs ?? 2000);
  const br = s.blockResponse ?? (cur ? (cur.blockRcode === RCODE.NXDOMAIN ? 'nxdomain' : 'refused') : 'refused');
  if (br !== 'refused' && br !== 'nxdomain') throw bad(`blockResponse must be 'refused' or 'nxdomain'`);
  const minTtl = s.minTtlSec !== undefined ? nonNegInt(s.minTtlSec, 'minTtlSec') : (cur?.minTtl ?? 30);
  const maxTtl = s.maxTtlSec !== undefined ? nonNegInt(s.maxTtlSec, 'maxTtlSec') : (cur?.maxTtl ?? 3600);
  if (minTtl > maxTtl) throw bad(`minTtlSec (${minTtl}) > maxTtlSec (${maxTtl})`);
  if (maxTtl > 0x7fffffff) throw bad('maxTtlSec too large');
  const rebinding = s.rebindingProtection ?? cur?.rebinding ?? false;
  let rebindingAllowed = cur?.rebindingAllowed ?? new Set<string>();
  if (s.rebindingAllowedNames !== undefined) {
    rebindingAllowed = new Set(
      s.rebindingAllowedNames.map((n, i) => {
        try {
          return normalizeDomain(n);
        } catch (e) {
          throw bad(`rebindingAllowedNames[${i}]: ${e instanceof Error ? e.message : String(e)}`, e);
        }
      }),
    );
  }
  return {
    mode,
    ruleSet,
    allow,
    deny,
    upstreams,
    decide,
    decideTimeoutMs,
    blockRcode: br === 'nxdomain' ? RCODE.NXDOMAIN : RCODE.REFUSED,
    minTtl,
    maxTtl,
    rebinding,
    rebindingAllowed,
  };
}

type Send = (buf: Buffer) => void;

/** Per-query state. */
interface Ctx {
  readonly msg: Buffer;
  readonly q: ParsedQuery;
  readonly client: ClientInfo;
  readonly send: Send;
  readonly maxSize: number;
  readonly t0: number;
  readonly cfg: Resolved;
  rule: DomainRule | undefined;
  learn: boolean;
  done: boolean;
  timer: NodeJS.Timeout | undefined;
  hookDeadline: number;
  hookUpstream: string | undefined;
}

/** Replies go to IP literals only: skip dns.lookup's nextTick per send. */
function literalLookup(address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, net.isIPv6(address) ? 6 : 4);
}

async function bindUdp(family: 4 | 6, address: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: literalLookup as never });
  await new Promise<void>((resolve, reject) => {
    const onErr = (e: Error): void => reject(e);
    sock.once('error', onErr);
    sock.bind(port, address, () => {
      sock.off('error', onErr);
      resolve();
    });
  });
  return sock;
}

async function listenTcp(server: net.Server, address: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onErr = (e: Error): void => reject(e);
    server.once('error', onErr);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', onErr);
      resolve();
    });
  });
}

/** Starts a filtering DNS server. Resolves once UDP (and TCP) listen on the same port. */
export async function createDnsFilter(options: DnsFilterOptions): Promise<DnsFilter> {
  if (options === null || typeof options !== 'object') throw bad('options required');
  let cfg = resolveSettings(undefined, options);
  const listenAddress = options.address ?? '127.0.0.1';
  const family: 4 | 6 = net.isIPv4(listenAddress) ? 4 : net.isIPv6(listenAddress) ? 6 : (0 as 4);
  if (family !== 4 && family !== 6) throw bad(`address ${JSON.stringify(listenAddress)} is not an IP address`);
  const wantPort = options.port ?? 0;
  if (!Number.isInteger(wantPort) || wantPort < 0 || wantPort > 65535) throw bad('port must be 0..65535');
  const hookTimeoutMs = nonNegInt(options.hookTimeoutMs ?? 2000, 'hookTimeoutMs');
  const cacheSize = nonNegInt(options.cacheSize ?? 10000, 'cacheSize');
  if (cacheSize > MAX_CACHE_SIZE) throw bad(`cacheSize must be at most ${MAX_CACHE_SIZE}`);
  const maxInFlight = nonNegInt(options.maxInFlight ?? 4096, 'maxInFlight');
  const upstreamTimeoutMs = nonNegInt(options.upstreamTimeoutMs ?? 1000, 'upstreamTimeoutMs');
  const maxAttempts = nonNegInt(options.upstreamMaxAttempts ?? 3, 'upstreamMaxAttempts');
  const backoffMs = nonNegInt(options.upstreamBackoffMs ?? 2000, 'upstreamBackoffMs');
  const upstreamSockets = nonNegInt(options.upstreamSockets ?? 4, 'upstreamSockets');
  const tcpEnabled = options.tcp ?? true;
  const tcpIdleTimeoutMs = nonNegInt(options.tcpIdleTimeoutMs ?? 10000, 'tcpIdleTimeoutMs');
  const maxTcpConnections = nonNegInt(options.maxTcpConnections ?? 512, 'maxTcpConnections');
  const maxTcpPerClient = nonNegInt(options.maxTcpConnectionsPerClient ?? 64, 'maxTcpConnectionsPerClient');
  if (maxTcpConnections < 1 || maxTcpPerClient < 1) throw bad('maxTcpConnections and maxTcpConnectionsPerClient must be at least 1');
  const rl = options.logRateLimit ?? {};
  for (const k of ['perSecond', 'burst', 'summaryIntervalMs'] as const) {
    const v = rl[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) throw bad(`logRateLimit.${k} must be a positive number`);
  }
  if (rl.burst !== undefined && rl.burst < 1) throw bad('logRateLimit.burst must be at least 1');
  const onResolved = options.onResolved;
  const logger = options.logger?.child ? options.logger.child({ component: 'dns-filter' }) : options.logger;
  const log = createLimitedLogger(logger, rl);

  const listeners = new Set<(e: QueryEvent) => void>();
  if (options.onQuery) listeners.add(options.onQuery);

  const c = {
    queries: 0,
    allowed: 0,
    blocked: 0,
    failed: 0,
    invalid: 0,
    cacheHits: 0,
    cacheMisses: 0,
    overloaded: 0,
    hookFailures: 0,
    rebindingBlocked: 0,
    upstreamQueries: 0,
    upstreamTimeouts: 0,
    upstreamErrors: 0,
    tcpFallbacks: 0,
    spoofedDropped: 0,
  };
  const latencyCounts = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  let latencySumMs = 0;
  let inFlight = 0;
  let closed = false;

  const cache = createResponseCache(cacheSize);
  /** Queries waiting for onResolved, in start order (one constant timeout: deadlines are monotonic). */
  const hookWaiting = new Set<Ctx>();
  const hookSweep = setInterval(() => {
    const now = performance.now();
    for (const ctx of hookWaiting) {
      if (ctx.hookDeadline > now) break;
      hookWaiting.delete(ctx);
      if (ctx.done) continue;
      c.hookFailures++;
      fail(ctx, 'hook-failed', ctx.hookUpstream);
    }
  }, Math.max(5, Math.min(50, hookTimeoutMs / 4)));
  hookSweep.unref();
  const pool = createUpstreamPool({
    servers: cfg.upstreams,
    attemptTimeoutMs: upstreamTimeoutMs,
    maxAttempts,
    backoffMs,
    maxBackoffMs: 60_000,
    socketsPerFamily: upstreamSockets,
    counters: c,
  });

  // ---- bind UDP and TCP on the same port ----
  let udp: dgram.Socket | undefined;
  let tcp: net.Server | undefined;
  const tcpConns = createTcpConnectionTable<net.Socket>({ maxTotal: maxTcpConnections, maxPerClient: maxTcpPerClient }, (sock) => sock.destroy());
  let boundPort = wantPort;
  for (let attempt = 0; ; attempt++) {
    try {
      udp = await bindUdp(family, listenAddress, wantPort);
      boundPort = udp.address().port;
      if (tcpEnabled) {
        // no tcp.maxConnections: it refuses new connections; the table evicts idle ones instead
        tcp = net.createServer({ allowHalfOpen: false, pauseOnConnect: false });
        await listenTcp(tcp, listenAddress, boundPort);
      }
      break;
    } catch (e) {
      udp?.close();
      udp = undefined;
      tcp?.close();
      tcp = undefined;
      const inUse = (e as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (wantPort === 0 && attempt < 8 && inUse) continue;
      pool.close();
      log.close();
      throw new DnsFilterError(inUse ? 'NETFENCE_ERR_DNS_ADDRESS_IN_USE' : 'NETFENCE_ERR_DNS_LISTEN_FAILED', `cannot listen on ${listenAddress}:${wantPort}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }
  const udpSock = udp;
  const boundAddress: DnsFilterAddress = { address: listenAddress, port: boundPort, family };

  // ---- per-query pipeline ----
  function clamp(ttl: number, r: Resolved): number {
    return ttl < r.minTtl ? r.minTtl : ttl > r.maxTtl ? r.maxTtl : ttl;
  }

  function finish(
    ctx: Ctx,
    buf: Buffer,
    verdict: QueryVerdict,
    reason: QueryReason,
    cached: boolean,
    upstream?: string,
    addresses?: readonly string[],
  ): void {
    if (ctx.done) return;
    ctx.done = true;
    if (ctx.timer) clearTimeout(ctx.timer);
    inFlight--;
    if (!closed) {
      try {
        ctx.send(buf);
      } catch (e) {
        log.log('debug', 'send-failed', { err: e }, 'send failed');
      }
    }
    const ms = performance.now() - ctx.t0;
    latencySumMs += ms;
    let b = 0;
    while (b < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[b]!) b++;
    latencyCounts[b]!++;
    if (listeners.size > 0) {
      const ev: QueryEvent = {
        name: ctx.q.name,
        qtype: qtypeName(ctx.q.qtype),
        verdict,
        reason,
        ...(ctx.rule ? { rule: ctx.rule } : {}),
        rcode: rcodeName(buf.length >= 4 ? buf[3]! & 0xf : 0),
        latencyMs: Math.round(ms * 1000) / 1000,
        client: ctx.client,
        cached,
        ...(upstream !== undefined ? { upstream } : {}),
        ...(addresses !== undefined && addresses.length > 0 ? { addresses } : {}),
      };
      emit(ev);
    }
  }

  function emit(ev: QueryEvent): void {
    for (const l of listeners) {
      try {
        l(ev);
      } catch (e) {
        log.log('warn', 'query-listener', { err: e }, 'query listener threw');
      }
    }
  }

  function restoreId(ctx: Ctx): void {
    ctx.msg[0] = ctx.q.id >> 8;
    ctx.msg[1] = ctx.q.id & 0xff;
  }

  function fail(ctx: Ctx, reason: QueryReason, upstream?: string): void {
    if (ctx.done) return;
    restoreId(ctx);
    c.failed++;
    finish(ctx, buildEmptyResponse(ctx.msg, ctx.q.questionEnd, RCODE.SERVFAIL, ctx.q.edns), 'failed', reason, false, upstream);
  }

  function block(ctx: Ctx, reason: QueryReason): void {
    if (ctx.done) return;
    restoreId(ctx);
    c.blocked++;
    finish(ctx, buildEmptyResponse(ctx.msg, ctx.q.questionEnd, ctx.cfg.blockRcode, ctx.q.edns), 'blocked', reason, false);
  }

  /** Answers problems found before a Ctx exists (no in-flight slot taken). */
  function answerInvalid(msg: Buffer, questionEnd: number, rcode: number, reason: QueryReason, client: ClientInfo, send: Send, t0: number, name = '', qtype = 0, edns = false): void {
    c.invalid++;
    const buf = buildEmptyResponse(msg, questionEnd, rcode, edns);
    try {
      send(buf);
    } catch {
      // socket closed
    }
    if (listeners.size > 0) {
      emit({
        name,
        qtype: qtypeName(qtype),
        verdict: 'invalid',
        reason,
        rcode: rcodeName(rcode),
        latencyMs: Math.round((performance.now() - t0) * 1000) / 1000,
        client,
        cached: false,
      });
    }
  }

  /** Handles one message; returns false if it is dropped without any answer. */
  function handle(msg: Buffer, client: ClientInfo, send: Send, tcpTransport: boolean): boolean {
    const t0 = performance.now();
    c.queries++;
    const r = parseQuery(msg);
    if (!r.ok) {
      if (r.kind === 'drop') {
        c.invalid++;
        return false;
      }
      answerInvalid(msg, r.questionEnd, r.kind === 'formerr' ? RCODE.FORMERR : RCODE.NOTIMP, r.kind, client, send, t0);
      return true;
    }
    const q = r.query;
    if (q.qclass !== CLASS_IN) {
      answerInvalid(msg, q.questionEnd, RCODE.REFUSED, 'not-in-class', client, send, t0, q.name, q.qtype, q.edns);
      return true;
    }
    if (q.qtype === QTYPE.AXFR || q.qtype === QTYPE.IXFR) {
      answerInvalid(msg, q.questionEnd, RCODE.REFUSED, 'zone-transfer', client, send, t0, q.name, q.qtype, q.edns);
      return true;
    }
    const ctx: Ctx = {
      msg,
      q,
      client,
      send,
      maxSize: tcpTransport ? 65535 : q.edns ? q.ednsUdpSize : 512,
      t0,
      cfg,
      rule: undefined,
      learn: true,
      done: false,
      timer: undefined,
      hookDeadline: 0,
      hookUpstream: undefined,
    };
    inFlight++;
    if (inFlight > maxInFlight) {
      c.overloaded++;
      fail(ctx, 'overload');
      return true;
    }
    const mode = ctx.cfg.mode;
    if (mode === 'disabled') {
      forward(ctx, 'mode-disabled');
      return true;
    }
    if (mode === 'proxy') {
      proxyDecide(ctx);
      return true;
    }
    if (!q.nameClean) {
      block(ctx, 'invalid-name');
      return true;
    }
    let d: DomainDecision;
    try {
      d = ctx.cfg.ruleSet.decide(q.name);
    } catch {
      block(ctx, 'invalid-name');
      return true;
    }
    ctx.rule = d.rule;
    const reason = d.verdict === 'none' ? 'no-match' : 'rule';
    if (passesDns(d.verdict, noMatchVerdict(mode))) forward(ctx, reason);
    else block(ctx, reason);
    return true;
  }

  function proxyDecide(ctx: Ctx): void {
    const decide = ctx.cfg.decide;
    if (!decide) {
      fail(ctx, 'proxy-error');
      return;
    }
    if (!ctx.q.nameClean || ctx.q.name === '') {
      block(ctx, 'invalid-name');
      return;
    }
    ctx.timer = setTimeout(() => fail(ctx, 'proxy-timeout'), ctx.cfg.decideTimeoutMs);
    let p: Promise<ProxyDecision>;
    try {
      p = Promise.resolve(decide(ctx.q.name, qtypeName(ctx.q.qtype), ctx.client));
    } catch {
      fail(ctx, 'proxy-error');
      return;
    }
    p.then(
      (d) => {
        if (ctx.done) return;
        if (ctx.timer) clearTimeout(ctx.timer);
        ctx.timer = undefined;
        if (d === null || typeof d !== 'object' || !d.allow) {
          block(ctx, 'proxy');
          return;
        }
        ctx.learn = d.addToFilter !== false;
        const qt = ctx.q.qtype;
        if (Array.isArray(d.ips) && d.ips.length > 0 && (qt === QTYPE.A || qt === QTYPE.AAAA)) {
          const want = qt === QTYPE.A ? 4 : 16;
          const bytes: Uint8Array[] = [];
          const texts: string[] = [];
          for (const ip of d.ips) {
            const b = typeof ip === 'string' ? addressBytes(ip) : null;
            if (b && b.length === want) {
              bytes.push(b);
              texts.push(ip);
            }
          }
          const ttl = clamp(typeof d.ttlSec === 'number' && d.ttlSec >= 0 ? Math.floor(d.ttlSec) : ctx.cfg.minTtl, ctx.cfg);
          const buf = buildAddressResponse(ctx.msg, ctx.q.questionEnd, qt, bytes, ttl, ctx.q.edns);
          release(ctx, buf, texts, ttl, [], false, 'proxy', undefined);
          return;
        }
        forward(ctx, 'proxy');
      },
      () => fail(ctx, 'proxy-error'),
    );
  }

  function forward(ctx: Ctx, reason: QueryReason): void {
    const q = ctx.q;
    let key = '';
    if (cacheSize > 0) {
      key = cacheKey(q.qtype, q.edns, q.ednsDo, q.name);
      const hit = cache.get(key, Date.now());
      if (hit) {
        c.cacheHits++;
        deliverCached(ctx, hit, reason);
        return;
      }
      c.cacheMisses++;
    }
    if (pool.serverCount === 0) {
      fail(ctx, 'no-upstream');
      return;
    }
    // the client's buffer is ours: forward it in place (the pool rewrites the ID; finish() restores it)
    pool.query(q.end === ctx.msg.length ? ctx.msg : ctx.msg.subarray(0, q.end), q.name, q.qtype, q.qclass, (ans) => onUpstream(ctx, ans, key, reason));
  }

  function deliverCached(ctx: Ctx, hit: CachedAnswer, reason: QueryReason): void {
    const buf = Buffer.from(hit.buf);
    let ttl = 0;
    if (hit.ttlOffsets.length > 0) {
      ttl = clamp(Math.max(1, Math.ceil((hit.expiresAtMs - Date.now()) / 1000)), ctx.cfg);
      for (const o of hit.ttlOffsets) buf.writeUInt32BE(ttl, o);
    }
    release(ctx, buf, hit.addresses, ttl, [], true, reason, undefined);
  }

  function onUpstream(ctx: Ctx, ans: UpstreamAnswer | undefined, key: string, reason: QueryReason): void {
    if (ctx.done) return;
    if (ans === undefined) {
      fail(ctx, 'upstream-failed');
      return;
    }
    let buf = ans.buf;
    let parsed = ans.parsed;
    let chain = followChain(buf, ctx.q.name, parsed.answers);
    if (chain.foreign) {
      // strip records that are not on the question's CNAME chain
      buf = rebuildResponse(buf, parsed.questionEnd, parsed.answers, chain.chainRecords, ctx.q.edns && hasOpt(buf, parsed));
      const p2 = parseResponse(buf, ctx.q.name, ctx.q.qtype, ctx.q.qclass);
      if (p2 === null) {
        fail(ctx, 'upstream-failed', ans.server);
        return;
      }
      parsed = p2;
      chain = followChain(buf, ctx.q.name, parsed.answers);
    }
    const cfgNow = ctx.cfg;
    let ttl = 0;
    const ttlOffsets: number[] = [];
    if (chain.chainRecords.length > 0) {
      ttl = clamp(chain.minTtl ?? 0, cfgNow);
      rewriteTtls(buf, parsed.answers, chain.chainRecords, ttl);
      for (const i of chain.chainRecords) ttlOffsets.push(parsed.answers[i]!.ttlOffset);
    }
    if (key !== '' && (parsed.rcode === RCODE.NOERROR || parsed.rcode === RCODE.NXDOMAIN) && !parsed.truncated) {
      let life = 0;
      if (chain.chainRecords.length > 0) life = ttl;
      else if (parsed.soaTtl !== undefined) life = Math.min(parsed.soaTtl, cfgNow.maxTtl);
      if (life > 0) {
        cache.set(key, {
          buf: Buffer.from(buf),
          rcode: parsed.rcode,
          addresses: chain.addresses,
          ttlOffsets,
          expiresAtMs: Date.now() + life * 1000,
        });
      }
    }
    release(ctx, buf, chain.addresses, ttl, chain.names.slice(1), false, reason, ans.server);
  }

  function hasOpt(buf: Buffer, _parsed: { questionEnd: number }): boolean {
    return buf.length >= 12 && ((buf[10]! << 8) | buf[11]!) > 0;
  }

  /** Rebinding check, onResolved hook, then send. `buf` is owned by this query. */
  function release(
    ctx: Ctx,
    buf: Buffer,
    addresses: readonly string[],
    ttl: number,
    cnames: readonly string[],
    cached: boolean,
    reason: QueryReason,
    upstream: string | undefined,
  ): void {
    const r = ctx.cfg;
    if (r.rebinding && addresses.length > 0 && !r.rebindingAllowed.has(ctx.q.name)) {
      const exact = ctx.rule !== undefined && ctx.rule.action === 'allow' && !ctx.rule.includeSubdomains && ctx.rule.domain === ctx.q.name;
      if (!exact && addresses.some(isPrivateAddress)) {
        c.rebindingBlocked++;
        block(ctx, 'rebinding');
        return;
      }
    }
    // the client's ID and question (original case) on the answer
    restoreId(ctx);
    buf[0] = ctx.q.id >> 8;
    buf[1] = ctx.q.id & 0xff;
    ctx.msg.copy(buf, 12, 12, ctx.q.questionEnd);
    const out = buf.length > ctx.maxSize ? buildEmptyResponse(ctx.msg, ctx.q.questionEnd, buf[3]! & 0xf, ctx.q.edns, true) : buf;
    if (onResolved === undefined || addresses.length === 0 || !ctx.learn) {
      c.allowed++;
      finish(ctx, out, 'allowed', reason, cached, upstream, addresses);
      return;
    }
    let res: void | Promise<void>;
    const info: ResolvedInfo = { name: ctx.q.name, qtype: qtypeName(ctx.q.qtype), addresses, ttlSec: ttl, cnames, mode: r.mode, cached, client: ctx.client };
    try {
      res = onResolved(info);
    } catch (e) {
      c.hookFailures++;
      log.log('warn', 'hook-failed', { err: e, dns: { name: ctx.q.name } }, 'onResolved failed');
      fail(ctx, 'hook-failed', upstream);
      return;
    }
    if (res === undefined || typeof (res as Promise<void>).then !== 'function') {
      c.allowed++;
      finish(ctx, out, 'allowed', reason, cached, upstream, addresses);
      return;
    }
    ctx.hookDeadline = performance.now() + hookTimeoutMs;
    ctx.hookUpstream = upstream;
    hookWaiting.add(ctx);
    (res as Promise<void>).then(
      () => {
        hookWaiting.delete(ctx);
        if (ctx.done) return;
        c.allowed++;
        finish(ctx, out, 'allowed', reason, cached, upstream, addresses);
      },
      (e: unknown) => {
        hookWaiting.delete(ctx);
        if (ctx.done) return;
        c.hookFailures++;
        log.log('warn', 'hook-failed', { err: e, dns: { name: ctx.q.name } }, 'onResolved failed');
        fail(ctx, 'hook-failed', upstream);
      },
    );
  }

  // ---- transports ----
  udpSock.on('message', (msg, rinfo) => {
    if (closed) return;
    const client: ClientInfo = { address: rinfo.address, port: rinfo.port, transport: 'udp' };
    try {
      handle(msg, client, (b) => udpSock.send(b, rinfo.port, rinfo.address), false);
    } catch (e) {
      // a bug must never take the server down
      log.log('error', 'udp-handler', { err: e }, 'udp handler failed');
    }
  });
  udpSock.on('error', (e) => log.log('warn', 'udp-socket', { err: e }, 'udp socket error'));
  try {
    udpSock.setRecvBufferSize(4 * 1024 * 1024);
    udpSock.setSendBufferSize(4 * 1024 * 1024);
  } catch {
    // best effort
  }

  const tcpDeps = {
    handle: (msg: Buffer, client: ClientInfo, send: Send) => handle(msg, client, send, true),
    table: tcpConns,
    idleTimeoutMs: tcpIdleTimeoutMs,
    log,
  };
  tcp?.on('connection', (sock) => {
    if (closed) {
      sock.destroy();
      return;
    }
    serveTcpConnection(sock, tcpDeps);
  });
  tcp?.on('error', (e) => log.log('warn', 'tcp-server', { err: e }, 'tcp server error'));

  let closing: Promise<void> | undefined;
  const filter: DnsFilter = {
    address: boundAddress,
    get mode() {
      return cfg.mode;
    },
    update(settings) {
      if (closed) throw new DnsFilterError('NETFENCE_ERR_DNS_CLOSED', 'update() after close()');
      const next = resolveSettings(cfg, settings);
      const upstreamsChanged = settings.upstreams !== undefined;
      cfg = next;
      if (upstreamsChanged) {
        pool.setServers(next.upstreams);
        cache.clear();
      }
    },
    stats() {
      return {
        ...c,
        cacheSize: cache.size,
        inFlight,
        latencyBucketsMs: LATENCY_BUCKETS_MS,
        latencyCounts: [...latencyCounts],
        latencySumMs,
        tcpConnections: tcpConns.size,
        tcpEvicted: tcpConns.evicted,
        logSuppressed: log.suppressed,
        upstreams: pool.status(),
      };
    },
    on(event, listener) {
      if (event === 'query') listeners.add(listener);
      return this;
    },
    off(event, listener) {
      if (event === 'query') listeners.delete(listener);
      return this;
    },
    clearCache() {
      cache.clear();
    },
    close() {
      if (closing) return closing;
      closed = true;
      clearInterval(hookSweep);
      log.close();
      closing = (async () => {
        pool.close(); // in-flight upstream queries complete as failures (not sent: closed)
        await Promise.all([
          new Promise<void>((resolve) => {
            try {
              udpSock.close(() => resolve());
            } catch {
              resolve();
            }
          }),
          new Promise<void>((resolve) => {
            if (!tcp) return resolve();
            for (const s of [...tcpConns.sockets()]) s.destroy();
            tcp.close(() => resolve());
          }),
        ]);
        cache.clear();
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return filter.close();
    },
  };
  return filter;
}
