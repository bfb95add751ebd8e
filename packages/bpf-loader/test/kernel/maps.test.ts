import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  BpfError,
  MapType,
  AttachType,
  UpdateFlags,
  codecs,
  createArrayMap,
  createHashMap,
  createLpmTrieMap,
  createPerCpuArrayMap,
  loadCollection,
  mapFromFd,
  numPossibleCpus,
  openPinnedMap,
  readObjectSpec,
  type Collection,
} from '../../src/index';
import { assertKernelTestable, fixture, makePinDir, removePinDir, runTsChild, errorCode } from './helpers';

const code = errorCode;

let coll: Collection;
beforeAll(() => {
  assertKernelTestable();
  coll = loadCollection(fixture('maps'));
});
afterAll(() => coll?.close());

describe('object spec', () => {
  test('lists programs and maps without loading', () => {
    const spec = readObjectSpec(fixture('maps'));
    expect(spec.programs).toEqual([{ name: 'tc_filter', section: 'tc', type: 3, expectedAttachType: 0 }]);
    const byName = Object.fromEntries(spec.maps.map((m) => [m.name, m]));
    expect(byName.hash_map).toEqual({ name: 'hash_map', type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 4, flags: 0 });
    expect(byName.deny_v4).toMatchObject({ type: MapType.LPM_TRIE, keySize: 8, valueSize: 4, flags: 1 });
    expect(byName.counters_map).toMatchObject({ type: MapType.PERCPU_ARRAY, valueSize: 16 });
    expect(byName.events).toMatchObject({ type: MapType.RINGBUF });
    const cg = readObjectSpec(fixture('cgroup'));
    expect(cg.programs[0]).toMatchObject({ section: 'cgroup/connect4', expectedAttachType: AttachType.CGROUP_INET4_CONNECT });
  });

  test('a missing file is BPF_ERR_NOT_FOUND, a non-ELF is BPF_ERR_LOAD', () => {
    expect(code(() => readObjectSpec('/nonexistent/x.o'))).toBe('BPF_ERR_NOT_FOUND');
    expect(code(() => readObjectSpec(__filename))).toBe('BPF_ERR_LOAD');
  });

  test('AttachType values not in the 6.1 header match the kernel BTF', () => {
    const btf = execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux'], { encoding: 'utf8', maxBuffer: 1 << 28 });
    for (const name of ['TCX_INGRESS', 'TCX_EGRESS', 'STRUCT_OPS', 'NETFILTER', 'TRACE_ITER', 'CGROUP_INET4_CONNECT'] as const) {
      expect([name, new RegExp(`'BPF_${name}' val=(\\d+)`).exec(btf)?.[1]]).toEqual([name, String(AttachType[name])]);
    }
  });
});

