// One way only: @netfence/policy-engine plain data -> netfence.v1 messages (what the control
// plane sends). The daemon maps the other way in its own convert.ts.

import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  CIDREntrySchema,
  ControlCommandSchema,
  DnsConfigSchema,
  DnsMode as PbDnsMode,
  PolicyMode as PbPolicyMode,
} from '@netfence/proto';
import type { CIDREntry, ControlCommand, DnsConfig } from '@netfence/proto';
import type { CidrEntryInput, DnsConfigInput, DnsMode, PolicyCommand, PolicyConfig, PolicyMode } from '@netfence/policy-engine';

export function policyModeToPb(m: PolicyMode): PbPolicyMode {
  switch (m) {
    case 'disabled':
      return PbPolicyMode.DISABLED;
    case 'allowlist':
      return PbPolicyMode.ALLOWLIST;
    case 'denylist':
      return PbPolicyMode.DENYLIST;
    case 'block_all':
      return PbPolicyMode.BLOCK_ALL;
  }
}

export function dnsModeToPb(m: DnsMode): PbDnsMode {
  switch (m) {
    case 'disabled':
      return PbDnsMode.DISABLED;
    case 'allowlist':
      return PbDnsMode.ALLOWLIST;
    case 'denylist':
      return PbDnsMode.DENYLIST;
    case 'proxy':
      return PbDnsMode.PROXY;
  }
}

export function policyModeName(m: PbPolicyMode): string {
  return PbPolicyMode[m]?.toLowerCase() ?? String(m);
}

export function cidrEntryToPb(e: CidrEntryInput): CIDREntry {
  const ms = e.ttlMs ?? 0;
  if (ms <= 0) return create(CIDREntrySchema, { cidr: e.cidr });
  return create(CIDREntrySchema, {
    cidr: e.cidr,
    ttl: create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 }),
  });
}

export function dnsConfigToPb(d: DnsConfigInput): DnsConfig {
  return create(DnsConfigSchema, {
    mode: dnsModeToPb(d.mode),
    allowDomains: d.allowDomains.map((x) => ({ domain: x.domain, includeSubdomains: x.includeSubdomains })),
    denyDomains: d.denyDomains.map((x) => ({ domain: x.domain, includeSubdomains: x.includeSubdomains })),
    upstreamServers: [...d.upstreamServers],
  });
}

type CommandInit = MessageInitShape<typeof ControlCommandSchema>['command'];

function fullConfigValue(c: PolicyConfig): {
  mode: PbPolicyMode;
  allowCidrs: CIDREntry[];
  denyCidrs: CIDREntry[];
  dns: DnsConfig;
  dryRun: boolean;
} {
  return {
    mode: policyModeToPb(c.mode),
    allowCidrs: c.allowCidrs.map(cidrEntryToPb),
    denyCidrs: c.denyCidrs.map(cidrEntryToPb),
    dns: dnsConfigToPb(c.dns),
    dryRun: c.dryRun,
  };
}

/** The ControlCommand.command oneof for a policy-engine command. */
export function commandToPb(cmd: PolicyCommand): CommandInit {
  switch (cmd.type) {
    case 'setMode':
      return { case: 'setMode', value: { mode: policyModeToPb(cmd.mode) } };
    case 'allowCidr':
      return { case: 'allowCidr', value: cidrEntryToPb(cmd.entry) };
    case 'denyCidr':
      return { case: 'denyCidr', value: cidrEntryToPb(cmd.entry) };
    case 'removeCidr':
      return { case: 'removeCidr', value: cmd.cidr };
    case 'setDnsMode':
      return { case: 'setDnsMode', value: { mode: dnsModeToPb(cmd.mode) } };
    case 'allowDomain':
      return { case: 'allowDomain', value: { domain: cmd.entry.domain, includeSubdomains: cmd.entry.includeSubdomains } };
    case 'denyDomain':
      return { case: 'denyDomain', value: { domain: cmd.entry.domain, includeSubdomains: cmd.entry.includeSubdomains } };
    case 'removeDomain':
      return { case: 'removeDomain', value: cmd.domain };
    case 'setDryRun':
      return { case: 'setDryRun', value: { dryRun: cmd.dryRun } };
    case 'bulkUpdate':
    case 'subscribedAck': {
      const value = {
        mode: policyModeToPb(cmd.mode),
        allowCidrs: cmd.allowCidrs.map(cidrEntryToPb),
        denyCidrs: cmd.denyCidrs.map(cidrEntryToPb),
        ...(cmd.dns ? { dns: dnsConfigToPb(cmd.dns) } : {}),
        dryRun: cmd.dryRun ?? false,
      };
      return cmd.type === 'bulkUpdate' ? { case: 'bulkUpdate', value } : { case: 'subscribedAck', value };
    }
  }
}

export function bulkUpdateCommand(id: string, c: PolicyConfig, nonce = ''): ControlCommand {
  return create(ControlCommandSchema, { id, nonce, command: { case: 'bulkUpdate', value: fullConfigValue(c) } });
}

export function subscribedAckCommand(id: string, c: PolicyConfig, nonce = ''): ControlCommand {
  return create(ControlCommandSchema, { id, nonce, command: { case: 'subscribedAck', value: fullConfigValue(c) } });
}

export function toControlCommand(id: string, cmd: PolicyCommand, nonce = ''): ControlCommand {
  return create(ControlCommandSchema, { id, nonce, command: commandToPb(cmd) });
}

/**
 * A factory for one command sent to many attachments: the payload is built once
 * and shared (messages are never mutated after creation, only `id`/`nonce` differ).
 */
export function commandFactory(cmd: PolicyCommand): (id: string) => ControlCommand {
  const proto = create(ControlCommandSchema, { command: commandToPb(cmd) });
  return (id) => ({ ...proto, id, nonce: '' });
}

export function syncAckCommand(): ControlCommand {
  return create(ControlCommandSchema, { id: '', command: { case: 'syncAck', value: {} } });
}

/** A short name of a command's kind, for stats ('allowDomain', 'bulkUpdate', ...). */
export function commandKind(c: ControlCommand): string {
  return c.command.case ?? 'none';
}
