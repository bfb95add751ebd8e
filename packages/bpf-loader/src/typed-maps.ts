import { MapType, mapTypeName } from './constants';
import { BpfError } from './errors';
import { codecs } from './codecs';
import { numPossibleCpus } from './libbpf';
import type { ArrayMapView, BpfMap, Codec, HashMapView, LpmKey, LpmTrieMapView, PerCpuArrayMapView } from './types';

const BATCH_CHUNK = 4096;

export function checkType(map: BpfMap, allowed: readonly number[], view: string): void {
  if (map.closed) throw new BpfError('BPF_ERR_CLOSED', `map '${map.name}' is closed`);
  if (!allowed.includes(map.type)) {
    throw new BpfError(
      'BPF_ERR_TYPE_MISMATCH',
      `${view} needs a ${allowed.map(mapTypeName).join(' or ')} map, '${map.name}' is ${mapTypeName(map.type)}`,
    );
  }
}

export function checkSize(map: BpfMap, what: 'key' | 'value', mapSize: number, codecSize: number): void {
  if (mapSize !== codecSize) {
    throw new BpfError('BPF_ERR_SIZE_MISMATCH', `map '${map.name}' has ${what} size ${mapSize}, the ${what} codec has size ${codecSize}`);
  }
}

/** Reusable scratch buffers that grow for batches. */
class Scratch {
  readonly key: Buffer;
  readonly value: Buffer;
  #keys = Buffer.alloc(0);
  #values = Buffer.alloc(0);
  constructor(
    readonly keySize: number,
    readonly valueSize: number,
  ) {
    this.key = Buffer.alloc(keySize);
    this.value = Buffer.alloc(valueSize);
  }
  keys(n: number): Buffer {
    if (this.#keys.length < n * this.keySize) this.#keys = Buffer.alloc(n * this.keySize);
    return this.#keys;
  }
  values(n: number): Buffer {
    if (this.#values.length < n * this.valueSize) this.#values = Buffer.alloc(n * this.valueSize);
    return this.#values;
  }
}

class HashView<K, V> implements HashMapView<K, V> {
  protected readonly s: Scratch;
  constructor(
    readonly map: BpfMap,
    protected readonly kc: Codec<K>,
    protected readonly vc: Codec<V>,
  ) {
    this.s = new Scratch(map.keySize, map.valueBufferSize);
  }
  protected encodeKey(key: K): Buffer {
    this.kc.encode(key, this.s.key, 0);
    return this.s.key;
  }
  get(key: K): V | undefined {
    const v = this.map.lookup(this.encodeKey(key), this.s.value);
    return v === undefined ? undefined : this.vc.decode(v, 0);
  }
  has(key: K): boolean {
    return this.map.lookup(this.encodeKey(key), this.s.value) !== undefined;
  }
  set(key: K, value: V, flags = 0): void {
    this.vc.encode(value, this.s.value, 0);
    this.map.update(this.encodeKey(key), this.s.value, flags);
  }
  delete(key: K): boolean {
    return this.map.delete(this.encodeKey(key));
  }
  *keys(): IterableIterator<K> {
    for (const k of this.map.keys()) yield this.kc.decode(k, 0);
  }
  *entries(): IterableIterator<[K, V]> {
    for (const k of this.map.keys()) {
      const v = this.map.lookup(k, this.s.value);
      if (v !== undefined) yield [this.kc.decode(k, 0), this.vc.decode(v, 0)];
    }
  }
  setMany(entries: Iterable<readonly [K, V]>, flags = 0): number {
    const ks = this.map.keySize;
    const vs = this.map.valueBufferSize;
    let total = 0;
    let n = 0;
    let keys = this.s.keys(BATCH_CHUNK);
    let values = this.s.values(BATCH_CHUNK);
    const flush = (): void => {
      try {
        this.map.updateBatch(keys, values, n, flags);
      } catch (e) {
        if (e instanceof BpfError && e.processed !== undefined) {
          throw new BpfError(e.code, e.message.replace(/^BPF_ERR_[A-Z_]+: /, ''), { cause: e, errno: e.errno, processed: total + e.processed });
        }
        throw e;
      }
      total += n;
      n = 0;
    };
    for (const [k, v] of entries) {
      this.kc.encode(k, keys, n * ks);
      this.vc.encode(v, values, n * vs);
      n++;
      if (n === BATCH_CHUNK) {
        flush();
        keys = this.s.keys(BATCH_CHUNK);
        values = this.s.values(BATCH_CHUNK);
      }
    }
    if (n > 0) flush();
    return total;
  }
  deleteMany(keys: Iterable<K>): number {
    const ks = this.map.keySize;
    let deleted = 0;
    let n = 0;
    const buf = this.s.keys(BATCH_CHUNK);
    for (const k of keys) {
      this.kc.encode(k, buf, n * ks);
      n++;
      if (n === BATCH_CHUNK) {
        deleted += this.map.deleteBatch(buf, n);
        n = 0;
      }
    }
    if (n > 0) deleted += this.map.deleteBatch(buf, n);
    return deleted;
  }
  clear(): number {
    // Collect first: deleting while walking with get_next_key restarts the walk.
    const all = Array.from(this.map.keys());
    if (all.length === 0) return 0;
    return this.map.deleteBatch(Buffer.concat(all), all.length);
  }
}

class LpmView<V> extends HashView<LpmKey, V> implements LpmTrieMapView<V> {
  lookup(address: Uint8Array): V | undefined {
    return this.get({ prefixLen: address.length * 8, data: address });
  }
}

class ArrayView<V> implements ArrayMapView<V> {
  readonly #key = Buffer.alloc(4);
  readonly #value: Buffer;
  #keys = Buffer.alloc(0);
  #values = Buffer.alloc(0);
  constructor(
    readonly map: BpfMap,
    private readonly vc: Codec<V>,
  ) {
    this.#value = Buffer.alloc(map.valueBufferSize);
  }
  get length(): number {
    return this.map.maxEntries;
  }
  #index(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.map.maxEntries) {
      throw new BpfError('BPF_ERR_NOT_FOUND', `index ${i} outside array map '${this.map.name}' of ${this.map.maxEntries} entries`);
    }
    this.#key.writeUInt32LE(i, 0);
    return this.#key;
  }
  get(index: number): V {
    const v = this.map.lookup(this.#index(index), this.#value);
    if (v === undefined) throw new BpfError('BPF_ERR_NOT_FOUND', `index ${index} not found in '${this.map.name}'`);
    return this.vc.decode(v, 0);
  }
  set(index: number, value: V): void {
    this.vc.encode(value, this.#value, 0);
    this.map.update(this.#index(index), this.#value, 0);
  }
  *entries(): IterableIterator<[number, V]> {
    for (let i = 0; i < this.map.maxEntries; i++) yield [i, this.get(i)];
  }
  setMany(entries: Iterable<readonly [number, V]>): number {
    const list = Array.isArray(entries) ? (entries as readonly (readonly [number, V])[]) : Array.from(entries);
    const n = list.length;
    if (n === 0) return 0;
    const vs = this.map.valueBufferSize;
    if (this.#keys.length < n * 4) this.#keys = Buffer.alloc(n * 4);
    if (this.#values.length < n * vs) this.#values = Buffer.alloc(n * vs);
    for (let i = 0; i < n; i++) {
      const [idx, v] = list[i] as readonly [number, V];
      this.#index(idx);
      this.#keys.writeUInt32LE(idx, i * 4);
      this.vc.encode(v, this.#values, i * vs);
    }
    this.map.updateBatch(this.#keys, this.#values, n, 0);
    return n;
  }
}

class PerCpuArrayView<V> implements PerCpuArrayMapView<V> {
  readonly #key = Buffer.alloc(4);
  readonly #value: Buffer;
  readonly #stride: number;
  readonly possibleCpus: number;
  constructor(
    readonly map: BpfMap,
    private readonly vc: Codec<V>,
  ) {
    this.possibleCpus = numPossibleCpus();
    this.#stride = Math.ceil(map.valueSize / 8) * 8;
    this.#value = Buffer.alloc(map.valueBufferSize);
  }
  get length(): number {
    return this.map.maxEntries;
  }
  #index(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.map.maxEntries) {
      throw new BpfError('BPF_ERR_NOT_FOUND', `index ${i} outside per-CPU array map '${this.map.name}' of ${this.map.maxEntries} entries`);
    }
    this.#key.writeUInt32LE(i, 0);
    return this.#key;
  }
  getPerCpu(index: number): V[] {
    const v = this.map.lookup(this.#index(index), this.#value);
    if (v === undefined) throw new BpfError('BPF_ERR_NOT_FOUND', `index ${index} not found in '${this.map.name}'`);
    const out: V[] = [];
    for (let c = 0; c < this.possibleCpus; c++) out.push(this.vc.decode(v, c * this.#stride));
    return out;
  }
  getSummed(index: number, add?: (a: V, b: V) => V): V {
    const combine = add ?? this.vc.add?.bind(this.vc);
    if (!combine) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `getSummed on '${this.map.name}': the value codec has no add; pass one`);
    const all = this.getPerCpu(index);
    return all.slice(1).reduce(combine, all[0] as V);
  }
  set(index: number, value: V): void {
    const key = this.#index(index);
    this.#value.fill(0);
    for (let c = 0; c < this.possibleCpus; c++) this.vc.encode(value, this.#value, c * this.#stride);
    this.map.update(key, this.#value, 0);
  }
  setPerCpu(index: number, values: readonly V[]): void {
    const key = this.#index(index);
    if (values.length !== this.possibleCpus) {
      throw new BpfError('BPF_ERR_SIZE_MISMATCH', `per-CPU set got ${values.length} values, the map has ${this.possibleCpus} possible CPUs`);
    }
    this.#value.fill(0);
    for (let c = 0; c < this.possibleCpus; c++) this.vc.encode(values[c] as V, this.#value, c * this.#stride);
    this.map.update(key, this.#value, 0);
  }
}

/**
 * Typed view of a HASH, LRU_HASH or CGROUP_STORAGE map. Refuses (BPF_ERR_SIZE_MISMATCH, naming
 * both sizes) codecs whose sizes differ from the map's. The view borrows the map: close the
 * map, not the view. On a CGROUP_STORAGE map (key: u64 cgroup id, or the 12-byte
 * {cgroup id, attach type}) `set` overwrites the storage of a cgroup that has a program using
 * the map attached (BPF_ERR_NOT_FOUND before), with flags ANY or EXIST only; `delete`,
 * `deleteMany` and `clear` are refused by the kernel (the storage lives as long as its cgroup).
 */
export function createHashMap<K, V>(map: BpfMap, codec: { key: Codec<K>; value: Codec<V> }): HashMapView<K, V> {
  checkType(map, [MapType.HASH, MapType.LRU_HASH, MapType.CGROUP_STORAGE], 'createHashMap');
  checkSize(map, 'key', map.keySize, codec.key.size);
  checkSize(map, 'value', map.valueSize, codec.value.size);
  return new HashView(map, codec.key, codec.value);
}

/** Typed view of an ARRAY map (u32 index keys). */
export function createArrayMap<V>(map: BpfMap, value: Codec<V>): ArrayMapView<V> {
  checkType(map, [MapType.ARRAY], 'createArrayMap');
  checkSize(map, 'key', map.keySize, 4);
  checkSize(map, 'value', map.valueSize, value.size);
  return new ArrayView(map, value);
}

/** Typed view of a PERCPU_ARRAY map: per-CPU or summed reads (libbpf_num_possible_cpus slots). */
export function createPerCpuArrayMap<V>(map: BpfMap, value: Codec<V>): PerCpuArrayMapView<V> {
  checkType(map, [MapType.PERCPU_ARRAY], 'createPerCpuArrayMap');
  checkSize(map, 'key', map.keySize, 4);
  checkSize(map, 'value', map.valueSize, value.size);
  return new PerCpuArrayView(map, value);
}

/**
 * Typed view of an LPM_TRIE map whose key is `{ __u32 prefixlen; __u8 data[keySize-4]; }`.
 * `dataSize` (4 for IPv4, 16 for IPv6) is checked against the map's keySize.
 */
export function createLpmTrieMap<V>(map: BpfMap, codec: { dataSize: number; value: Codec<V> }): LpmTrieMapView<V> {
  checkType(map, [MapType.LPM_TRIE], 'createLpmTrieMap');
  const kc = codecs.lpmKey(codec.dataSize);
  checkSize(map, 'key', map.keySize, kc.size);
  checkSize(map, 'value', map.valueSize, codec.value.size);
  return new LpmView(map, kc, codec.value);
}
