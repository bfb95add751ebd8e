// netfence.v1 messages -> @netfence/policy-engine commands, and back for reports.
// A message that cannot be converted is rejected whole with INVALID_ARGUMENT.

import { AttachmentType, DnsMode as PbDnsMode, PolicyMode as PbPolicyMode } from '@netfence/proto';
import type { CIDREntry, ControlCommand, DnsConfig, DomainEntry } from '@netfence/proto';
import type { AttachmentPolicyState, CidrEntryInput, DnsConfigInput, DnsMode, DomainEntryInput, PolicyCommand, PolicyMode } from '@netfence/policy-engine';
import { DaemonError } from './daemon-error';

const POLICY_MODES: Partial<Record<PbPolicyMode, PolicyMode>> = {
  [PbPolicyMode.DISABLED]: 'disabled',
  [PbPolicyMode.ALLOWLIST]: 'allowlist',
  [PbPolicyMode.DENYLIST]: 'denylist',
  [PbPolicyMode.BLOCK_ALL]: 'block_all',
};
const DNS_MODES: Partial<Record<PbDnsMode, DnsMode>> = {
  [PbDnsMode.DISABLED]: 'disabled',
  [PbDnsMode.ALLOWLIST]: 'allowlist',
  [PbDnsMode.DENYLIST]: 'denylist',
  [PbDnsMode.PROXY]: 'proxy',
};

function bad(what: string): never {
  throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', what);
}

export function policyModeFromPb(m: PbPolicyMode, where: string): PolicyMode {
  return POLICY_MODES[m] ?? bad(`${where}: policy mode ${PbPolicyMode[m] ?? m} is not a mode`);
}

export function policyModeToPb(m: PolicyMode): PbPolicyMode {
  return { disabled: PbPolicyMode.DISABLED, allowlist: PbPolicyMode.ALLOWLIST, denylist: PbPolicyMode.DENYLIST, block_all: PbPolicyMode.BLOCK_ALL }[m];
}

export function dnsModeToPb(m: DnsMode): PbDnsMode {
  return { disabled: PbDnsMode.DISABLED, allowlist: PbDnsMode.ALLOWLIST, denylist: PbDnsMode.DENYLIST, proxy: PbDnsMode.PROXY }[m];
}

export function attachmentTypeToPb(kind: 'tc' | 'cgroup'): AttachmentType {
  return kind === 'tc' ? AttachmentType.TC : AttachmentType.CGROUP;
}

function cidrEntry(e: CIDREntry): CidrEntryInput {
  if (!e.ttl) return { cidr: e.cidr };
  const ms = Number(e.ttl.seconds) * 1000 + Math.floor(e.ttl.nanos / 1e6);
  if (ms < 0) bad(`cidr ${JSON.stringify(e.cidr)}: negative ttl`);
  return ms === 0 ? { cidr: e.cidr } : { cidr: e.cidr, ttlMs: ms };
}

function domainEntry(e: DomainEntry): DomainEntryInput {
  return { domain: e.domain, includeSubdomains: e.includeSubdomains };
}

function dnsConfig(d: DnsConfig | undefined, where: string): DnsConfigInput | undefined {
  if (!d) return undefined;
  let mode: DnsMode;
  if (d.mode === PbDnsMode.UNSPECIFIED) {
    if (d.allowDomains.length || d.denyDomains.length) bad(`${where}: dns.mode is unspecified but rules are given`);
    mode = 'disabled';
  } else {
    mode = DNS_MODES[d.mode] ?? bad(`${where}: dns mode ${d.mode} is not a mode`);
  }
  return { mode, allowDomains: d.allowDomains.map(domainEntry), denyDomains: d.denyDomains.map(domainEntry), upstreamServers: [...d.upstreamServers] };
}

/**
 * Converts a ControlCommand to the policy-engine command it carries.
 * `current` supplies what SubscribedAck leaves unspecified (it applies on top of the current state).
 * Returns undefined for SyncAck (nothing to apply).
 */
export function commandFromPb(cmd: ControlCommand, current: AttachmentPolicyState): PolicyCommand | undefined {
  const c = cmd.command;
  const where = `command ${c.case ?? '(empty)'} for ${JSON.stringify(cmd.id)}`;
  switch (c.case) {
    case 'syncAck':
      return undefined;
    case 'setMode':
      return { type: 'setMode', mode: policyModeFromPb(c.value.mode, where) };
    case 'allowCidr':
      return { type: 'allowCidr', entry: cidrEntry(c.value) };
    case 'denyCidr':
      return { type: 'denyCidr', entry: cidrEntry(c.value) };
    case 'removeCidr':
      return { type: 'removeCidr', cidr: c.value };
    case 'setDnsMode': {
      const mode = DNS_MODES[c.value.mode] ?? bad(`${where}: dns mode ${c.value.mode} is not a mode`);
      return { type: 'setDnsMode', mode };
    }
    case 'allowDomain':
      return { type: 'allowDomain', entry: domainEntry(c.value) };
    case 'denyDomain':
      return { type: 'denyDomain', entry: domainEntry(c.value) };
    case 'removeDomain':
      return { type: 'removeDomain', domain: c.value };
    case 'setDryRun':
      return { type: 'setDryRun', dryRun: c.value.dryRun };
    case 'bulkUpdate':
      return {
        type: 'bulkUpdate',
        mode: policyModeFromPb(c.value.mode, where),
        allowCidrs: c.value.allowCidrs.map(cidrEntry),
        denyCidrs: c.value.denyCidrs.map(cidrEntry),
        dns: dnsConfig(c.value.dns, where),
        dryRun: c.value.dryRun,
      };
    case 'subscribedAck':
      return {
        type: 'subscribedAck',
        // SubscribedAck applies on top of the current state: an unspecified mode keeps it.
        mode: c.value.mode === PbPolicyMode.UNSPECIFIED ? current.mode : policyModeFromPb(c.value.mode, where),
        allowCidrs: c.value.allowCidrs.map(cidrEntry),
        denyCidrs: c.value.denyCidrs.map(cidrEntry),
        dns: dnsConfig(c.value.dns, where),
        dryRun: c.value.dryRun,
      };
    default:
      return bad(`${where}: no command in the message`);
  }
}
