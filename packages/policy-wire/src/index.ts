export { policyModeFromPb, dnsModeFromPb, policyModeToPb, dnsModeToPb, attachmentTypeToPb, policyModeName } from './modes';
export { commandFromPb, cidrEntryFromPb, dnsConfigFromPb } from './from-wire';
export {
  commandToPb,
  cidrEntryToPb,
  dnsConfigToPb,
  toControlCommand,
  bulkUpdateCommand,
  subscribedAckCommand,
  commandFactory,
  syncAckCommand,
  commandKind,
} from './to-wire';
export type { ControlCommandInit } from './to-wire';
export { PolicyWireError, POLICY_WIRE_ERROR_CODES } from './policy-wire-error';
export type { PolicyWireErrorCode } from './policy-wire-error';
