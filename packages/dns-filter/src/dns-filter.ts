// createDnsFilter: a filtering DNS server (UDP + TCP on one address and port).
//
// Hot path (UDP): node:dgram + the hand-written codec in wire.ts; dns2 is not
// on it (see README for the measured reason). Per query:
//   parse strictly -> policy decision (rules, or the async proxy callback with
//   a deadline) -> cache or upstream (shared sockets, random IDs, validated
//   answers, TCP on TC=1, failover) -> follow the CNAME chain from the
//   question name -> clamp and rewrite TTLs -> optional rebinding check ->
//   await onResolved(addresses) -> only then send. Any failure = SERVFAIL.
//
// This factory only composes: settings.ts (validation, update() merge),
// listeners.ts (UDP, TCP), query-pipeline.ts (the steps above), query-stats.ts.

import { DnsFilterError } from './dns-filter-error';
import { createLimitedLogger } from './limited-logger';
import { startListeners, type Listeners } from './listeners';
import { createQueryPipeline } from './query-pipeline';
import { LATENCY_BUCKETS_MS, createQueryStats } from './query-stats';
import { createResponseCache } from './response-cache';
import { invalidOptions, mergeSettings, resolveLimits } from './settings';
import type { DnsFilter, DnsFilterOptions, QueryEvent } from './types';
import { createUpstreamPool } from './upstream-pool';

/** Starts a filtering DNS server. Resolves once UDP (and TCP) listen on the same port. */
export async function createDnsFilter(options: DnsFilterOptions): Promise<DnsFilter> {
  if (options === null || typeof options !== 'object') throw invalidOptions('options required');
  let cfg = mergeSettings(undefined, options);
  const limits = resolveLimits(options);
  const logger = options.logger?.child ? options.logger.child({ component: 'dns-filter' }) : options.logger;
  const log = createLimitedLogger(logger, limits.logRateLimit);
  const listeners = new Set<(e: QueryEvent) => void>();
  if (options.onQuery) listeners.add(options.onQuery);
  const stats = createQueryStats();
  const cache = createResponseCache(limits.cacheSize);
  const pool = createUpstreamPool({
    servers: cfg.upstreams,
    attemptTimeoutMs: limits.upstreamTimeoutMs,
    maxAttempts: limits.upstreamMaxAttempts,
    backoffMs: limits.upstreamBackoffMs,
    maxBackoffMs: 60_000,
    socketsPerFamily: limits.upstreamSockets,
    counters: stats.counters,
  });
  const pipeline = createQueryPipeline({
    settings: () => cfg,
    stats,
    listeners,
    log,
    cache,
    cacheSize: limits.cacheSize,
    pool,
    maxInFlight: limits.maxInFlight,
    onResolved: options.onResolved,
    hookTimeoutMs: limits.hookTimeoutMs,
  });
  let io: Listeners;
  try {
    io = await startListeners(limits, pipeline.handle, log);
  } catch (e) {
    pipeline.close();
    pool.close();
    log.close();
    throw e;
  }

  let closing: Promise<void> | undefined;
  const filter: DnsFilter = {
    address: io.address,
    get mode() {
      return cfg.mode;
    },
    update(settings) {
      if (closing) throw new DnsFilterError('NETFENCE_ERR_DNS_CLOSED', 'update() after close()');
      const next = mergeSettings(cfg, settings);
      cfg = next;
      if (settings.upstreams !== undefined) {
        pool.setServers(next.upstreams);
        cache.clear();
      }
    },
    stats() {
      return {
        ...stats.counters,
        cacheSize: cache.size,
        inFlight: pipeline.inFlight,
        latencyBucketsMs: LATENCY_BUCKETS_MS,
        latencyCounts: [...stats.latencyCounts],
        latencySumMs: stats.latencySumMs,
        tcpConnections: io.tcpConnections.size,
        tcpEvicted: io.tcpConnections.evicted,
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
      pipeline.close();
      log.close();
      pool.close(); // in-flight upstream queries complete as failures (not sent: closed)
      closing = io.close().then(() => cache.clear());
      return closing;
    },
    [Symbol.asyncDispose]() {
      return filter.close();
    },
  };
  return filter;
}
