/** Stable error codes of @netfence/netlink (listed in the README; a test checks). */
export const NETLINK_ERROR_CODES = ['NETLINK_ERR_SOCKET', 'NETLINK_ERR_MESSAGE'] as const;
export type NetlinkErrorCode = (typeof NETLINK_ERROR_CODES)[number];

export class NetlinkError extends Error {
  constructor(
    readonly code: NetlinkErrorCode,
    message: string,
    options?: { cause?: unknown; errno?: number },
  ) {
    super(`${code}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NetlinkError';
    this.errno = options?.errno;
  }
  readonly errno: number | undefined;
}
