// The daemon's view of one attachment's DNS server (types only; the server is started by
// dns-filter-server.ts over @netfence/dns-filter, for the attachment runtime).

import type { DnsState } from '@netfence/policy-engine';

export interface ResolvedAnswer {
  readonly name: string;
  readonly addresses: readonly string[];
  readonly ttlSec: number;
}

export interface ProxyDecision {
  readonly allow: boolean;
  readonly ips?: readonly string[];
  readonly addToFilter?: boolean;
  readonly ttlSec?: number;
}

export interface DnsServerParams {
  /** The attachment this server filters for (names it in log lines and their rate limit). */
  readonly attachmentId?: string;
  readonly host: string;
  readonly port: number;
  readonly policy: DnsState;
  /** Awaited before an answer is released; a rejection makes the answer SERVFAIL. */
  readonly onResolved: (answer: ResolvedAnswer) => Promise<void>;
  /** Proxy mode: asks the control plane. */
  readonly decide: (name: string, qtype: string) => Promise<ProxyDecision>;
}

export interface DnsServer {
  /** host:port the server listens on (UDP and TCP). */
  readonly address: string;
  update(policy: DnsState): void;
  counters(): { allowed: bigint; blocked: bigint };
  close(): Promise<void>;
}

export type StartDnsServer = (p: DnsServerParams) => Promise<DnsServer>;
