// @netfence/policy-engine: domain rules, CIDRs, attachment state and the safe
// kernel update plan. Pure TypeScript, no I/O, no runtime dependencies.

export { PolicyError, POLICY_ERROR_CODES } from './policy-error';
export type { PolicyErrorCode, PolicyErrorOptions } from './policy-error';

export { normalizeDomain, parseDomainPattern } from './domain-name';
export { createDomainRuleSet, domainRuleSetFromDns, noMatchVerdict, passesDns } from './domain-rules';
export type { DomainRuleSet } from './domain-rules';

export { parseRuleLine, parseRuleLines, parseTtl } from './rule-line';
export type { ParsedRule } from './rule-line';

export { parseCidr, parseAddress, canonicalCidr, cidrContains, compareCidrs, formatAddress } from './cidr';
export { createCidrTable } from './cidr-table';
export type { CidrTable } from './cidr-table';

export {
  emptyState,
  applyCommand,
  learnAddresses,
  expireState,
  nextExpiry,
  learnedFrom,
  parseState,
  checkPolicyMode,
  checkDnsMode,
  POLICY_MODES,
  DNS_MODES,
} from './attachment-state';
export type { LearnOptions, ExpireOptions } from './attachment-state';
export { LearnedTable } from './learned-table';
export type { LearnedTableOptions, LearnPlan, ExpiryPlan } from './learned-table';

export { configOf, diffConfigs, toBulkUpdate } from './policy-config';
export type { PolicyConfig } from './policy-config';

export {
  kernelView,
  emptyKernelView,
  planKernelOps,
  applyKernelOps,
  evaluateKernelView,
  kernelAllows,
} from './kernel-plan';
export type { KernelVerdict } from './kernel-plan';

export type {
  PolicyMode,
  DnsMode,
  RuleAction,
  DomainRule,
  DomainDecision,
  Cidr,
  CidrRule,
  LearnedAddress,
  DnsState,
  AttachmentPolicyState,
  CidrEntryInput,
  DomainEntryInput,
  DnsConfigInput,
  PolicyCommand,
  KernelView,
  KernelOp,
} from './types';
