// @netfence/proto: the netfence.v1 protocol as protobuf-es messages and
// Connect service descriptors. Everything here is generated from
// ../netfence/v1/*.proto by `buf generate`; this file only names the public API.

import { join } from 'node:path';

export {
  AttachmentType,
  AttachmentTypeSchema,
  DnsMode,
  DnsModeSchema,
  PolicyMode,
  PolicyModeSchema,
  file_netfence_v1_types,
} from './gen/netfence/v1/types_pb';

export {
  AttachmentSchema,
  AttachmentStatsSchema,
  BulkUpdateSchema,
  CIDREntrySchema,
  CommandResultSchema,
  ControlCommandSchema,
  ControlPlane,
  DaemonEventSchema,
  DenyEventSchema,
  DenyEventsSchema,
  DnsConfigSchema,
  DnsQueryRequestSchema,
  DnsQueryResponseSchema,
  DomainEntrySchema,
  HeartbeatSchema,
  SetDnsModeSchema,
  SetDryRunSchema,
  SetModeSchema,
  SubscribedAckSchema,
  SubscribedSchema,
  SyncAckSchema,
  SyncRequestSchema,
  UnsubscribeReason,
  UnsubscribeReasonSchema,
  UnsubscribedSchema,
  file_netfence_v1_control,
} from './gen/netfence/v1/control_pb';
export type {
  Attachment,
  AttachmentStats,
  BulkUpdate,
  CIDREntry,
  CommandResult,
  ControlCommand,
  DaemonEvent,
  DenyEvent,
  DenyEvents,
  DnsConfig,
  DnsQueryRequest,
  DnsQueryResponse,
  DomainEntry,
  Heartbeat,
  SetDnsMode,
  SetDryRun,
  SetMode,
  Subscribed,
  SubscribedAck,
  SyncAck,
  SyncRequest,
  Unsubscribed,
} from './gen/netfence/v1/control_pb';

export {
  AttachRequestSchema,
  AttachResponseSchema,
  AttachmentInfoSchema,
  AutoAttachRuleSchema,
  AutoAttachRulesSchema,
  ConnectionState,
  ConnectionStateSchema,
  DaemonService,
  DaemonStatusSchema,
  DetachRequestSchema,
  FirewallDnsDecisionSchema,
  FirewallDropSchema,
  FirewallEventSchema,
  ListRequestSchema,
  ListResponseSchema,
  WatchEventsRequestSchema,
  file_netfence_v1_daemon,
} from './gen/netfence/v1/daemon_pb';
export type {
  AttachRequest,
  AttachResponse,
  AttachmentInfo,
  AutoAttachRule,
  AutoAttachRules,
  DaemonStatus,
  DetachRequest,
  FirewallDnsDecision,
  FirewallDrop,
  FirewallEvent,
  ListRequest,
  ListResponse,
  WatchEventsRequest,
} from './gen/netfence/v1/daemon_pb';

/** Directory holding the netfence/v1/*.proto sources shipped with this package. */
export const protoRoot: string = join(__dirname, '..');
