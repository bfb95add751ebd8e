/** The closed set of stable error codes @netfence/bpf-programs throws. */
export const BPF_PROGRAMS_ERROR_CODES = [
  'NETFENCE_ERR_INVALID_ADDRESS',
  'NETFENCE_ERR_INVALID_CIDR',
  'NETFENCE_ERR_INVALID_ARGUMENT',
  'NETFENCE_ERR_LAYOUT',
  'NETFENCE_ERR_OBJECT_MISSING',
] as const;

export type BpfProgramsErrorCode = (typeof BPF_PROGRAMS_ERROR_CODES)[number];

/** The one error class of this package: a stable `code`, repeated at the start of the message; `cause` kept. */
export class BpfProgramsError extends Error {
  override readonly name = 'BpfProgramsError';
  readonly code: BpfProgramsErrorCode;

  constructor(code: BpfProgramsErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  /** Normalises anything thrown into a BpfProgramsError (these pass through unchanged). */
  static from(err: unknown): BpfProgramsError {
    if (err instanceof BpfProgramsError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new BpfProgramsError('NETFENCE_ERR_INVALID_ARGUMENT', msg, { cause: err });
  }
}
