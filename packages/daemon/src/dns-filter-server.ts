import { createDnsFilter, type ClientInfo, type DnsFilter, type ResolvedInfo } from '@netfence/dns-filter';
import { domainRuleSetFromDns, type DnsState } from '@netfence/policy-engine';
import type { Logger } from 'pino';
import { joinHostPort } from './attachments';
import type { DnsServer, DnsServerParams } from './dns-server-types';
import type { DnsTimings } from './daemon-metrics';
import type { EventHub } from './event-hub';
import type { WorkloadLog } from './workload-log';

export interface DnsDefaults {
  /** Upstreams used when the control plane gives none. */
  readonly upstreams: readonly string[];
  readonly minTtlSec: number;
  readonly maxTtlSec: number;
  readonly blockedRcode: 'refused' | 'nxdomain';
  readonly queryTimeoutMs: number;
  readonly logger: Logger;
  /** Where every line a workload's queries can trigger goes (rate limited per attachment). */
  readonly workloadLog: WorkloadLog;
  /** Upstream and map-write time of each answer (the daemon's histograms). */
  readonly timings?: DnsTimings;
  /** Where DNS decisions go for `netfenced events` (WatchEvents). */
  readonly events?: EventHub;
}

function settingsOf(policy: DnsState, d: DnsDefaults) {
  return {
    mode: policy.mode,
    rules: domainRuleSetFromDns(policy),
    upstreams: policy.upstreamServers.length ? [...policy.upstreamServers] : [...d.upstreams],
  };
}

/** One attachment's DNS server, on @netfence/dns-filter. */
export async function startFilterDnsServer(p: DnsServerParams, d: DnsDefaults): Promise<DnsServer> {
  // Every line this server writes (ours and the filter's own) counts against its attachment.
  const who = p.attachmentId ?? joinHostPort(p.host, p.port);
  const log = d.workloadLog.loggerFor('dns', who);
  // The filter reports a query's whole latency; the map write (onResolved, timed here) is taken
  // out of it to give the upstream's share. The two meet on the query's client object, which the
  // filter hands to both onResolved and the query's end event. It is one object per UDP datagram,
  // so the pairing is exact, and a map write that outlives its query (hook timeout) goes with it;
  // on TCP it is the connection's (pipelined queries may swap their map-write times).
  const mapWriteMs = new WeakMap<ClientInfo, number>();
  const onResolved = async (info: ResolvedInfo) => {
    const t0 = performance.now();
    await p.onResolved({ name: info.name, addresses: info.addresses, ttlSec: info.ttlSec });
    const ms = performance.now() - t0;
    d.timings?.mapWrite(ms / 1000);
    mapWriteMs.set(info.client, ms);
  };
  const filter: DnsFilter = await createDnsFilter({
    address: p.host,
    port: p.port,
    ...settingsOf(p.policy, d),
    minTtlSec: d.minTtlSec,
    maxTtlSec: d.maxTtlSec,
    blockResponse: d.blockedRcode,
    decide: (name, qtype) => p.decide(name, qtype),
    decideTimeoutMs: d.queryTimeoutMs,
    onResolved,
    onQuery: (e) => {
      const written = mapWriteMs.get(e.client) ?? 0;
      mapWriteMs.delete(e.client);
      if (e.verdict === 'allowed' && !e.cached && e.upstream !== undefined) d.timings?.upstream(Math.max(0, e.latencyMs - written) / 1000);
      d.events?.publish({ timeMs: Date.now(), attachmentId: who, kind: 'dns', dns: { name: e.name, qtype: e.qtype, verdict: e.verdict, reason: e.reason, rcode: e.rcode, addresses: e.addresses } });
      if (e.verdict !== 'allowed') log.info({ event: 'dns', query: { name: e.name, qtype: e.qtype }, verdict: e.verdict, reason: e.reason, rcode: e.rcode, client: e.client.address }, 'dns query not answered');
      else log.debug({ event: 'dns', query: { name: e.name, qtype: e.qtype }, verdict: e.verdict, rcode: e.rcode }, 'dns query');
    },
    logger: log,
  });
  return {
    address: joinHostPort(filter.address.address, filter.address.port),
    update: (policy) => filter.update(settingsOf(policy, d)),
    counters: () => {
      const s = filter.stats();
      return { allowed: BigInt(s.allowed), blocked: BigInt(s.blocked) };
    },
    close: () => filter.close(),
  };
}
