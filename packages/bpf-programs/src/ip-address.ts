import { isIPv4, isIPv6 } from 'node:net';
import { BpfProgramsError } from './bpf-programs-error';

/** An address as the datapath sees it: family and network-order bytes (4 or 16). */
export interface IpBytes {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

/** A prefix as the datapath stores it: host bits zeroed. */
export interface IpPrefix extends IpBytes {
  readonly prefixLen: number;
}

function v4Bytes(s: string): Uint8Array {
  const out = new Uint8Array(4);
  s.split('.').forEach((o, i) => {
    out[i] = Number(o);
  });
  return out;
}

/** Parses an IPv4 or IPv6 address (no zone, no prefix) into its bytes. */
export function parseIp(address: string): IpBytes {
  if (isIPv4(address)) return { family: 4, bytes: v4Bytes(address) };
  if (!isIPv6(address) || address.includes('%')) {
    throw new BpfProgramsError('NETFENCE_ERR_INVALID_ADDRESS', `not an IP address: ${JSON.stringify(address)}`);
  }
  let text = address;
  let tail: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = v4Bytes(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  if (tail) out.set(tail, 12);
  return { family: 6, bytes: out };
}

/** Formats address bytes (4 or 16) in the canonical text form. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new BpfProgramsError('NETFENCE_ERR_INVALID_ADDRESS', `address must be 4 or 16 bytes, got ${bytes.length}`);
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${Array.from(bytes.subarray(12)).join('.')}`;
  // longest run of zero groups (>= 2) becomes ::
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** True for ::ffff:a.b.c.d. */
export function isV4Mapped(bytes: Uint8Array): boolean {
  return bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * Parses `addr/len` (or a bare address: a host prefix) with the host bits zeroed.
 * IPv4-mapped IPv6 prefixes of length >= 96 become the IPv4 prefix, because the
 * datapath checks IPv4-mapped destinations as IPv4.
 */
export function parsePrefix(cidr: string): IpPrefix {
  const slash = cidr.indexOf('/');
  const addrText = slash < 0 ? cidr : cidr.slice(0, slash);
  let ip: IpBytes;
  try {
    ip = parseIp(addrText);
  } catch (e) {
    throw new BpfProgramsError('NETFENCE_ERR_INVALID_CIDR', `invalid prefix ${JSON.stringify(cidr)}`, { cause: e });
  }
  const width = ip.family === 4 ? 32 : 128;
  let prefixLen = width;
  if (slash >= 0) {
    const lenText = cidr.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > width) {
      throw new BpfProgramsError('NETFENCE_ERR_INVALID_CIDR', `invalid prefix length in ${JSON.stringify(cidr)}`);
    }
    prefixLen = Number(lenText);
  }
  let bytes = Uint8Array.from(ip.bytes);
  let family = ip.family;
  if (family === 6 && prefixLen >= 96 && isV4Mapped(bytes)) {
    bytes = bytes.slice(12);
    family = 4;
    prefixLen -= 96;
  }
  for (let bit = prefixLen; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return { family, bytes, prefixLen };
}

/** Formats a prefix as `addr/len`. */
export function formatPrefix(p: IpPrefix): string {
  return `${formatIp(p.bytes)}/${p.prefixLen}`;
}
