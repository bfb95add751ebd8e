/** Stable error codes of @netfence/policy-wire (closed set). */
export type PolicyWireErrorCode = 'NETFENCE_ERR_INVALID_MESSAGE';

export const POLICY_WIRE_ERROR_CODES: readonly PolicyWireErrorCode[] = Object.freeze(['NETFENCE_ERR_INVALID_MESSAGE'] as const);

/**
 * The one error class of this package: a netfence.v1 message that cannot become a
 * policy-engine command (an unspecified or unknown mode, a negative TTL, an empty oneof).
 * The message starts with the code and names the command and the attachment id.
 */
export class PolicyWireError extends Error {
  override readonly name = 'PolicyWireError';
  readonly code: PolicyWireErrorCode;

  constructor(code: PolicyWireErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  /** The message without the leading code (for callers that wrap it in their own error). */
  get detail(): string {
    return this.message.slice(this.code.length + 2);
  }
}
