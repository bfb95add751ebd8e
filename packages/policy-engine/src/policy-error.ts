/** Stable error codes of @netfence/policy-engine (closed set). */
export type PolicyErrorCode =
  | 'NETFENCE_ERR_INVALID_DOMAIN'
  | 'NETFENCE_ERR_INVALID_CIDR'
  | 'NETFENCE_ERR_INVALID_RULE'
  | 'NETFENCE_ERR_INVALID_COMMAND'
  | 'NETFENCE_ERR_INVALID_MODE'
  | 'NETFENCE_ERR_INVALID_TTL'
  | 'NETFENCE_ERR_INVALID_STATE';

export const POLICY_ERROR_CODES: readonly PolicyErrorCode[] = Object.freeze([
  'NETFENCE_ERR_INVALID_DOMAIN',
  'NETFENCE_ERR_INVALID_CIDR',
  'NETFENCE_ERR_INVALID_RULE',
  'NETFENCE_ERR_INVALID_COMMAND',
  'NETFENCE_ERR_INVALID_MODE',
  'NETFENCE_ERR_INVALID_TTL',
  'NETFENCE_ERR_INVALID_STATE',
] as const);

export interface PolicyErrorOptions {
  /** The offending input (as given, or a short description of where it was). */
  readonly input?: string;
  readonly cause?: unknown;
}

/**
 * The one error class of the policy engine. `code` is stable; the message
 * starts with the code and names the offending input.
 */
export class PolicyError extends Error {
  readonly code: PolicyErrorCode;
  readonly input?: string;

  constructor(code: PolicyErrorCode, message: string, options: PolicyErrorOptions = {}) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PolicyError';
    this.code = code;
    if (options.input !== undefined) this.input = options.input;
  }

  /** Normalise anything thrown into a PolicyError (unknown errors become INVALID_COMMAND, cause kept). */
  static from(e: unknown): PolicyError {
    if (e instanceof PolicyError) return e;
    const message = e instanceof Error ? e.message : String(e);
    return new PolicyError('NETFENCE_ERR_INVALID_COMMAND', message, { cause: e });
  }
}

/** Short printable form of an untrusted input for error messages. */
export function quote(input: unknown): string {
  let s: string;
  try {
    s = typeof input === 'string' ? input : JSON.stringify(input) ?? String(input);
  } catch {
    s = String(input);
  }
  if (s.length > 300) s = `${s.slice(0, 300)}...`;
  return JSON.stringify(s);
}

export function inputText(input: unknown): string {
  if (typeof input === 'string') return input.length > 1000 ? input.slice(0, 1000) : input;
  try {
    return String(JSON.stringify(input));
  } catch {
    return String(input);
  }
}
