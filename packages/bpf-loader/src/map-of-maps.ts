import { BpfError, Errno } from './errors';
import { MapType, mapTypeName } from './constants';
import { codecs } from './codecs';
import { openMapById } from './bpf-map';
import { checkSize, checkType } from './typed-maps';
import type { BpfMap, Codec, MapExpectation, MapOfMapsView } from './types';

function shape(m: BpfMap): string {
  return `${mapTypeName(m.type)}, key ${m.keySize}, value ${m.valueSize}, flags 0x${m.flags.toString(16)}`;
}

/**
 * An ARRAY_OF_MAPS / HASH_OF_MAPS map from user space: the kernel takes an inner map's fd as
 * the 4-byte value on update and answers a lookup with the inner map's id.
 */
class MapOfMaps<K> implements MapOfMapsView<K> {
  readonly #key: Buffer;
  readonly #value = Buffer.alloc(4);
  constructor(
    readonly map: BpfMap,
    private readonly kc: Codec<K>,
  ) {
    this.#key = Buffer.alloc(kc.size);
  }
  #encode(key: K): Buffer {
    this.kc.encode(key, this.#key, 0);
    return this.#key;
  }
  set(key: K, inner: BpfMap, flags = 0): void {
    if (inner.closed) throw new BpfError('BPF_ERR_CLOSED', `map '${this.map.name}': inner map '${inner.name}' is closed`);
    this.#value.writeUInt32LE(inner.fd, 0);
    try {
      this.map.update(this.#encode(key), this.#value, flags);
    } catch (e) {
      if (!(e instanceof BpfError) || e.errno !== Errno.EINVAL) throw e;
      throw new BpfError(
        'BPF_ERR_TYPE_MISMATCH',
        `map '${this.map.name}' (${mapTypeName(this.map.type)}): inner map '${inner.name}' (${shape(inner)}) does not match the template the map was created with (type, key/value size, flags) (EINVAL)`,
        { errno: Errno.EINVAL, cause: e },
      );
    }
  }
  getId(key: K): number | undefined {
    const v = this.map.lookup(this.#encode(key), this.#value);
    return v === undefined ? undefined : v.readUInt32LE(0);
  }
  open(key: K, expect?: MapExpectation): BpfMap | undefined {
    const id = this.getId(key);
    return id === undefined ? undefined : openMapById(id, expect);
  }
  delete(key: K): boolean {
    return this.map.delete(this.#encode(key));
  }
  *entries(): IterableIterator<[K, number]> {
    for (const k of this.map.keys()) {
      const v = this.map.lookup(k, this.#value);
      if (v !== undefined) yield [this.kc.decode(k, 0), v.readUInt32LE(0)];
    }
  }
}

/**
 * Typed view of an ARRAY_OF_MAPS (u32 index keys) or HASH_OF_MAPS map (keys as `key`, default
 * u32). `set(key, inner)` stores an inner map (the kernel keeps a reference: the inner map
 * lives while it is in a slot, pinned or not); `getId` / `open` read it back; `delete` empties
 * a slot (also on an array of maps, unlike a plain ARRAY). The view borrows the map.
 */
export function createMapOfMaps(map: BpfMap): MapOfMapsView<number>;
export function createMapOfMaps<K>(map: BpfMap, key: Codec<K>): MapOfMapsView<K>;
export function createMapOfMaps<K>(map: BpfMap, key?: Codec<K>): MapOfMapsView<K> | MapOfMapsView<number> {
  checkType(map, [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS], 'createMapOfMaps');
  checkSize(map, 'value', map.valueSize, 4);
  if (key === undefined) {
    checkSize(map, 'key', map.keySize, 4);
    return new MapOfMaps(map, codecs.u32);
  }
  checkSize(map, 'key', map.keySize, key.size);
  return new MapOfMaps(map, key);
}
