// The public types of @netfence/dns-filter: options, settings, events, stats and the
// DnsFilter handle. No code: every module of the package may import this one.

import type { DnsMode, DomainEntryInput, DomainRule, DomainRuleSet } from '@netfence/policy-engine';

import type { UpstreamStatus } from './upstream-health';

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