describe('hash map', () => {
  test('get/set/delete/iterate and update flags', () => {
    const h = createHashMap(coll.map('hash_map'), { key: codecs.u32, value: codecs.u64 });
    h.clear();
    expect(h.get(1)).toBeUndefined();
    h.set(1, 10n);
    h.set(2, 20n);
    expect(h.get(1)).toBe(10n);
    expect(h.has(2)).toBe(true);
    expect(new Map(h.entries())).toEqual(new Map([[1, 10n], [2, 20n]]));
    expect([...h.keys()].sort()).toEqual([1, 2]);
    expect(code(() => h.set(1, 11n, UpdateFlags.NOEXIST))).toBe('BPF_ERR_EXISTS');
    expect(code(() => h.set(3, 11n, UpdateFlags.EXIST))).toBe('BPF_ERR_NOT_FOUND');
    expect(h.delete(1)).toBe(true);
    expect(h.delete(1)).toBe(false);
    expect(h.clear()).toBe(1);
  });

  test('a full map gives BPF_ERR_MAP_FULL (E2BIG) for single and batch updates', () => {
    const h = createHashMap(coll.map('hash_map'), { key: codecs.u32, value: codecs.u64 });
    h.clear();
    expect(h.setMany([[1, 1n], [2, 2n], [3, 3n], [4, 4n]])).toBe(4);
    let err: BpfError | undefined;
    try {
      h.set(5, 5n);
    } catch (e) {
      err = e as BpfError;
    }
    expect([err?.code, err?.errno]).toEqual(['BPF_ERR_MAP_FULL', 7]);
    try {
      h.setMany([[4, 40n], [5, 5n]]);
    } catch (e) {
      err = e as BpfError;
    }
    expect([err?.code, err?.processed]).toEqual(['BPF_ERR_MAP_FULL', 1]);
    expect(h.get(4)).toBe(40n);
    h.set(4, 4n); // updating an existing key of a full map is fine
  });

  test('batch delete skips absent keys and counts the deleted ones', () => {
    const h = createHashMap(coll.map('hash_map'), { key: codecs.u32, value: codecs.u64 });
    h.clear();
    h.setMany([[1, 1n], [2, 2n], [3, 3n]]);
    expect(h.deleteMany([1, 99, 3, 98])).toBe(2);
    expect([...h.keys()]).toEqual([2]);
    h.clear();
  });

  test('typed views refuse codecs of another size, naming both sizes', () => {
    const m = coll.map('hash_map');
    expect(() => createHashMap(m, { key: codecs.u64, value: codecs.u64 })).toThrow(/BPF_ERR_SIZE_MISMATCH: map 'hash_map' has key size 4, the key codec has size 8/);
    expect(() => createHashMap(m, { key: codecs.u32, value: codecs.u32 })).toThrow(/value size 8, the value codec has size 4/);
    expect(code(() => createArrayMap(m, codecs.u64))).toBe('BPF_ERR_TYPE_MISMATCH');
    expect(() => createLpmTrieMap(coll.map('deny_v4'), { dataSize: 16, value: codecs.u32 })).toThrow(/key size 8, the key codec has size 20/);
  });

  test('raw ops refuse buffers that are not the map sizes', () => {
    const m = coll.map('hash_map');
    expect(() => m.update(Buffer.alloc(2), Buffer.alloc(8))).toThrow(/key is 2 bytes, map keySize is 4/);
    expect(() => m.update(Buffer.alloc(4), Buffer.alloc(4))).toThrow(/value is 4 bytes, map value needs 8/);
    expect(() => m.lookup(Buffer.alloc(4), Buffer.alloc(7))).toThrow(/BPF_ERR_SIZE_MISMATCH/);
    expect(() => m.updateBatch(Buffer.alloc(8), Buffer.alloc(8), 2)).toThrow(/batch values are 8 bytes, 2 values of 8 bytes need 16/);
    expect(() => m.deleteBatch(Buffer.alloc(4), 2)).toThrow(/batch keys are 4 bytes/);
  });
});

