// policy-engine PolicyCommand / PolicyConfig -> netfence.v1 ControlCommand (what a control plane sends).

import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { CIDREntrySchema, ControlCommandSchema, DnsConfigSchema } from '@netfence/proto';
import type { CIDREntry, ControlCommand, DnsConfig, PolicyMode as PbPolicyMode } from '@netfence/proto';
import type { CidrEntryInput, DnsConfigInput, DomainEntryInput, PolicyCommand, PolicyConfig } from '@netfence/policy-engine';
import { dnsModeToPb, policyModeToPb } from './modes';

export function cidrEntryToPb(e: CidrEntryInput): CIDREntry {
  const ms = e.ttlMs ?? 0;
  if (ms <= 0) return create(CIDREntrySchema, { cidr: e.cidr });
  return create(CIDREntrySchema, {
    cidr: e.cidr,
    ttl: create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 }),
  });
}

function domainEntryToPb(e: DomainEntryInput): { domain: string; includeSubdomains: boolean } {
  return { domain: e.domain, includeSubdomains: e.includeSubdomains };
}

export function dnsConfigToPb(d: DnsConfigInput): DnsConfig {
  return create(DnsConfigSchema, {
    mode: dnsModeToPb(d.mode),
    allowDomains: d.allowDomains.map(domainEntryToPb),
    denyDomains: d.denyDomains.map(domainEntryToPb),
    upstreamServers: [...d.upstreamServers],
  });
}

/** The `command` oneof of a ControlCommand. */
export type ControlCommandInit = MessageInitShape<typeof ControlCommandSchema>['command'];

/** The value of a BulkUpdate or SubscribedAck: a whole config (a command's dns and dryRun may be absent). */
function configValue(c: {
  readonly mode: PolicyConfig['mode'];
  readonly allowCidrs: readonly CidrEntryInput[];
  readonly denyCidrs: readonly CidrEntryInput[];
  readonly dns?: DnsConfigInput | undefined;
  readonly dryRun?: boolean | undefined;
}): {
  mode: PbPolicyMode;
  allowCidrs: CIDREntry[];
  denyCidrs: CIDREntry[];
  dns?: DnsConfig;
  dryRun: boolean;
} {
  return {
    mode: policyModeToPb(c.mode),
    allowCidrs: c.allowCidrs.map(cidrEntryToPb),
    denyCidrs: c.denyCidrs.map(cidrEntryToPb),
    ...(c.dns ? { dns: dnsConfigToPb(c.dns) } : {}),
    dryRun: c.dryRun ?? false,
  };
}

/** The ControlCommand.command oneof for a policy-engine command. */
export function commandToPb(cmd: PolicyCommand): ControlCommandInit {
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
      return { case: 'allowDomain', value: domainEntryToPb(cmd.entry) };
    case 'denyDomain':
      return { case: 'denyDomain', value: domainEntryToPb(cmd.entry) };
    case 'removeDomain':
      return { case: 'removeDomain', value: cmd.domain };
    case 'setDryRun':
      return { case: 'setDryRun', value: { dryRun: cmd.dryRun } };
    case 'bulkUpdate':
    case 'subscribedAck': {
      const value = configValue(cmd);
      return cmd.type === 'bulkUpdate' ? { case: 'bulkUpdate', value } : { case: 'subscribedAck', value };
    }
  }
}

/** A ControlCommand for attachment `id` carrying `cmd` (nonce: the ack extension, '' for none). */
export function toControlCommand(id: string, cmd: PolicyCommand, nonce = ''): ControlCommand {
  return create(ControlCommandSchema, { id, nonce, command: commandToPb(cmd) });
}

/** A BulkUpdate replacing the attachment's whole state with `c`. */
export function bulkUpdateCommand(id: string, c: PolicyConfig, nonce = ''): ControlCommand {
  return create(ControlCommandSchema, { id, nonce, command: { case: 'bulkUpdate', value: configValue(c) } });
}

/** The SubscribedAck answering an attachment's Subscribed with its policy `c`. */
export function subscribedAckCommand(id: string, c: PolicyConfig, nonce = ''): ControlCommand {
  return create(ControlCommandSchema, { id, nonce, command: { case: 'subscribedAck', value: configValue(c) } });
}

/**
 * A factory for one command sent to many attachments: the payload is built once and
 * shared (messages are never mutated after creation; only `id` and `nonce` differ).
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
