/** Stable error codes of @netfence/reference-controlplane. */
export type ControlPlaneErrorCode =
  | 'NETFENCE_ERR_POLICY_INVALID'
  | 'NETFENCE_ERR_POLICY_READ'
  | 'NETFENCE_ERR_POLICY_WRITE'
  | 'NETFENCE_ERR_POLICY_CONFLICT'
  | 'NETFENCE_ERR_POLICY_NOT_FOUND'
  | 'NETFENCE_ERR_RULE_EXISTS'
  | 'NETFENCE_ERR_RULE_NOT_FOUND'
  | 'NETFENCE_ERR_INVALID_REQUEST'
  | 'NETFENCE_ERR_UNAUTHENTICATED'
  | 'NETFENCE_ERR_INVALID_ADDRESS'
  | 'NETFENCE_ERR_LISTEN'
  | 'NETFENCE_ERR_TLS'
  | 'NETFENCE_ERR_CLOSED';

export const CONTROL_PLANE_ERROR_CODES: readonly ControlPlaneErrorCode[] = [
  'NETFENCE_ERR_POLICY_INVALID',
  'NETFENCE_ERR_POLICY_READ',
  'NETFENCE_ERR_POLICY_WRITE',
  'NETFENCE_ERR_POLICY_CONFLICT',
  'NETFENCE_ERR_POLICY_NOT_FOUND',
  'NETFENCE_ERR_RULE_EXISTS',
  'NETFENCE_ERR_RULE_NOT_FOUND',
  'NETFENCE_ERR_INVALID_REQUEST',
  'NETFENCE_ERR_UNAUTHENTICATED',
  'NETFENCE_ERR_INVALID_ADDRESS',
  'NETFENCE_ERR_LISTEN',
  'NETFENCE_ERR_TLS',
  'NETFENCE_ERR_CLOSED',
];

/** One problem found in a policy file: where, which key, what. */
export interface PolicyIssue {
  /** File name (or '<inline>' for a document passed as an object). */
  readonly file: string;
  /** 1-based line, 0 when unknown (inline documents). */
  readonly line: number;
  /** 1-based column, 0 when unknown. */
  readonly column: number;
  /** Key path, e.g. `policies[1].rules[0]`. */
  readonly key: string;
  readonly message: string;
}

export function formatIssue(i: PolicyIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.column}` : i.file;
  return `${where}: ${i.key || '(root)'}: ${i.message}`;
}

/** The single error class of this package; `code` is also in the message. */
export class ControlPlaneError extends Error {
  readonly code: ControlPlaneErrorCode;
  /** Policy file problems, for NETFENCE_ERR_POLICY_INVALID. */
  readonly issues: readonly PolicyIssue[];

  constructor(code: ControlPlaneErrorCode, message: string, opts: { cause?: unknown; issues?: readonly PolicyIssue[] } = {}) {
    super(`${code}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ControlPlaneError';
    this.code = code;
    this.issues = opts.issues ?? [];
  }

  static from(e: unknown, code: ControlPlaneErrorCode = 'NETFENCE_ERR_INVALID_REQUEST'): ControlPlaneError {
    if (e instanceof ControlPlaneError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    return new ControlPlaneError(code, msg, { cause: e });
  }
}