describe('array and per-CPU array', () => {
  test('array get/set/setMany and bounds', () => {
    const a = createArrayMap(coll.map('array_map'), codecs.u32);
    expect(a.length).toBe(8);
    a.set(3, 33);
    expect(a.get(3)).toBe(33);
    expect(a.setMany([[0, 1], [7, 77]])).toBe(2);
    expect([...a.entries()].filter(([, v]) => v !== 0)).toEqual([[0, 1], [3, 33], [7, 77]]);
    expect(code(() => a.get(8))).toBe('BPF_ERR_NOT_FOUND');
    const raw = Buffer.alloc(4);
    raw.writeUInt32LE(1000);
    // The kernel answers an index past the end with E2BIG: reported as a missing slot, not a full map.
    expect(code(() => coll.map('array_map').update(raw, Buffer.alloc(4)))).toBe('BPF_ERR_NOT_FOUND');
  });

  test('array deleteBatch: no batch op (ENOTSUPP) falls back per element, which the kernel refuses', () => {
    const m = coll.map('array_map');
    let err: BpfError | undefined;
    try {
      m.deleteBatch(Buffer.alloc(4), 1);
    } catch (e) {
      err = e as BpfError;
    }
    expect(err?.errno).toBe(22);
    expect(err?.message).toMatch(/bpf_map_delete_elem/);
  });

  test('per-CPU array: per-CPU and summed reads after test runs', () => {
    const pc = createPerCpuArrayMap(coll.map('counters_map'), codecs.u64Array(2));
    expect(pc.possibleCpus).toBe(numPossibleCpus());
    expect(coll.map('counters_map').valueBufferSize).toBe(16 * numPossibleCpus());
    pc.set(0, [0n, 0n]);
    const frame = Buffer.alloc(60);
    coll.program('tc_filter').testRun({ data: frame, repeat: 5 });
    const per = pc.getPerCpu(0);
    expect(per).toHaveLength(numPossibleCpus());
    expect(pc.getSummed(0)).toEqual([5n, 300n]);
    pc.setPerCpu(1, Array.from({ length: numPossibleCpus() }, (_, i) => [BigInt(i + 1), 1n]));
    expect(pc.getSummed(1)).toEqual([BigInt((numPossibleCpus() * (numPossibleCpus() + 1)) / 2), BigInt(numPossibleCpus())]);
    pc.set(1, [2n, 3n]);
    expect(pc.getPerCpu(1).every((v) => v[0] === 2n && v[1] === 3n)).toBe(true);
    expect(code(() => pc.setPerCpu(1, [[1n, 1n]].concat(Array(numPossibleCpus()).fill([0n, 0n]))))).toBe('BPF_ERR_SIZE_MISMATCH');
  });
});

describe('LPM trie', () => {
  test('longest prefix match, exact delete, batch set, full map is BPF_ERR_MAP_FULL', () => {
    const l = createLpmTrieMap(coll.map('deny_v4'), { dataSize: 4, value: codecs.u32 });
    l.clear();
    expect(l.setMany([[{ prefixLen: 24, data: Uint8Array.of(10, 200, 1, 0) }, 1], [{ prefixLen: 32, data: Uint8Array.of(10, 200, 1, 9) }, 2]])).toBe(2);
    expect(l.lookup(Uint8Array.of(10, 200, 1, 3))).toBe(1);
    expect(l.lookup(Uint8Array.of(10, 200, 1, 9))).toBe(2);
    expect(l.lookup(Uint8Array.of(10, 200, 2, 9))).toBeUndefined();
    expect(l.get({ prefixLen: 24, data: Uint8Array.of(10, 200, 1, 0) })).toBe(1);
    expect(new Set([...l.keys()].map((k) => k.prefixLen))).toEqual(new Set([24, 32]));
    l.set({ prefixLen: 8, data: Uint8Array.of(11, 0, 0, 0) }, 3);
    l.set({ prefixLen: 8, data: Uint8Array.of(12, 0, 0, 0) }, 4);
    let err: BpfError | undefined;
    try {
      l.set({ prefixLen: 8, data: Uint8Array.of(13, 0, 0, 0) }, 5);
    } catch (e) {
      err = e as BpfError;
    }
    expect([err?.code, err?.errno]).toEqual(['BPF_ERR_MAP_FULL', 28]); // ENOSPC for an LPM trie
    expect(code(() => l.setMany([[{ prefixLen: 8, data: Uint8Array.of(14, 0, 0, 0) }, 5]]))).toBe('BPF_ERR_MAP_FULL');
    expect(l.deleteMany([{ prefixLen: 8, data: Uint8Array.of(11, 0, 0, 0) }, { prefixLen: 16, data: Uint8Array.of(99, 0, 0, 0) }])).toBe(1);
    expect(l.clear()).toBe(3);
  });
});

