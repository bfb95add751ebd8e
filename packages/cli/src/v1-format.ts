// The human output of attach, detach, list and status, byte for byte as netfence.v1 prints
// it (spec/netfence-v1-compat.md): scripts parse it, so nothing here changes its shape.

/** The columns netfence.v1's `list` prints, in order. */
const LIST_HEADER = ['ID', 'TARGET', 'TYPE', 'MODE', 'DNS MODE', 'DNS ADDR', 'PKTS OK', 'PKTS BLOCK'] as const;

export interface ListRow {
  readonly id: string;
  readonly target: string;
  readonly type: string;
  readonly mode: string;
  readonly dnsMode: string;
  readonly dnsAddress: string;
  readonly packetsAllowed: string;
  readonly packetsBlocked: string;
}

export interface StatusView {
  readonly version: string;
  readonly daemonId: string;
  readonly hostname: string;
  readonly attachmentCount: number;
  readonly controlPlaneState: string;
  readonly controlPlaneAddress: string;
  /** Extension (empty from a daemon that does not send it): remote, embedded or embedded-empty. */
  readonly controlPlaneMode: string;
}

export function formatAttached(r: { id: string; dnsAddress: string }): string {
  return `Attached successfully\n  ID:          ${r.id}\n  DNS Address: ${r.dnsAddress}\n`;
}

export function formatDetached(id: string): string {
  return `Detached ${id}\n`;
}

/**
 * Aligned columns as Go's text/tabwriter writes them with padding 2: every cell but the last of
 * a line is padded with spaces to its column's widest cell plus two.
 */
export function alignColumns(lines: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const cells of lines) cells.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return lines.map((cells) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i]! + 2) : c)).join('') + '\n').join('');
}

export function formatTable(rows: readonly ListRow[], total: number): string {
  const lines = [LIST_HEADER, ...rows.map((a) => [a.id, a.target, a.type, a.mode, a.dnsMode, a.dnsAddress, a.packetsAllowed, a.packetsBlocked])];
  return `${alignColumns(lines)}\nTotal: ${total} attachments\n`;
}

export function formatStatus(s: StatusView): string {
  let out =
    'Netfence Daemon Status\n' +
    `  Version:           ${s.version}\n` +
    `  Daemon ID:         ${s.daemonId}\n` +
    `  Hostname:          ${s.hostname}\n` +
    `  Attachments:       ${s.attachmentCount}\n` +
    `  Control Plane:     ${s.controlPlaneState}\n`;
  // netfence.v1 prints the URL only when control_plane.url is set; the embedded control plane's
  // loopback URL is not one the operator set.
  const remote = s.controlPlaneMode === 'remote' || s.controlPlaneMode === '';
  if (remote && s.controlPlaneAddress) out += `  Control Plane URL: ${s.controlPlaneAddress}\n`;
  // The one extra line (documented deviation): a daemon that enforces block-all for everyone.
  if (s.controlPlaneMode === 'embedded-empty') out += '  Policy:            none (embedded control plane, empty policy: every attachment is block-all)\n';
  return out;
}
