import { constants as osConstants } from 'node:os';

/** The closed set of stable error codes this package throws. */
export const BPF_ERROR_CODES = [
  'BPF_ERR_NOT_FOUND',
  'BPF_ERR_EXISTS',
  'BPF_ERR_MAP_FULL',
  'BPF_ERR_VERIFIER',
  'BPF_ERR_LOAD',
  'BPF_ERR_NOT_SUPPORTED',
  'BPF_ERR_SIZE_MISMATCH',
  'BPF_ERR_TYPE_MISMATCH',
  'BPF_ERR_INVALID_ARGUMENT',
  'BPF_ERR_PERMISSION',
  'BPF_ERR_CLOSED',
  'BPF_ERR_CONFLICT',
  'BPF_ERR_LIBBPF_UNAVAILABLE',
  'BPF_ERR_ERRNO',
] as const;

export type BpfErrorCode = (typeof BPF_ERROR_CODES)[number];

export interface BpfErrorOptions {
  readonly errno?: number | undefined;
  readonly cause?: unknown;
  /** The verifier's log for a program the kernel rejected. */
  readonly verifierLog?: string | undefined;
  /** Everything libbpf printed during the failed operation. */
  readonly libbpfLog?: string | undefined;
  /** For batch operations: how many elements were processed before the failure. */
  readonly processed?: number | undefined;
}

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
errnoNames.set(524, 'ENOTSUPP');

/** Symbolic name of an errno value (`ENOENT`), or `errno N`. */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/**
 * The one error class of @netfence/bpf-loader. `code` is one of {@link BPF_ERROR_CODES}
 * and is repeated at the start of `message`; `errno` is the positive errno when the
 * failure came from the kernel or libbpf.
 */
export class BpfError extends Error {
  readonly code: BpfErrorCode;
  readonly errno: number | undefined;
  readonly verifierLog: string | undefined;
  readonly libbpfLog: string | undefined;
  readonly processed: number | undefined;

  constructor(code: BpfErrorCode, message: string, opts: BpfErrorOptions = {}) {
    super(`${code}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BpfError';
    this.code = code;
    this.errno = opts.errno === undefined ? undefined : Math.abs(opts.errno);
    this.verifierLog = opts.verifierLog;
    this.libbpfLog = opts.libbpfLog;
    this.processed = opts.processed;
  }

  /** Normalises anything thrown into a BpfError (BpfErrors pass through unchanged). */
  static from(err: unknown): BpfError {
    if (err instanceof BpfError) return err;
    if (err instanceof Error) {
      const errno = (err as NodeJS.ErrnoException).errno;
      const code = typeof errno === 'number' ? codeForErrno(Math.abs(errno)) : 'BPF_ERR_ERRNO';
      return new BpfError(code, err.message, { cause: err, errno: typeof errno === 'number' ? Math.abs(errno) : undefined });
    }
    return new BpfError('BPF_ERR_ERRNO', String(err), { cause: err });
  }

  /** Builds an error from a negative (or positive) errno returned by libbpf or the kernel. */
  static fromErrno(errno: number, what: string, opts: Omit<BpfErrorOptions, 'errno'> = {}): BpfError {
    const e = Math.abs(errno);
    return new BpfError(codeForErrno(e), `${what}: ${errnoName(e)}`, { ...opts, errno: e });
  }
}

/** A feature the running kernel (or libbpf) lacks. Tests may skip on exactly this error. */
export class NotSupportedError extends BpfError {
  readonly feature: string;
  readonly minKernel: string;

  constructor(feature: string, minKernel: string, opts: BpfErrorOptions = {}) {
    super('BPF_ERR_NOT_SUPPORTED', `${feature} is not supported here (needs kernel >= ${minKernel})`, opts);
    this.name = 'NotSupportedError';
    this.feature = feature;
    this.minKernel = minKernel;
  }
}

const ENOENT = 2;
const EPERM = 1;
const EACCES = 13;
const EEXIST = 17;
const E2BIG = 7;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524;
const EBADF = 9;

/** Maps an errno to the stable code: ENOENT→NOT_FOUND, E2BIG/ENOSPC→MAP_FULL, ... */
export function codeForErrno(errno: number): BpfErrorCode {
  switch (Math.abs(errno)) {
    case ENOENT:
      return 'BPF_ERR_NOT_FOUND';
    case EEXIST:
      return 'BPF_ERR_EXISTS';
    case E2BIG:
    case ENOSPC:
      return 'BPF_ERR_MAP_FULL';
    case EPERM:
    case EACCES:
      return 'BPF_ERR_PERMISSION';
    case EOPNOTSUPP:
    case ENOTSUPP:
      return 'BPF_ERR_NOT_SUPPORTED';
    case EBADF:
      return 'BPF_ERR_CLOSED';
    default:
      return 'BPF_ERR_ERRNO';
  }
}

export const Errno = { EPERM, ENOENT, E2BIG, EBADF, EACCES, EEXIST, EINVAL: 22, ENOSPC, ENOLINK: 67, EOPNOTSUPP, ENOTSUPP } as const;
