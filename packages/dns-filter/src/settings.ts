// Settings of one filter: validation, defaults, and the merge update() applies live.
// `FilterSettings` is what the query path reads (replaced whole by update(), never
// changed in place); `FilterLimits` is fixed at start (listen address, caps, timeouts).

import net from 'node:net';

import {
  createDomainRuleSet,
  normalizeDomain,
  parseDomainPattern,
  type DnsMode,
  type DomainEntryInput,
  type DomainRule,
  type DomainRuleSet,
} from '@netfence/policy-engine';

import { MAX_CACHE_SIZE, MAX_TTL_SEC } from './config-file';
import { DnsFilterError } from './dns-filter-error';
import type { LimitedLoggerOptions } from './limited-logger';
import type { DnsFilterOptions, DnsFilterSettings, DomainInput, ProxyDecide } from './types';
import { parseUpstream, type UpstreamServer } from './upstream-server';
import { RCODE } from './wire';

/** The live settings, complete and validated: what a query is decided and answered with. */
export interface FilterSettings {
  readonly mode: DnsMode;
  readonly ruleSet: DomainRuleSet;
  readonly allow: readonly DomainEntryInput[];
  readonly deny: readonly DomainEntryInput[];
  readonly upstreams: readonly UpstreamServer[];
  readonly decide: ProxyDecide | undefined;
  readonly decideTimeoutMs: number;
  /** RCODE of the answer to a blocked name (REFUSED or NXDOMAIN). */
  readonly blockRcode: number;
  readonly minTtl: number;
  readonly maxTtl: number;
  readonly rebinding: boolean;
  readonly rebindingAllowed: ReadonlySet<string>;
}

/** Options fixed for the life of the filter, validated, defaults applied. */
export interface FilterLimits {
  readonly address: string;
  readonly family: 4 | 6;
  /** 0 = ephemeral. */
  readonly port: number;
  readonly hookTimeoutMs: number;
  readonly cacheSize: number;
  readonly maxInFlight: number;
  readonly upstreamTimeoutMs: number;
  readonly upstreamMaxAttempts: number;
  readonly upstreamBackoffMs: number;
  readonly upstreamSockets: number;
  readonly tcp: boolean;
  readonly tcpIdleTimeoutMs: number;
  readonly maxTcpConnections: number;
  readonly maxTcpConnectionsPerClient: number;
  readonly logRateLimit: LimitedLoggerOptions;
}

const MODES: readonly DnsMode[] = ['disabled', 'allowlist', 'denylist', 'proxy'];

/** Defaults of the live settings (netfence-dns states them in --help and in its messages). */
export const SETTINGS_DEFAULTS = { decideTimeoutMs: 2000, blockResponse: 'refused', minTtlSec: 30, maxTtlSec: 3600 } as const;

/** The error for an option that does not validate. */
export function invalidOptions(msg: string, cause?: unknown): DnsFilterError {
  return new DnsFilterError('NETFENCE_ERR_DNS_INVALID_OPTIONS', msg, cause === undefined ? undefined : { cause });
}

