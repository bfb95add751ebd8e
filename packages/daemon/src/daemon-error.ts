import { Code, ConnectError } from '@connectrpc/connect';

/** Every error code the daemon can surface (to the CLI, the API, the logs). */
export const DAEMON_ERROR_CODES = [
  'NETFENCE_ERR_CONFIG',
  'NETFENCE_ERR_INVALID_ARGUMENT',
  'NETFENCE_ERR_NOT_FOUND',
  'NETFENCE_ERR_ALREADY_EXISTS',
  'NETFENCE_ERR_TARGET_GONE',
  'NETFENCE_ERR_ACK_TIMEOUT',
  'NETFENCE_ERR_CONTROL_PLANE_UNAVAILABLE',
  'NETFENCE_ERR_MAP_FULL',
  'NETFENCE_ERR_DATAPATH',
  'NETFENCE_ERR_DNS_PORTS_EXHAUSTED',
  'NETFENCE_ERR_ATTACHMENTS_EXHAUSTED',
  'NETFENCE_ERR_ATTACH_BUSY',
  'NETFENCE_ERR_STATE',
  'NETFENCE_ERR_SHUTTING_DOWN',
  'NETFENCE_ERR_PERMISSION',
  'NETFENCE_ERR_INTERNAL',
] as const;

export type DaemonErrorCode = (typeof DAEMON_ERROR_CODES)[number];

const GRPC_CODE: Record<DaemonErrorCode, Code> = {
  NETFENCE_ERR_CONFIG: Code.InvalidArgument,
  NETFENCE_ERR_INVALID_ARGUMENT: Code.InvalidArgument,
  NETFENCE_ERR_NOT_FOUND: Code.NotFound,
  NETFENCE_ERR_ALREADY_EXISTS: Code.AlreadyExists,
  NETFENCE_ERR_TARGET_GONE: Code.FailedPrecondition,
  NETFENCE_ERR_ACK_TIMEOUT: Code.DeadlineExceeded,
  NETFENCE_ERR_CONTROL_PLANE_UNAVAILABLE: Code.Unavailable,
  NETFENCE_ERR_MAP_FULL: Code.ResourceExhausted,
  NETFENCE_ERR_DATAPATH: Code.FailedPrecondition,
  NETFENCE_ERR_DNS_PORTS_EXHAUSTED: Code.ResourceExhausted,
  NETFENCE_ERR_ATTACHMENTS_EXHAUSTED: Code.ResourceExhausted,
  NETFENCE_ERR_ATTACH_BUSY: Code.ResourceExhausted,
  NETFENCE_ERR_STATE: Code.FailedPrecondition,
  NETFENCE_ERR_SHUTTING_DOWN: Code.Unavailable,
  NETFENCE_ERR_PERMISSION: Code.PermissionDenied,
  NETFENCE_ERR_INTERNAL: Code.Internal,
};

/** The daemon's error: a stable code (also in the message), the cause kept. */
export class DaemonError extends Error {
  override readonly name = 'DaemonError';
  readonly code: DaemonErrorCode;

  constructor(code: DaemonErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  static from(e: unknown): DaemonError {
    if (e instanceof DaemonError) return e;
    const code = (e as { code?: unknown } | null)?.code;
    const msg = e instanceof Error ? e.message : String(e);
    // The message of another package's error already starts with its code: do not repeat it.
    const make = (c: DaemonErrorCode) => new DaemonError(c, msg.startsWith(`${c}: `) ? msg.slice(c.length + 2) : msg, { cause: e });
    if (typeof code === 'string') {
      if (/MAP_FULL/.test(code)) return make('NETFENCE_ERR_MAP_FULL');
      if (/ACK_TIMEOUT/.test(code)) return make('NETFENCE_ERR_ACK_TIMEOUT');
      if (/^NETFENCE_ERR_INVALID/.test(code)) return make('NETFENCE_ERR_INVALID_ARGUMENT');
      if (/UNAVAILABLE|CLOSED/.test(code)) return make('NETFENCE_ERR_CONTROL_PLANE_UNAVAILABLE');
      if (/^BPF_ERR/.test(code)) return make('NETFENCE_ERR_DATAPATH');
    }
    return make('NETFENCE_ERR_INTERNAL');
  }

  /** The gRPC form of this error, with the right status code (never Unknown). */
  toConnectError(): ConnectError {
    return new ConnectError(this.message, GRPC_CODE[this.code], undefined, undefined, this);
  }
}
