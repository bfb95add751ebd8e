// @netfence/controlplane-client: a Connect-RPC (gRPC over HTTP/2) client of the netfence.v1
// ControlPlane service: the Connect bidi stream (SyncRequest first on every connect,
// bounded send queue, ordered command delivery with CommandResult) and QueryDns.

export { createControlPlaneClient } from './create-controlplane-client';
export type {
  AttachmentStatsInit,
  CommandResultInit,
  ControlPlaneClient,
  ControlPlaneClientLogger,
  ControlPlaneClientStats,
  ControlPlaneConnectionState,
  DenyEventInit,
  DnsQueryRequestInit,
  QueryDnsOptions,
  StateChangeInfo,
  StateChangeListener,
  SubscribeOptions,
  SubscribedInit,
  SyncState,
} from './types';
export type { ControlPlaneClientOptions, KeepaliveOptions, QueueOptions, TlsOptions } from './options';
export { CONTROLPLANE_CLIENT_ERROR_CODES, ControlPlaneClientError } from './controlplane-client-error';
export type { ControlPlaneClientErrorCode, ControlPlaneClientErrorOptions } from './controlplane-client-error';
export type { BackoffOptions } from './backoff';
export type { SendQueueStats } from './send-queue';
