import { BpfError } from './errors';
import type { Codec, LpmKey } from './types';

const u8: Codec<number> = {
  size: 1,
  encode: (v, b, o) => void b.writeUInt8(v, o),
  decode: (b, o) => b.readUInt8(o),
  add: (a, b) => a + b,
};
const u16: Codec<number> = {
  size: 2,
  encode: (v, b, o) => void b.writeUInt16LE(v, o),
  decode: (b, o) => b.readUInt16LE(o),
  add: (a, b) => a + b,
};
const u32: Codec<number> = {
  size: 4,
  encode: (v, b, o) => void b.writeUInt32LE(v, o),
  decode: (b, o) => b.readUInt32LE(o),
  add: (a, b) => a + b,
};
/** A u32 in network byte order (an IPv4 address as a number, a port in a u32 slot, ...). */
const u32be: Codec<number> = {
  size: 4,
  encode: (v, b, o) => void b.writeUInt32BE(v, o),
  decode: (b, o) => b.readUInt32BE(o),
};
const u64: Codec<bigint> = {
  size: 8,
  encode: (v, b, o) => void b.writeBigUInt64LE(v, o),
  decode: (b, o) => b.readBigUInt64LE(o),
  add: (a, b) => a + b,
};

/** Exactly `size` raw bytes; encode refuses any other length. */
function bytes(size: number): Codec<Uint8Array> {
  return {
    size,
    encode(v, b, o) {
      if (v.length !== size) throw new BpfError('BPF_ERR_SIZE_MISMATCH', `value is ${v.length} bytes, codec size is ${size}`);
      b.set(v, o);
    },
    decode: (b, o) => new Uint8Array(b.subarray(o, o + size)),
  };
}

/** `count` u64 counters (e.g. struct { __u64 packets, bytes; }); add sums element-wise. */
function u64Array(count: number): Codec<bigint[]> {
  return {
    size: 8 * count,
    encode(v, b, o) {
      if (v.length !== count) throw new BpfError('BPF_ERR_SIZE_MISMATCH', `array has ${v.length} elements, codec has ${count}`);
      for (let i = 0; i < count; i++) b.writeBigUInt64LE(v[i] as bigint, o + 8 * i);
    },
    decode(b, o) {
      const out: bigint[] = new Array<bigint>(count);
      for (let i = 0; i < count; i++) out[i] = b.readBigUInt64LE(o + 8 * i);
      return out;
    },
    add: (a, b) => a.map((x, i) => x + (b[i] ?? 0n)),
  };
}

/**
 * LPM trie key: `struct { __u32 prefixlen; __u8 data[dataSize]; }` (prefixlen host order,
 * data network order). Refuses data of another length and prefixes longer than 8*dataSize.
 */
function lpmKey(dataSize: number): Codec<LpmKey> {
  return {
    size: 4 + dataSize,
    encode(v, b, o) {
      if (v.data.length !== dataSize) {
        throw new BpfError('BPF_ERR_SIZE_MISMATCH', `LPM key data is ${v.data.length} bytes, map key data is ${dataSize}`);
      }
      if (!Number.isInteger(v.prefixLen) || v.prefixLen < 0 || v.prefixLen > dataSize * 8) {
        throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `LPM prefix length ${v.prefixLen} outside 0..${dataSize * 8}`);
      }
      b.writeUInt32LE(v.prefixLen, o);
      b.set(v.data, o + 4);
    },
    decode: (b, o) => ({ prefixLen: b.readUInt32LE(o), data: new Uint8Array(b.subarray(o + 4, o + 4 + dataSize)) }),
  };
}

/** Ready-made codecs (little-endian host order unless the name says `be`). */
export const codecs = { u8, u16, u32, u32be, u64, bytes, u64Array, lpmKey } as const;
