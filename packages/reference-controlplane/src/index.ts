// @netfence/reference-controlplane: a runnable netfence.v1 control plane
// driven by a YAML policy file, and the library behind it.

export { createControlPlane } from './control-plane';
export type {
  AttachmentStatsView,
  AttachmentView,
  CommandResultView,
  ControlPlane,
  ControlPlaneOptions,
  DaemonView,
  DenyEventView,
  ListeningAddress,
  PolicyStore,
  Readiness,
  ReloadResult,
  StoredPolicy,
  TlsOptions,
} from './types';
export type { Logger } from './logger';
export { ControlPlaneError, CONTROL_PLANE_ERROR_CODES, formatIssue } from './errors';
export type { ControlPlaneErrorCode, PolicyIssue } from './errors';
export {
  addRuleToText,
  compilePolicyDocument,
  NO_MATCH_CONFIG,
  parsePolicyText,
  removeRuleFromText,
  selectPolicy,
} from './policy-file';
export type { CompiledPolicy, PolicyDocument, PolicyDocumentEntry, PolicySet } from './policy-file';
export { parseListenAddress } from './listen-address';
export type { ListenTarget } from './listen-address';
export { createPostgresPolicyStore } from './postgres-store';
export type { PostgresStoreOptions } from './postgres-store';
