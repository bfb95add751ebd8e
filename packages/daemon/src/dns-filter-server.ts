import { createDnsFilter, type DnsFilter } from '@netfence/dns-filter';
import { domainRuleSetFromDns, type DnsState } from '@netfence/policy-engine';
import type { Logger } from 'pino';
import { joinHostPort } from './attachments';
import type { DnsServer, DnsServerParams } from './dns-server-types';
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
  const filter: DnsFilter = await createDnsFilter({
    address: p.host,
    port: p.port,
    ...settingsOf(p.policy, d),
    minTtlSec: d.minTtlSec,
    maxTtlSec: d.maxTtlSec,
    blockResponse: d.blockedRcode,
    decide: (name, qtype) => p.decide(name, qtype),
    decideTimeoutMs: d.queryTimeoutMs,
    onResolved: (info) => p.onResolved({ name: info.name, addresses: info.addresses, ttlSec: info.ttlSec }),
    onQuery: (e) => {
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
