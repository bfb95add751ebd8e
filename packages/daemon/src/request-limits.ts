import { DaemonError } from './daemon-error';

/**
 * Bounds of every string a DaemonService request carries (the README lists them). A request
 * over one is refused with INVALID_ARGUMENT before anything else looks at it, so an oversized
 * field is never echoed, logged, stored or forwarded to the control plane.
 *
 * Sizes are in UTF-8 bytes. Each is well above any legitimate value: an attachment id is 16
 * bytes; an interface name at most 15 (an altname 127); a cgroup path at most PATH_MAX; our
 * page tokens are under 100 bytes.
 */
export const REQUEST_LIMITS = {
  idBytes: 128,
  interfaceNameBytes: 127,
  cgroupPathBytes: 4096,
  pageTokenBytes: 512,
  tcDirectionBytes: 16,
  metadataPairs: 64,
  metadataKeyBytes: 128,
  metadataValueBytes: 1024,
} as const;

/** How much of an input an error message quotes at most (characters). */
export const ECHO_CHARS = 256;

/**
 * An input as an error message quotes it: JSON-quoted, cut to ECHO_CHARS characters with its
 * full size noted, so no input can make an error (a gRPC trailer, a log line) large.
 */
export function quoteInput(s: string, max = ECHO_CHARS): string {
  if (s.length <= max) return JSON.stringify(s);
  return `${JSON.stringify(s.slice(0, max))}... (${Buffer.byteLength(s)} bytes)`;
}

function bounded(field: string, value: string, maxBytes: number): void {
  const n = Buffer.byteLength(value);
  if (n > maxBytes) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `${field} ${quoteInput(value)} is ${n} bytes; at most ${maxBytes} are allowed`);
}

export interface AttachRequestFields {
  readonly interfaceName?: string;
  readonly cgroupPath?: string;
  readonly tcDirection?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Refuses an Attach request with a field over its bound (INVALID_ARGUMENT naming the field). */
export function checkAttachRequest(r: AttachRequestFields): void {
  if (r.interfaceName !== undefined) bounded('interface_name', r.interfaceName, REQUEST_LIMITS.interfaceNameBytes);
  if (r.cgroupPath !== undefined) bounded('cgroup_path', r.cgroupPath, REQUEST_LIMITS.cgroupPathBytes);
  if (r.tcDirection !== undefined) bounded('tc_direction', r.tcDirection, REQUEST_LIMITS.tcDirectionBytes);
  const entries = Object.entries(r.metadata ?? {});
  if (entries.length > REQUEST_LIMITS.metadataPairs)
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `metadata has ${entries.length} pairs; at most ${REQUEST_LIMITS.metadataPairs} are allowed`);
  for (const [k, v] of entries) {
    bounded('metadata key', k, REQUEST_LIMITS.metadataKeyBytes);
    bounded(`metadata value of ${quoteInput(k)}`, v, REQUEST_LIMITS.metadataValueBytes);
  }
}

export function checkId(id: string): void {
  bounded('id', id, REQUEST_LIMITS.idBytes);
}

export function checkPageToken(token: string): void {
  bounded('page_token', token, REQUEST_LIMITS.pageTokenBytes);
}

/**
 * Largest request message the API reads (bytes; RESOURCE_EXHAUSTED beyond it, before it is
 * decoded). The bounds above sum to under 100 KiB; 4 MiB leaves a field a little over its
 * bound (a 1 MiB id, say) answered with INVALID_ARGUMENT naming it, while memory per call
 * stays bounded.
 */
export const MAX_REQUEST_BYTES = 4 << 20;