describe('ownership, info, pins', () => {
  test('mapSizes overrides max_entries; takeMap hands over; close is idempotent', () => {
    const c = loadCollection(fixture('maps'), { mapSizes: { hash_map: 100 } });
    const m = c.takeMap('hash_map');
    expect(m.maxEntries).toBe(100);
    expect(m.info()).toMatchObject({ name: 'hash_map', type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 100 });
    expect(c.maps.has('hash_map')).toBe(false);
    expect(code(() => c.map('hash_map'))).toBe('BPF_ERR_NOT_FOUND');
    c.close();
    c.close();
    expect(c.closed).toBe(true);
    expect(code(() => c.program('tc_filter'))).toBe('BPF_ERR_CLOSED');
    // The taken map survives the collection.
    const h = createHashMap(m, { key: codecs.u32, value: codecs.u64 });
    h.set(50, 5n);
    expect(h.get(50)).toBe(5n);
    const dup = mapFromFd(m.fd, { type: MapType.HASH, keySize: 4 });
    expect(dup.fd).not.toBe(m.fd);
    m.close();
    m.close();
    expect(code(() => h.get(50))).toBe('BPF_ERR_CLOSED');
    expect(createHashMap(dup, { key: codecs.u32, value: codecs.u64 }).get(50)).toBe(5n);
    dup[Symbol.dispose]();
    expect(dup.closed).toBe(true);
  });

  test('unknown option names and program names are refused', () => {
    expect(code(() => loadCollection(fixture('maps'), { mapSizes: { nope: 1 } }))).toBe('BPF_ERR_NOT_FOUND');
    expect(code(() => loadCollection(fixture('maps'), { programs: ['nope'] }))).toBe('BPF_ERR_NOT_FOUND');
  });

  test('pin, reopen with type/size checks, and reuse pinned maps across loads', () => {
    const dir = makePinDir('maps');
    try {
      const c1 = loadCollection(fixture('maps'), { pinMaps: { dir, maps: ['hash_map', 'deny_v4'] } });
      expect(c1.map('hash_map').pinnedPath).toBe(join(dir, 'hash_map'));
      createHashMap(c1.map('hash_map'), { key: codecs.u32, value: codecs.u64 }).set(7, 70n);
      c1.close();
      // A second load reuses the pin: the content is still there.
      const c2 = loadCollection(fixture('maps'), { pinMaps: { dir, maps: ['hash_map'] } });
      expect(createHashMap(c2.map('hash_map'), { key: codecs.u32, value: codecs.u64 }).get(7)).toBe(70n);
      c2.close();
      // An incompatible pinned map fails the load.
      expect(code(() => loadCollection(fixture('maps'), { mapSizes: { hash_map: 5 }, pinMaps: { dir, maps: ['hash_map'] } }))).toBe('BPF_ERR_LOAD');

      const m = openPinnedMap(join(dir, 'hash_map'), { type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 4 });
      expect(m.info().name).toBe('hash_map');
      m.close();
      expect(() => openPinnedMap(join(dir, 'hash_map'), { type: MapType.LPM_TRIE })).toThrow(/BPF_ERR_TYPE_MISMATCH: .* map type is HASH, expected LPM_TRIE/);
      expect(() => openPinnedMap(join(dir, 'hash_map'), { valueSize: 16 })).toThrow(/BPF_ERR_SIZE_MISMATCH: .* map valueSize is 8, expected 16/);
      expect(code(() => openPinnedMap(join(dir, 'nothing')))).toBe('BPF_ERR_NOT_FOUND');

      // Another process sees the pinned content.
      const r = runTsChild(join(__dirname, 'read-pinned-map.ts'), [join(dir, 'hash_map'), '7']);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('70');

      // pin/unpin of a map handle.
      const c3 = loadCollection(fixture('maps'));
      const arr = c3.map('array_map');
      arr.pin(join(dir, 'arr'));
      expect(openPinnedMap(join(dir, 'arr')).info().type).toBe(MapType.ARRAY);
      arr.unpin();
      expect(code(() => openPinnedMap(join(dir, 'arr')))).toBe('BPF_ERR_NOT_FOUND');
      c3.close();
    } finally {
      removePinDir(dir);
    }
  });
});
