// netfence.v1 ControlCommand -> policy-engine PolicyCommand (what a daemon receives).
// A message that cannot be converted is refused whole (PolicyWireError), never half-read.

import { DnsMode as PbDnsMode, PolicyMode as PbPolicyMode } from '@netfence/proto';
import type { CIDREntry, ControlCommand, DnsConfig, DomainEntry } from '@netfence/proto';
import type { AttachmentPolicyState, CidrEntryInput, DnsConfigInput, DnsMode, DomainEntryInput, PolicyCommand, PolicyMode } from '@netfence/policy-engine';
import { dnsModeFromPb, policyModeFromPb } from './modes';
import { PolicyWireError } from './policy-wire-error';

function bad(what: string): never {
  throw new PolicyWireError('NETFENCE_ERR_INVALID_MESSAGE', what);
}

function policyMode(m: PbPolicyMode, where: string): PolicyMode {
  return policyModeFromPb(m) ?? bad(`${where}: policy mode ${PbPolicyMode[m] ?? m} is not a mode`);
}

function dnsMode(m: PbDnsMode, where: string): DnsMode {
  return dnsModeFromPb(m) ?? bad(`${where}: dns mode ${PbDnsMode[m] ?? m} is not a mode`);
}

/** A CIDREntry as policy-engine input; a zero or missing TTL means no expiry. */
export function cidrEntryFromPb(e: CIDREntry): CidrEntryInput {
  if (!e.ttl) return { cidr: e.cidr };
  const ms = Number(e.ttl.seconds) * 1000 + Math.floor(e.ttl.nanos / 1e6);
  if (ms < 0) bad(`cidr ${JSON.stringify(e.cidr)}: negative ttl`);
  return ms === 0 ? { cidr: e.cidr } : { cidr: e.cidr, ttlMs: ms };
}

function domainEntry(e: DomainEntry): DomainEntryInput {
  return { domain: e.domain, includeSubdomains: e.includeSubdomains };
}

/** A DnsConfig as policy-engine input; UNSPECIFIED mode with no rules means disabled. */
export function dnsConfigFromPb(d: DnsConfig | undefined, where: string): DnsConfigInput | undefined {
  if (!d) return undefined;
  let mode: DnsMode;
  if (d.mode === PbDnsMode.UNSPECIFIED) {
    if (d.allowDomains.length || d.denyDomains.length) bad(`${where}: dns.mode is unspecified but rules are given`);
    mode = 'disabled';
  } else {
    mode = dnsMode(d.mode, where);
  }
  return { mode, allowDomains: d.allowDomains.map(domainEntry), denyDomains: d.denyDomains.map(domainEntry), upstreamServers: [...d.upstreamServers] };
}

/**
 * The policy-engine command a ControlCommand carries. `current` supplies what a
 * SubscribedAck leaves unspecified (it applies on top of the current state: an
 * unspecified mode keeps it). Returns undefined for SyncAck (nothing to apply).
 */
export function commandFromPb(cmd: ControlCommand, current: Pick<AttachmentPolicyState, 'mode'>): PolicyCommand | undefined {
  const c = cmd.command;
  const where = `command ${c.case ?? '(empty)'} for ${JSON.stringify(cmd.id)}`;
  switch (c.case) {
    case 'syncAck':
      return undefined;
    case 'setMode':
      return { type: 'setMode', mode: policyMode(c.value.mode, where) };
    case 'allowCidr':
      return { type: 'allowCidr', entry: cidrEntryFromPb(c.value) };
    case 'denyCidr':
      return { type: 'denyCidr', entry: cidrEntryFromPb(c.value) };
    case 'removeCidr':
      return { type: 'removeCidr', cidr: c.value };
    case 'setDnsMode':
      return { type: 'setDnsMode', mode: dnsMode(c.value.mode, where) };
    case 'allowDomain':
      return { type: 'allowDomain', entry: domainEntry(c.value) };
    case 'denyDomain':
      return { type: 'denyDomain', entry: domainEntry(c.value) };
    case 'removeDomain':
      return { type: 'removeDomain', domain: c.value };
    case 'setDryRun':
      return { type: 'setDryRun', dryRun: c.value.dryRun };
    case 'bulkUpdate':
    case 'subscribedAck': {
      const v = c.value;
      return {
        type: c.case,
        mode: c.case === 'subscribedAck' && v.mode === PbPolicyMode.UNSPECIFIED ? current.mode : policyMode(v.mode, where),
        allowCidrs: v.allowCidrs.map(cidrEntryFromPb),
        denyCidrs: v.denyCidrs.map(cidrEntryFromPb),
        dns: dnsConfigFromPb(v.dns, where),
        dryRun: v.dryRun,
      };
    }
    default:
      return bad(`${where}: no command in the message`);
  }
}
