import { codecs } from './codecs';
import { BpfError } from './errors';
import { AttachType, MapType, attachTypeName, mapTypeName } from './constants';
import { extractVerifierLog } from './collection';

describe('codecs', () => {
  test('integer codecs round-trip at an offset', () => {
    const b = Buffer.alloc(16);
    codecs.u32.encode(0xdeadbeef, b, 4);
    expect(b.readUInt32LE(4)).toBe(0xdeadbeef);
    expect(codecs.u32.decode(b, 4)).toBe(0xdeadbeef);
    codecs.u32be.encode(0x0a000001, b, 0);
    expect([...b.subarray(0, 4)]).toEqual([10, 0, 0, 1]);
    codecs.u64.encode(2n ** 63n, b, 8);
    expect(codecs.u64.decode(b, 8)).toBe(2n ** 63n);
    expect(codecs.u16.size + codecs.u8.size).toBe(3);
  });

  test('bytes refuses another length, naming both sizes', () => {
    const c = codecs.bytes(4);
    expect(() => c.encode(Uint8Array.of(1, 2, 3), Buffer.alloc(4), 0)).toThrow(/BPF_ERR_SIZE_MISMATCH: value is 3 bytes, codec size is 4/);
    const b = Buffer.alloc(4);
    c.encode(Uint8Array.of(1, 2, 3, 4), b, 0);
    expect(c.decode(b, 0)).toEqual(Uint8Array.of(1, 2, 3, 4));
  });

  test('u64Array sums element-wise', () => {
    const c = codecs.u64Array(2);
    expect(c.size).toBe(16);
    expect(c.add?.([1n, 2n], [10n, 20n])).toEqual([11n, 22n]);
  });

  test('lpmKey encodes prefixlen host-order then data, and validates', () => {
    const c = codecs.lpmKey(4);
    const b = Buffer.alloc(8);
    c.encode({ prefixLen: 24, data: Uint8Array.of(10, 200, 1, 0) }, b, 0);
    expect([...b]).toEqual([24, 0, 0, 0, 10, 200, 1, 0]);
    expect(c.decode(b, 0)).toEqual({ prefixLen: 24, data: Uint8Array.of(10, 200, 1, 0) });
    expect(() => c.encode({ prefixLen: 33, data: Uint8Array.of(1, 2, 3, 4) }, b, 0)).toThrow(BpfError);
    expect(() => c.encode({ prefixLen: 8, data: new Uint8Array(16) }, b, 0)).toThrow(/LPM key data is 16 bytes, map key data is 4/);
  });
});

describe('constants', () => {
  test('names and the TCX values', () => {
    expect(mapTypeName(MapType.LPM_TRIE)).toBe('LPM_TRIE');
    expect(mapTypeName(999)).toBe('map type 999');
    expect([AttachType.TCX_INGRESS, AttachType.TCX_EGRESS, AttachType.TRACE_ITER, AttachType.CGROUP_INET4_CONNECT]).toEqual([46, 47, 28, 10]);
    expect(attachTypeName(47)).toBe('TCX_EGRESS');
  });
});

describe('extractVerifierLog', () => {
  test('takes the text between libbpf markers', () => {
    const log = "libbpf: prog 'x': BPF program load failed: Permission denied\nlibbpf: prog 'x': -- BEGIN PROG LOAD LOG --\n0: (61) r1 = ...\ninvalid access to packet\n-- END PROG LOAD LOG --\nlibbpf: failed to load object\n";
    expect(extractVerifierLog(log)).toBe('0: (61) r1 = ...\ninvalid access to packet\n');
    expect(extractVerifierLog('nothing here')).toBeUndefined();
  });
});
