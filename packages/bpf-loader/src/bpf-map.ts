import { KernelFdObject } from './fd-object';
import { BpfError, Errno } from './errors';
import { MapType, mapTypeName } from './constants';
import { closeFd, dupFd, getLibbpf, numPossibleCpus } from './libbpf';
import { queryMapInfo } from './obj-info';
import { offsetOf, sizeOf } from './structs';
import type { BpfMap, MapExpectation, MapInfo, MapSpec } from './types';

const PER_CPU_TYPES: ReadonlySet<number> = new Set([
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

const ARRAY_TYPES: ReadonlySet<number> = new Set([MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.CGROUP_ARRAY]);

const CGROUP_STORAGE_TYPES: ReadonlySet<number> = new Set([MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE]);

const isNotSupported = (ret: number): boolean => ret === -Errno.ENOTSUPP || ret === -Errno.EOPNOTSUPP;

class BpfMapImpl extends KernelFdObject implements BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly perCpu: boolean;
  readonly valueBufferSize: number;
  #batchUpdate = true;
  #batchDelete = true;
  readonly #count = Buffer.alloc(4);
  #batchOpts: Buffer | undefined;

  constructor(fd: number, meta: MapSpec, pinnedPath: string | undefined) {
    super(fd, pinnedPath);
    this.name = meta.name;
    this.type = meta.type;
    this.keySize = meta.keySize;
    this.valueSize = meta.valueSize;
    this.maxEntries = meta.maxEntries;
    this.flags = meta.flags;
    this.perCpu = PER_CPU_TYPES.has(meta.type);
    this.valueBufferSize = this.perCpu ? Math.ceil(meta.valueSize / 8) * 8 * numPossibleCpus() : meta.valueSize;
  }


  protected get label(): string {
    return `map '${this.name}'`;
  }

  #checkKey(key: Uint8Array | null): void {
    if (key !== null && key.length !== this.keySize) {
      throw new BpfError('BPF_ERR_SIZE_MISMATCH', `map '${this.name}': key is ${key.length} bytes, map keySize is ${this.keySize}`);
    }
  }

  #checkValue(value: Uint8Array, what: string, exact: boolean): void {
    if (exact ? value.length !== this.valueBufferSize : value.length < this.valueBufferSize) {
      throw new BpfError(
        'BPF_ERR_SIZE_MISMATCH',
        `map '${this.name}': ${what} is ${value.length} bytes, map value needs ${this.valueBufferSize}` +
          (this.perCpu ? ` (valueSize ${this.valueSize} x ${numPossibleCpus()} CPUs, 8-byte aligned)` : ''),
      );
    }
  }

  lookup(key: Uint8Array, out?: Buffer): Buffer | undefined {
    const fd = this.live();
    this.#checkKey(key);
    const value = out ?? Buffer.allocUnsafe(this.valueBufferSize);
    if (out) this.#checkValue(out, 'output buffer', false);
    const r = getLibbpf().bpf_map_lookup_elem(fd, key, value) as number;
    if (r === -Errno.ENOENT) return undefined;
    if (r < 0) throw BpfError.fromErrno(r, `bpf_map_lookup_elem(${this.name})`);
    return value;
  }

  update(key: Uint8Array, value: Uint8Array, flags = 0): void {
    const fd = this.live();
    this.#checkKey(key);
    this.#checkValue(value, 'value', true);
    const r = getLibbpf().bpf_map_update_elem(fd, key, value, flags) as number;
    if (r < 0) throw this.#cgroupStorageError(r, key, flags) ?? this.#updateError(r, `bpf_map_update_elem(${this.name})`, undefined);
  }

  delete(key: Uint8Array): boolean {
    const fd = this.live();
    this.#checkKey(key);
    const r = getLibbpf().bpf_map_delete_elem(fd, key) as number;
    if (r === -Errno.ENOENT) return false;
    if (r === -Errno.EINVAL && CGROUP_STORAGE_TYPES.has(this.type)) {
      throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `map '${this.name}' (${mapTypeName(this.type)}): the kernel does not delete cgroup storage from user space; it is freed with its cgroup (EINVAL)`, {
        errno: Errno.EINVAL,
      });
    }
    if (r < 0) throw BpfError.fromErrno(r, `bpf_map_delete_elem(${this.name})`);
    return true;
  }

  // A cgroup storage element exists from the first attach of a program using the map to that
  // cgroup until the cgroup is freed; user space can only overwrite it (BPF_ANY or BPF_EXIST).
  #cgroupStorageError(ret: number, key: Uint8Array, flags: number): BpfError | undefined {
    if (!CGROUP_STORAGE_TYPES.has(this.type)) return undefined;
    const where = `map '${this.name}' (${mapTypeName(this.type)})`;
    if (ret === -Errno.ENOENT) {
      const id = Buffer.from(key.buffer, key.byteOffset, 8).readBigUInt64LE(0);
      return new BpfError(
        'BPF_ERR_NOT_FOUND',
        `${where} has no storage for cgroup id ${id}: the kernel creates it when a program using this map is attached to that cgroup (ENOENT)`,
        { errno: Errno.ENOENT },
      );
    }
    if (ret === -Errno.EINVAL && flags !== 0 && flags !== 2) {
      return new BpfError('BPF_ERR_INVALID_ARGUMENT', `${where}: cgroup storage takes only UpdateFlags.ANY or EXIST, got flags ${flags} (EINVAL)`, { errno: Errno.EINVAL });
    }
    return undefined;
  }

  nextKey(key: Uint8Array | null, out: Buffer): boolean {
    const fd = this.live();
    this.#checkKey(key);
    if (out.length < this.keySize) {
      throw new BpfError('BPF_ERR_SIZE_MISMATCH', `map '${this.name}': key output buffer is ${out.length} bytes, map keySize is ${this.keySize}`);
    }
    const r = getLibbpf().bpf_map_get_next_key(fd, key, out) as number;
    if (r === -Errno.ENOENT) return false;
    if (r < 0) throw BpfError.fromErrno(r, `bpf_map_get_next_key(${this.name})`);
    return true;
  }

  *keys(): IterableIterator<Buffer> {
    let cur: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      if (!this.nextKey(cur, next)) return;
      yield next;
      cur = next;
    }
  }

  #opts(elemFlags: number): Buffer {
    let o = this.#batchOpts;
    if (!o) {
      o = Buffer.alloc(sizeOf('bpf_map_batch_opts'));
      o.writeBigUInt64LE(BigInt(o.length), offsetOf('bpf_map_batch_opts', 'sz'));
      this.#batchOpts = o;
    }
    o.writeBigUInt64LE(BigInt(elemFlags), offsetOf('bpf_map_batch_opts', 'elem_flags'));
    return o;
  }

  updateBatch(keys: Uint8Array, values: Uint8Array, count: number, flags = 0): void {
    const fd = this.live();
    if (count === 0) return;
    this.#checkBatch(keys, count, values);
    const ks = this.keySize;
    const vs = this.valueBufferSize;
    if (this.#batchUpdate) {
      this.#count.writeUInt32LE(count, 0);
      const r = getLibbpf().bpf_map_update_batch(fd, keys, values, this.#count, this.#opts(flags)) as number;
      if (r >= 0) return;
      const done = this.#count.readUInt32LE(0);
      if (!isNotSupported(r)) {
        throw this.#updateError(r, `bpf_map_update_batch(${this.name}) after ${done} of ${count}`, done);
      }
      this.#batchUpdate = false;
    }
    const lib = getLibbpf();
    for (let i = 0; i < count; i++) {
      const r = lib.bpf_map_update_elem(fd, keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs), flags) as number;
      if (r < 0) throw this.#updateError(r, `bpf_map_update_elem(${this.name}) element ${i} of ${count}`, i);
    }
  }

  deleteBatch(keys: Uint8Array, count: number): number {
    const fd = this.live();
    if (count === 0) return 0;
    this.#checkBatch(keys, count, undefined);
    const ks = this.keySize;
    const lib = getLibbpf();
    let deleted = 0;
    let start = 0;
    while (this.#batchDelete && start < count) {
      const n = count - start;
      this.#count.writeUInt32LE(n, 0);
      const r = lib.bpf_map_delete_batch(fd, keys.subarray(start * ks, count * ks), this.#count, this.#opts(0)) as number;
      const done = this.#count.readUInt32LE(0);
      if (r >= 0) return deleted + n;
      if (isNotSupported(r)) {
        this.#batchDelete = false;
        break;
      }
      if (r !== -Errno.ENOENT) throw BpfError.fromErrno(r, `bpf_map_delete_batch(${this.name})`, { processed: deleted + done });
      deleted += done;
      start += done + 1; // skip the absent key
    }
    for (let i = start; i < count; i++) {
      const r = lib.bpf_map_delete_elem(fd, keys.subarray(i * ks, (i + 1) * ks)) as number;
      if (r === -Errno.ENOENT) continue;
      if (r < 0) throw BpfError.fromErrno(r, `bpf_map_delete_elem(${this.name})`, { processed: deleted });
      deleted++;
    }
    return deleted;
  }

  // Arrays answer an index >= max_entries with E2BIG: that is a missing slot, not a full map.
  #updateError(ret: number, what: string, processed: number | undefined): BpfError {
    if (ret === -Errno.E2BIG && ARRAY_TYPES.has(this.type)) {
      return new BpfError('BPF_ERR_NOT_FOUND', `${what}: index outside the array's ${this.maxEntries} entries (E2BIG)`, { errno: Errno.E2BIG, processed });
    }
    return BpfError.fromErrno(ret, what, { processed });
  }

  #checkBatch(keys: Uint8Array, count: number, values: Uint8Array | undefined): void {
    if (!Number.isInteger(count) || count < 0 || count > 0xffffffff) {
      throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `map '${this.name}': bad batch count ${count}`);
    }
    if (keys.length < count * this.keySize) {
      throw new BpfError('BPF_ERR_SIZE_MISMATCH', `map '${this.name}': batch keys are ${keys.length} bytes, ${count} keys of keySize ${this.keySize} need ${count * this.keySize}`);
    }
    if (values && values.length < count * this.valueBufferSize) {
      throw new BpfError(
        'BPF_ERR_SIZE_MISMATCH',
        `map '${this.name}': batch values are ${values.length} bytes, ${count} values of ${this.valueBufferSize} bytes need ${count * this.valueBufferSize}`,
      );
    }
  }

  info(): MapInfo {
    return queryMapInfo(this.live());
  }




}

