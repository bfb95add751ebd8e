import { join } from 'node:path';
import {
  BpfError,
  MapFlags,
  MapType,
  attachCgroup,
  codecs,
  createLpmTrieMap,
  createMap,
  createMapOfMaps,
  loadCollection,
  memlockOf,
  openMapById,
  openPinnedMap,
  type BpfMap,
} from '../../src/index';
import { assertKernelTestable, fixture, makePinDir, removePinDir, errorCode } from './helpers';
import { createLab } from '@netfence/lab';

const code = errorCode;

/** An LPM trie shaped like the design's inner rule maps: key {u32 prefixlen; u8 addr[4]}, value 16 bytes. */
const trie = (name: string, maxEntries: number): BpfMap =>
  createMap({ name, type: MapType.LPM_TRIE, keySize: 8, valueSize: 16, maxEntries, flags: MapFlags.NO_PREALLOC });

const rule = (n: number): Buffer => Buffer.alloc(16, n);

beforeAll(() => assertKernelTestable());

describe('createMap', () => {
  test('creates a map the kernel describes as asked; typed views, pin and re-open work on it', () => {
    const dir = makePinDir('create');
    try {
      using m = trie('nf_rules_v4', 100);
      expect(m.info()).toMatchObject({ name: 'nf_rules_v4', type: MapType.LPM_TRIE, keySize: 8, valueSize: 16, maxEntries: 100, flags: MapFlags.NO_PREALLOC });
      expect([m.name, m.type, m.keySize, m.valueSize, m.maxEntries]).toEqual(['nf_rules_v4', MapType.LPM_TRIE, 8, 16, 100]);
      const view = createLpmTrieMap(m, { dataSize: 4, value: codecs.bytes(16) });
      view.set({ prefixLen: 16, data: Uint8Array.of(10, 200, 0, 0) }, rule(1));
      m.pin(join(dir, 'rules_v4'));
      m.close();
      using again = openPinnedMap(join(dir, 'rules_v4'), { type: MapType.LPM_TRIE, keySize: 8, valueSize: 16 });
      expect(createLpmTrieMap(again, { dataSize: 4, value: codecs.bytes(16) }).lookup(Uint8Array.of(10, 200, 7, 7))).toEqual(rule(1));
    } finally {
      removePinDir(dir);
    }
  });

  test('the kernel refusing a shape is an error naming the map and its shape; bad input is refused before any syscall', () => {
    // An LPM trie must be created with NO_PREALLOC.
    let err: BpfError | undefined;
    try {
      createMap({ name: 'nf_bad', type: MapType.LPM_TRIE, keySize: 8, valueSize: 16, maxEntries: 10 });
    } catch (e) {
      err = e as BpfError;
    }
    expect(err).toMatchObject({ code: 'BPF_ERR_ERRNO', errno: 22 });
    expect(err?.message).toMatch(/bpf_map_create\(LPM_TRIE 'nf_bad' \(key 8, value 16, max_entries 10\)\): EINVAL/);
    expect(code(() => createMap({ name: 'nf_name_longer_than_15', type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 1 }))).toBe('BPF_ERR_INVALID_ARGUMENT');
    expect(code(() => createMap({ name: 'nf-dash', type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 1 }))).toBe('BPF_ERR_INVALID_ARGUMENT');
    expect(code(() => createMap({ name: 'nf_neg', type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: -1 }))).toBe('BPF_ERR_INVALID_ARGUMENT');
    expect(code(() => createMap({ name: 'nf_frac', type: MapType.HASH, keySize: 4.5, valueSize: 4, maxEntries: 1 }))).toBe('BPF_ERR_INVALID_ARGUMENT');
  });
});

