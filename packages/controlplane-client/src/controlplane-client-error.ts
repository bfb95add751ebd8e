import { Code, ConnectError } from '@connectrpc/connect';

/** The closed set of stable error codes this package throws. */
export const CONTROLPLANE_CLIENT_ERROR_CODES = [
  'NETFENCE_ERR_ACK_TIMEOUT',
  'NETFENCE_ERR_CLOSED',
  'NETFENCE_ERR_DEADLINE',
  'NETFENCE_ERR_UNAVAILABLE',
  'NETFENCE_ERR_QUEUE_FULL',
  'NETFENCE_ERR_ALREADY_PENDING',
  'NETFENCE_ERR_INVALID_ARGUMENT',
  'NETFENCE_ERR_TLS',
  'NETFENCE_ERR_UNAUTHENTICATED',
  'NETFENCE_ERR_RPC',
  'NETFENCE_ERR_COMMAND_FAILED',
  'NETFENCE_ERR_UNSUBSCRIBED',
] as const;

export type ControlPlaneClientErrorCode = (typeof CONTROLPLANE_CLIENT_ERROR_CODES)[number];

export interface ControlPlaneClientErrorOptions {
  readonly cause?: unknown;
  /** The gRPC/Connect status code, when the error came from an RPC. */
  readonly rpcCode?: Code | undefined;
}

/**
 * The one error class of @netfence/controlplane-client. `code` is one of
 * {@link CONTROLPLANE_CLIENT_ERROR_CODES} and is repeated at the start of `message`.
 * `rpcCode` is the Connect/gRPC status code when the failure came from an RPC.
 */
export class ControlPlaneClientError extends Error {
  readonly code: ControlPlaneClientErrorCode;
  readonly rpcCode: Code | undefined;

  constructor(code: ControlPlaneClientErrorCode, message: string, opts: ControlPlaneClientErrorOptions = {}) {
    super(`${code}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ControlPlaneClientError';
    this.code = code;
    this.rpcCode = opts.rpcCode;
  }

  /**
   * Normalises anything thrown into a ControlPlaneClientError. ControlPlaneClientErrors pass
   * through; ConnectErrors are mapped by status code (DeadlineExceeded -> DEADLINE,
   * Unavailable -> UNAVAILABLE, Unauthenticated/PermissionDenied -> UNAUTHENTICATED,
   * anything else -> RPC), the original kept as `cause`.
   */
  static from(err: unknown): ControlPlaneClientError {
    if (err instanceof ControlPlaneClientError) return err;
    const sys = systemCodeIn(err);
    if (err instanceof ConnectError) {
      return new ControlPlaneClientError(codeForSystem(sys) ?? codeForRpc(err.code), `${Code[err.code] ?? err.code}: ${err.rawMessage}`, {
        cause: err,
        rpcCode: err.code,
      });
    }
    if (err instanceof Error) {
      const ce = ConnectError.from(err);
      return new ControlPlaneClientError(codeForSystem(sys) ?? codeForRpc(ce.code), err.message, { cause: err, rpcCode: ce.code });
    }
    return new ControlPlaneClientError('NETFENCE_ERR_RPC', String(err), { cause: err });
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_HTTP2_PING_CANCEL',
]);

/** The first Node system/TLS error code (`ECONNREFUSED`, `ERR_TLS_...`) in the cause chain. */
function systemCodeIn(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  let cur: unknown = err;
  while (cur !== null && typeof cur === 'object' && !seen.has(cur)) {
    seen.add(cur);
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function codeForSystem(code: string | undefined): ControlPlaneClientErrorCode | undefined {
  if (code === undefined) return undefined;
  if (NETWORK_CODES.has(code)) return 'NETFENCE_ERR_UNAVAILABLE';
  if (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
  ) {
    return 'NETFENCE_ERR_TLS';
  }
  return undefined;
}

function codeForRpc(code: Code): ControlPlaneClientErrorCode {
  switch (code) {
    case Code.DeadlineExceeded:
      return 'NETFENCE_ERR_DEADLINE';
    case Code.Unavailable:
      return 'NETFENCE_ERR_UNAVAILABLE';
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return 'NETFENCE_ERR_UNAUTHENTICATED';
    default:
      return 'NETFENCE_ERR_RPC';
  }
}

/** The error of a call made after close() (and of subscribes pending at close). */
export function closedError(what: string): ControlPlaneClientError {
  return new ControlPlaneClientError('NETFENCE_ERR_CLOSED', `${what}: the control plane client is closed`);
}