/** Wraps an fd the caller hands over (the map now owns and closes it). */
export function adoptMapFd(fd: number, meta: MapSpec, pinnedPath?: string): BpfMap {
  return new BpfMapImpl(fd, meta, pinnedPath);
}

function checkExpectation(info: MapInfo, expect: MapExpectation | undefined, where: string): void {
  if (!expect) return;
  if (expect.type !== undefined && expect.type !== info.type) {
    throw new BpfError('BPF_ERR_TYPE_MISMATCH', `${where}: map type is ${mapTypeName(info.type)}, expected ${mapTypeName(expect.type)}`);
  }
  for (const [field, label] of [
    ['keySize', 'keySize'],
    ['valueSize', 'valueSize'],
    ['maxEntries', 'maxEntries'],
  ] as const) {
    const want = expect[field];
    if (want !== undefined && want !== info[field]) {
      throw new BpfError('BPF_ERR_SIZE_MISMATCH', `${where}: map ${label} is ${info[field]}, expected ${want}`);
    }
  }
}

/** Wraps an fd this package just obtained (closed on failure), checked against `expect`. */
export function fromOwnedFd(fd: number, expect: MapExpectation | undefined, where: string, pinnedPath?: string): BpfMap {
  try {
    const info = queryMapInfo(fd);
    checkExpectation(info, expect, where);
    return new BpfMapImpl(fd, info, pinnedPath);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/**
 * Opens a pinned map (bpf_obj_get) and checks it against `expect` (type and sizes from
 * bpf_obj_get_info_by_fd). The caller owns the result; close() keeps the pin.
 */
export function openPinnedMap(path: string, expect?: MapExpectation): BpfMap {
  const fd = getLibbpf().bpf_obj_get(path) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_obj_get(${path})`);
  return fromOwnedFd(fd, expect, path, path);
}

/**
 * Opens a map by its kernel id (bpf_map_get_fd_by_id), e.g. the inner map an *_OF_MAPS slot
 * holds, and checks it against `expect`. BPF_ERR_NOT_FOUND when no map has that id. The caller
 * owns the result.
 */
export function openMapById(id: number, expect?: MapExpectation): BpfMap {
  if (!Number.isInteger(id) || id <= 0 || id > 0xffffffff) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `map id must be an integer in [1, 2^32), got ${id}`);
  const fd = getLibbpf().bpf_map_get_fd_by_id(id) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_map_get_fd_by_id(${id})`);
  return fromOwnedFd(fd, expect, `map id ${id}`);
}

/** Wraps a map fd; the fd is duplicated, so the caller keeps ownership of its own fd. */
export function mapFromFd(fd: number, expect?: MapExpectation): BpfMap {
  return fromOwnedFd(dupFd(fd), expect, `map fd ${fd}`);
}