function toEntries(list: readonly DomainInput[], key: string): DomainEntryInput[] {
  if (!Array.isArray(list)) throw invalidOptions(`${key} must be an array`);
  return list.map((d, i) => {
    try {
      const p = typeof d === 'string' ? parseDomainPattern(d) : parseDomainPattern(d.domain, d.includeSubdomains);
      return { domain: p.domain, includeSubdomains: p.includeSubdomains };
    } catch (e) {
      throw invalidOptions(`${key}[${i}] ${JSON.stringify(typeof d === 'string' ? d : d.domain)}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  });
}

function nonNegInt(v: unknown, key: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalidOptions(`${key} must be a non-negative integer`);
  return v;
}

function ruleSetOf(cur: FilterSettings | undefined, s: DnsFilterSettings, allow: readonly DomainEntryInput[], deny: readonly DomainEntryInput[]): DomainRuleSet {
  if (s.rules !== undefined) return s.rules;
  if (s.allow === undefined && s.deny === undefined && cur !== undefined) return cur.ruleSet;
  return createDomainRuleSet([
    ...allow.map((e): DomainRule => ({ domain: e.domain, includeSubdomains: e.includeSubdomains, action: 'allow' })),
    ...deny.map((e): DomainRule => ({ domain: e.domain, includeSubdomains: e.includeSubdomains, action: 'deny' })),
  ]);
}

function rebindingAllowedOf(cur: FilterSettings | undefined, names: readonly string[] | undefined): ReadonlySet<string> {
  if (names === undefined) return cur?.rebindingAllowed ?? new Set<string>();
  return new Set(
    names.map((n, i) => {
      try {
        return normalizeDomain(n);
      } catch (e) {
        throw invalidOptions(`rebindingAllowedNames[${i}]: ${e instanceof Error ? e.message : String(e)}`, e);
      }
    }),
  );
}

/**
 * Validates `s` on top of the current settings (undefined at start: defaults) and returns
 * the complete new settings. Pure: throws before anything changes, so update() never
 * half-applies.
 */
export function mergeSettings(cur: FilterSettings | undefined, s: DnsFilterSettings): FilterSettings {
  const mode = s.mode ?? cur?.mode;
  if (mode === undefined || !MODES.includes(mode)) throw invalidOptions(`mode must be one of ${MODES.join(', ')}`);
  const allow = s.allow !== undefined ? toEntries(s.allow, 'allow') : (cur?.allow ?? []);
  const deny = s.deny !== undefined ? toEntries(s.deny, 'deny') : (cur?.deny ?? []);
  const ruleSet = ruleSetOf(cur, s, allow, deny);
  const upstreams = s.upstreams !== undefined ? s.upstreams.map((u) => parseUpstream(u)) : (cur?.upstreams ?? []);
  const decide = 'decide' in s ? s.decide : cur?.decide;
  if (decide !== undefined && typeof decide !== 'function') throw invalidOptions('decide must be a function');
  const decideTimeoutMs = s.decideTimeoutMs !== undefined ? nonNegInt(s.decideTimeoutMs, 'decideTimeoutMs') : (cur?.decideTimeoutMs ?? SETTINGS_DEFAULTS.decideTimeoutMs);
  const br = s.blockResponse ?? (cur ? (cur.blockRcode === RCODE.NXDOMAIN ? 'nxdomain' : 'refused') : SETTINGS_DEFAULTS.blockResponse);
  if (br !== 'refused' && br !== 'nxdomain') throw invalidOptions(`blockResponse must be 'refused' or 'nxdomain'`);
  const minTtl = s.minTtlSec !== undefined ? nonNegInt(s.minTtlSec, 'minTtlSec') : (cur?.minTtl ?? SETTINGS_DEFAULTS.minTtlSec);
  const maxTtl = s.maxTtlSec !== undefined ? nonNegInt(s.maxTtlSec, 'maxTtlSec') : (cur?.maxTtl ?? SETTINGS_DEFAULTS.maxTtlSec);
  if (minTtl > maxTtl) throw invalidOptions(`minTtlSec (${minTtl}) > maxTtlSec (${maxTtl})`);
  if (maxTtl > MAX_TTL_SEC) throw invalidOptions('maxTtlSec too large');
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
    rebinding: s.rebindingProtection ?? cur?.rebinding ?? false,
    rebindingAllowed: rebindingAllowedOf(cur, s.rebindingAllowedNames),
  };
}

/** Validates the start-only options; every bad one is named in the error. */
export function resolveLimits(options: DnsFilterOptions): FilterLimits {
  const address = options.address ?? '127.0.0.1';
  const family: 4 | 6 = net.isIPv4(address) ? 4 : net.isIPv6(address) ? 6 : (0 as 4);
  if (family !== 4 && family !== 6) throw invalidOptions(`address ${JSON.stringify(address)} is not an IP address`);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidOptions('port must be 0..65535');
  const hookTimeoutMs = nonNegInt(options.hookTimeoutMs ?? 2000, 'hookTimeoutMs');
  const cacheSize = nonNegInt(options.cacheSize ?? 10000, 'cacheSize');
  if (cacheSize > MAX_CACHE_SIZE) throw invalidOptions(`cacheSize must be at most ${MAX_CACHE_SIZE}`);
  const maxInFlight = nonNegInt(options.maxInFlight ?? 4096, 'maxInFlight');
  const upstreamTimeoutMs = nonNegInt(options.upstreamTimeoutMs ?? 1000, 'upstreamTimeoutMs');
  const upstreamMaxAttempts = nonNegInt(options.upstreamMaxAttempts ?? 3, 'upstreamMaxAttempts');
  const upstreamBackoffMs = nonNegInt(options.upstreamBackoffMs ?? 2000, 'upstreamBackoffMs');
  const upstreamSockets = nonNegInt(options.upstreamSockets ?? 4, 'upstreamSockets');
  const tcp = options.tcp ?? true;
  const tcpIdleTimeoutMs = nonNegInt(options.tcpIdleTimeoutMs ?? 10000, 'tcpIdleTimeoutMs');
  const maxTcpConnections = nonNegInt(options.maxTcpConnections ?? 512, 'maxTcpConnections');
  const maxTcpConnectionsPerClient = nonNegInt(options.maxTcpConnectionsPerClient ?? 64, 'maxTcpConnectionsPerClient');
  if (maxTcpConnections < 1 || maxTcpConnectionsPerClient < 1) throw invalidOptions('maxTcpConnections and maxTcpConnectionsPerClient must be at least 1');
  const logRateLimit = options.logRateLimit ?? {};
  for (const k of ['perSecond', 'burst', 'summaryIntervalMs'] as const) {
    const v = logRateLimit[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) throw invalidOptions(`logRateLimit.${k} must be a positive number`);
  }
  if (logRateLimit.burst !== undefined && logRateLimit.burst < 1) throw invalidOptions('logRateLimit.burst must be at least 1');
  return {
    address,
    family,
    port,
    hookTimeoutMs,
    cacheSize,
    maxInFlight,
    upstreamTimeoutMs,
    upstreamMaxAttempts,
    upstreamBackoffMs,
    upstreamSockets,
    tcp,
    tcpIdleTimeoutMs,
    maxTcpConnections,
    maxTcpConnectionsPerClient,
    logRateLimit,
  };
}

/** A TTL clamped to the settings' [minTtl, maxTtl]. */
export function clampTtl(ttl: number, s: FilterSettings): number {
  return ttl < s.minTtl ? s.minTtl : ttl > s.maxTtl ? s.maxTtl : ttl;
}
