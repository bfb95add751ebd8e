// The QueryDns decision (DNS proxy mode): the attachment's policy decides the name with its
// domain rules; names no rule matches get the policy's proxy_default.

import { create } from '@bufbuild/protobuf';
import { DnsQueryResponseSchema } from '@netfence/proto';
import type { DnsQueryResponse } from '@netfence/proto';
import { createDomainRuleSet, passesDns } from '@netfence/policy-engine';
import type { DomainRule, DomainRuleSet } from '@netfence/policy-engine';
import type { ControlPlaneMetrics } from './metrics';
import type { CompiledPolicy } from './policy-file';
import type { AttachmentRecord } from './session';

export type QueryDns = (req: { id: string; domain: string; queryType?: string }) => DnsQueryResponse;

/** Unknown attachments and invalid names are denied. */
export function createQueryDns(attachment: (id: string) => AttachmentRecord | undefined, metrics: ControlPlaneMetrics): QueryDns {
  // One rule set per compiled policy, built on first use and dropped with the policy.
  const ruleSets = new WeakMap<CompiledPolicy, DomainRuleSet>();
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

  return (req) => {
    const rec = attachment(req.id);
    let allow = false;
    if (rec?.policy) {
      try {
        const d = ruleSetOf(rec.policy).decide(req.domain);
        allow = passesDns(d.verdict, rec.policy.proxyDefault);
      } catch {
        allow = false;
      }
    }
    if (allow) metrics.dnsAllowed.inc();
    else metrics.dnsDenied.inc();
    return create(DnsQueryResponseSchema, { allow, addToFilter: true });
  };
}