describe('maps of maps', () => {
  test('ARRAY_OF_MAPS: set takes an inner map, getId/open read it back, delete empties a slot', () => {
    using template = trie('nf_tmpl', 1);
    using outer = createMap({ name: 'nf_outer', type: MapType.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 8, innerMap: template });
    expect(outer.info()).toMatchObject({ type: MapType.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 8 });
    const slots = createMapOfMaps(outer);
    const inner = trie('nf_inner1', 1000); // max_entries may differ from the template's for a trie
    const innerId = inner.info().id;
    inner.update(Buffer.from([24, 0, 0, 0, 10, 200, 1, 0]), rule(7));
    slots.set(1, inner);
    inner.close(); // the outer map holds its own reference
    expect(slots.getId(1)).toBe(innerId);
    expect(slots.getId(0)).toBeUndefined(); // an array slot never set reads as empty
    expect([...slots.entries()]).toEqual([[1, innerId]]);
    const opened = slots.open(1, { type: MapType.LPM_TRIE, keySize: 8, valueSize: 16 }) as BpfMap;
    try {
      expect(opened.info().id).toBe(innerId);
      expect(opened.lookup(Buffer.from([32, 0, 0, 0, 10, 200, 1, 9]))).toEqual(rule(7));
    } finally {
      opened.close();
    }
    // Shapes the template does not have are refused by the kernel, named.
    using wrongFlags = createMap({ name: 'nf_prealloc', type: MapType.HASH, keySize: 8, valueSize: 16, maxEntries: 4 });
    expect(() => slots.set(2, wrongFlags)).toThrow(/BPF_ERR_TYPE_MISMATCH.*'nf_prealloc' \(HASH, key 8, value 16, flags 0x0\) does not match the template.*EINVAL/);
    using wrongValue = createMap({ name: 'nf_v8', type: MapType.LPM_TRIE, keySize: 8, valueSize: 8, maxEntries: 4, flags: MapFlags.NO_PREALLOC });
    expect(code(() => slots.set(2, wrongValue))).toBe('BPF_ERR_TYPE_MISMATCH');
    using fits = trie('nf_inner2', 4);
    expect(code(() => slots.set(8, fits))).toBe('BPF_ERR_NOT_FOUND'); // past the end
    slots.set(2, fits);
    slots.set(2, fits); // replacing a slot (BPF_ANY) is fine
    // delete works on an ARRAY_OF_MAPS (a plain ARRAY refuses delete with EINVAL).
    expect(slots.delete(1)).toBe(true);
    expect(slots.getId(1)).toBeUndefined();
    expect(slots.delete(1)).toBe(false);
    expect([...slots.entries()]).toEqual([[2, fits.info().id]]);
  });

  test('HASH_OF_MAPS with u32 keys; openMapById checks expectations; a map from an object can be the template', () => {
    const coll = loadCollection(fixture('maps'));
    try {
      const lpm = coll.map('deny_v4'); // LPM_TRIE key 8 value 4, NO_PREALLOC
      using outer = createMap({ name: 'nf_hom', type: MapType.HASH_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 4, innerMap: lpm });
      const byKey = createMapOfMaps(outer, codecs.u32);
      byKey.set(4242, lpm);
      expect(byKey.getId(4242)).toBe(lpm.info().id);
      expect(code(() => openMapById(lpm.info().id, { type: MapType.HASH }))).toBe('BPF_ERR_TYPE_MISMATCH');
      expect(code(() => openMapById(0))).toBe('BPF_ERR_INVALID_ARGUMENT');
      expect(code(() => openMapById(0xfffffff0))).toBe('BPF_ERR_NOT_FOUND');
      expect(byKey.delete(4242)).toBe(true);
      expect(byKey.getId(4242)).toBeUndefined();
      expect(code(() => createMapOfMaps(lpm))).toBe('BPF_ERR_TYPE_MISMATCH');
    } finally {
      coll.close();
    }
  });
});

describe('memlockOf', () => {
  test('reads the kernel accounting of a map and a program; an LPM trie grows with its elements', () => {
    using m = trie('nf_mem', 2000);
    const empty = memlockOf(m); // 0 on 6.18: a trie counts only its elements
    const keys = Buffer.alloc(1000 * 8);
    for (let i = 0; i < 1000; i++) keys.set([32, 0, 0, 0, 10, 200, i >> 8, i & 0xff], i * 8);
    m.updateBatch(keys, Buffer.alloc(1000 * 16), 1000);
    const full = memlockOf(m);
    // Each element costs at least its key and value (24 bytes) more.
    expect(full - empty).toBeGreaterThanOrEqual(1000 * 24);
    using big = createMap({ name: 'nf_hash', type: MapType.HASH, keySize: 8, valueSize: 16, maxEntries: 4096 });
    using small = createMap({ name: 'nf_hash', type: MapType.HASH, keySize: 8, valueSize: 16, maxEntries: 64 });
    expect(memlockOf(big)).toBeGreaterThan(memlockOf(small)); // preallocated: sized by max_entries
    const coll = loadCollection(fixture('maps'));
    try {
      expect(memlockOf(coll.program('tc_filter'))).toBeGreaterThan(0);
    } finally {
      coll.close();
    }
  });

  test('a link has no memlock line; a closed map is refused', async () => {
    const lab = createLab();
    const coll = loadCollection(fixture('cgroup'));
    try {
      using link = attachCgroup(coll.program('connect4_deny'), { cgroup: lab.cgroup('mem').path });
      expect(code(() => memlockOf(link))).toBe('BPF_ERR_NOT_FOUND');
      const m = trie('nf_closed', 1);
      m.close();
      expect(code(() => memlockOf(m))).toBe('BPF_ERR_CLOSED');
    } finally {
      coll.close();
      await lab.close();
    }
  });
});
