// netfence.v1 enums <-> policy-engine's lower-case names.

import { AttachmentType, DnsMode as PbDnsMode, PolicyMode as PbPolicyMode } from '@netfence/proto';
import type { DnsMode, PolicyMode } from '@netfence/policy-engine';

const POLICY_MODES: Readonly<Partial<Record<PbPolicyMode, PolicyMode>>> = {
  [PbPolicyMode.DISABLED]: 'disabled',
  [PbPolicyMode.ALLOWLIST]: 'allowlist',
  [PbPolicyMode.DENYLIST]: 'denylist',
  [PbPolicyMode.BLOCK_ALL]: 'block_all',
};
const DNS_MODES: Readonly<Partial<Record<PbDnsMode, DnsMode>>> = {
  [PbDnsMode.DISABLED]: 'disabled',
  [PbDnsMode.ALLOWLIST]: 'allowlist',
  [PbDnsMode.DENYLIST]: 'denylist',
  [PbDnsMode.PROXY]: 'proxy',
};
const POLICY_MODES_PB: Readonly<Record<PolicyMode, PbPolicyMode>> = {
  disabled: PbPolicyMode.DISABLED,
  allowlist: PbPolicyMode.ALLOWLIST,
  denylist: PbPolicyMode.DENYLIST,
  block_all: PbPolicyMode.BLOCK_ALL,
};
const DNS_MODES_PB: Readonly<Record<DnsMode, PbDnsMode>> = {
  disabled: PbDnsMode.DISABLED,
  allowlist: PbDnsMode.ALLOWLIST,
  denylist: PbDnsMode.DENYLIST,
  proxy: PbDnsMode.PROXY,
};

/** The policy mode of a wire enum value; undefined for UNSPECIFIED and unknown values. */
export function policyModeFromPb(m: PbPolicyMode): PolicyMode | undefined {
  return POLICY_MODES[m];
}

/** The DNS mode of a wire enum value; undefined for UNSPECIFIED and unknown values. */
export function dnsModeFromPb(m: PbDnsMode): DnsMode | undefined {
  return DNS_MODES[m];
}

export function policyModeToPb(m: PolicyMode): PbPolicyMode {
  return POLICY_MODES_PB[m];
}

export function dnsModeToPb(m: DnsMode): PbDnsMode {
  return DNS_MODES_PB[m];
}

export function attachmentTypeToPb(kind: 'tc' | 'cgroup'): AttachmentType {
  return kind === 'tc' ? AttachmentType.TC : AttachmentType.CGROUP;
}

/** A wire policy mode as lower-case text for messages and logs ('allowlist', 'block_all', '7'). */
export function policyModeName(m: PbPolicyMode): string {
  return PbPolicyMode[m]?.toLowerCase() ?? String(m);
}
