import { addressBytes } from './wire';

// Ranges an answer of a public name should never point into (DNS rebinding):
// RFC1918, CGNAT, loopback, link-local (incl. 169.254.169.254 metadata),
// "this network", ULA fc00::/7, IPv6 loopback/unspecified/link-local, and the
// IPv4-mapped forms of the IPv4 ranges.
const V4_RANGES: readonly { net: number; bits: number }[] = [
  { net: 0x00000000, bits: 8 }, // 0.0.0.0/8
  { net: 0x0a000000, bits: 8 }, // 10/8
  { net: 0x64400000, bits: 10 }, // 100.64/10
  { net: 0x7f000000, bits: 8 }, // 127/8
  { net: 0xa9fe0000, bits: 16 }, // 169.254/16 (metadata 169.254.169.254)
  { net: 0xac100000, bits: 12 }, // 172.16/12
  { net: 0xc0a80000, bits: 16 }, // 192.168/16
];

function v4Private(b: Uint8Array, off: number): boolean {
  const v = ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
  for (const r of V4_RANGES) {
    const mask = r.bits === 0 ? 0 : (0xffffffff << (32 - r.bits)) >>> 0;
    if (((v & mask) >>> 0) === r.net) return true;
  }
  return false;
}

/** True if `address` (IPv4 or IPv6 text) is private, loopback, link-local, ULA, metadata or unspecified. */
export function isPrivateAddress(address: string): boolean {
  const b = addressBytes(address);
  if (b === null) return true; // unparseable: treat as unsafe
  if (b.length === 4) return v4Private(b, 0);
  let zeroTo10 = true;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) zeroTo10 = false;
  if (zeroTo10 && b[10] === 0xff && b[11] === 0xff) return v4Private(b, 12); // ::ffff:a.b.c.d
  if (zeroTo10 && b[10] === 0 && b[11] === 0 && b[12] === 0 && b[13] === 0 && b[14] === 0 && (b[15] === 0 || b[15] === 1)) {
    return true; // :: and ::1
  }
  if ((b[0]! & 0xfe) === 0xfc) return true; // fc00::/7
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return true; // fe80::/10
  return false;
}
