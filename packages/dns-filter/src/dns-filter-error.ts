/** Stable error codes of @netfence/dns-filter. */
export type DnsFilterErrorCode =
  | 'NETFENCE_ERR_DNS_INVALID_OPTIONS'
  | 'NETFENCE_ERR_DNS_LISTEN_FAILED'
  | 'NETFENCE_ERR_DNS_ADDRESS_IN_USE'
  | 'NETFENCE_ERR_DNS_CLOSED'
  | 'NETFENCE_ERR_DNS_INVALID_CONFIG';

export const DNS_FILTER_ERROR_CODES: readonly DnsFilterErrorCode[] = [
  'NETFENCE_ERR_DNS_INVALID_OPTIONS',
  'NETFENCE_ERR_DNS_LISTEN_FAILED',
  'NETFENCE_ERR_DNS_ADDRESS_IN_USE',
  'NETFENCE_ERR_DNS_CLOSED',
  'NETFENCE_ERR_DNS_INVALID_CONFIG',
];

/** The one error class of this package; `code` is stable, the message starts with it. */
export class DnsFilterError extends Error {
  override readonly name = 'DnsFilterError';
  readonly code: DnsFilterErrorCode;

  constructor(code: DnsFilterErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  static from(e: unknown, code: DnsFilterErrorCode = 'NETFENCE_ERR_DNS_INVALID_OPTIONS'): DnsFilterError {
    if (e instanceof DnsFilterError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    return new DnsFilterError(code, msg, { cause: e });
  }
}
