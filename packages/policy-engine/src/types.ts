// Public types of @netfence/policy-engine. Plain data, no classes from other
// netfence packages: a custom control plane can use these without the protos.
// Modes are lower-case strings; the daemon and the reference control plane map
// them to and from the netfence.v1 enums.

export type PolicyMode = 'disabled' | 'allowlist' | 'denylist' | 'block_all';
export type DnsMode = 'disabled' | 'allowlist' | 'denylist' | 'proxy';
export type RuleAction = 'allow' | 'deny';

/** A domain rule. `*.example.com` written by a user = {domain:'example.com', includeSubdomains:true}. */
export interface DomainRule {
  readonly domain: string; // normalised: lower case, no trailing dot, punycode
  readonly includeSubdomains: boolean;
  readonly action: RuleAction;
}

export interface DomainDecision {
  readonly verdict: 'allow' | 'deny' | 'none';
  /** The rule that decided; undefined when verdict is 'none'. */
  readonly rule?: DomainRule;
}

/** A parsed IP prefix, host bits masked. IPv4-mapped IPv6 becomes IPv4. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly prefixLen: number;
  /** 4 or 16 bytes, network order, host bits zero. */
  readonly bytes: Uint8Array;
  /** Canonical text, e.g. '10.0.0.0/16', '2001:db8::/32'. Used as the identity of the prefix. */
  readonly text: string;
}

export interface CidrRule {
  readonly cidr: string; // canonical text
  /** Absolute expiry (ms since epoch, injected clock), undefined = never. */
  readonly expiresAt?: number;
}

/** An address learned from a DNS answer. */
export interface LearnedAddress {
  readonly address: string; // canonical host prefix text, e.g. '203.0.113.7/32'
  readonly name: string; // the DNS name it came from
  readonly expiresAt: number; // ms, TTL already clamped
}

export interface DnsState {
  readonly mode: DnsMode;
  readonly allowDomains: readonly { domain: string; includeSubdomains: boolean }[];
  readonly denyDomains: readonly { domain: string; includeSubdomains: boolean }[];
  readonly upstreamServers: readonly string[];
}

/** Everything the daemon knows about one attachment's policy. Immutable; JSON-serialisable. */
export interface AttachmentPolicyState {
  readonly mode: PolicyMode;
  readonly dryRun: boolean;
  readonly allowCidrs: readonly CidrRule[];
  readonly denyCidrs: readonly CidrRule[];
  readonly dns: DnsState;
  readonly learned: readonly LearnedAddress[];
}

export interface CidrEntryInput {
  readonly cidr: string;
  /** Time to live in ms; undefined or 0 = no expiry. */
  readonly ttlMs?: number;
}

export interface DomainEntryInput {
  readonly domain: string; // may be written '*.example.com'
  readonly includeSubdomains: boolean;
}

export interface DnsConfigInput {
  readonly mode: DnsMode;
  readonly allowDomains: readonly DomainEntryInput[];
  readonly denyDomains: readonly DomainEntryInput[];
  readonly upstreamServers: readonly string[];
}

/** The netfence.v1 ControlCommand payloads (plus the dry-run extension), as plain data. */
export type PolicyCommand =
  | { readonly type: 'setMode'; readonly mode: PolicyMode }
  | { readonly type: 'allowCidr'; readonly entry: CidrEntryInput }
  | { readonly type: 'denyCidr'; readonly entry: CidrEntryInput }
  | { readonly type: 'removeCidr'; readonly cidr: string }
  | { readonly type: 'setDnsMode'; readonly mode: DnsMode }
  | { readonly type: 'allowDomain'; readonly entry: DomainEntryInput }
  | { readonly type: 'denyDomain'; readonly entry: DomainEntryInput }
  | { readonly type: 'removeDomain'; readonly domain: string }
  | { readonly type: 'setDryRun'; readonly dryRun: boolean }
  | {
      readonly type: 'bulkUpdate' | 'subscribedAck';
      readonly mode: PolicyMode;
      readonly allowCidrs: readonly CidrEntryInput[];
      readonly denyCidrs: readonly CidrEntryInput[];
      /** Missing on bulkUpdate = DNS disabled with no rules (spec point 4). */
      readonly dns?: DnsConfigInput;
      readonly dryRun?: boolean;
    };

/** What the kernel maps must hold for one attachment. */
export interface KernelView {
  readonly mode: PolicyMode;
  readonly dryRun: boolean;
  /** Canonical prefixes in the allow LPM maps (static allow CIDRs ∪ learned addresses). */
  readonly allow: ReadonlySet<string>;
  /** Canonical prefixes in the deny LPM maps. */
  readonly deny: ReadonlySet<string>;
}

export type KernelOp =
  | { readonly op: 'add'; readonly map: 'allow' | 'deny'; readonly cidr: string }
  | { readonly op: 'delete'; readonly map: 'allow' | 'deny'; readonly cidr: string }
  | { readonly op: 'setMode'; readonly mode: PolicyMode; readonly dryRun: boolean };
