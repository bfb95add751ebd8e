/** Public interfaces of @netfence/bpf-loader (implementations live in the sibling files). */

/** A program as described by the object file (no kernel involved). */
export interface ProgramSpec {
  /** Function name in the object (`bpf_program__name`). */
  readonly name: string;
  /** ELF section, e.g. `tc`, `cgroup/connect4`, `iter/tcp`. */
  readonly section: string;
  /** bpf_prog_type (see ProgType). */
  readonly type: number;
  /** bpf_attach_type libbpf derived from the section (see AttachType). */
  readonly expectedAttachType: number;
}

/** A map as described by the object file (no kernel involved). */
export interface MapSpec {
  readonly name: string;
  /** bpf_map_type (see MapType). */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
}

/** The pure description of an object file: what `readObjectSpec` returns. Plain data. */
export interface ObjectSpec {
  /** Absolute path of the object file; `loadCollection` reopens it. */
  readonly path: string;
  readonly programs: readonly ProgramSpec[];
  readonly maps: readonly MapSpec[];
}

/** Kernel facts about a map fd (bpf_obj_get_info_by_fd). */
export interface MapInfo extends MapSpec {
  readonly id: number;
}

export interface ProgramInfo {
  readonly id: number;
  readonly name: string;
  readonly type: number;
  /**
   * The kernel's program tag (bpf_prog_info.tag) as 16 hex digits: a hash of the program's
   * instructions with map references zeroed. Two loads of the same code have the same tag;
   * it does not cover map contents (.rodata values) or map definitions.
   */
  readonly tag: string;
  /** Ids of the maps the program uses (bpf_prog_info.map_ids), in the kernel's order. */
  readonly mapIds: readonly number[];
}

export interface LinkInfo {
  readonly id: number;
  /** bpf_link_type (1 raw_tp, 2 tracing, 3 cgroup, 4 iter, ..., 11 tcx). */
  readonly type: number;
  /** Id of the program the link runs now. */
  readonly progId: number;
  /** Cgroup links: the id (inode number) of the cgroup the link is attached to. */
  readonly cgroupId?: bigint;
  /** Cgroup and TCX links: the attach type (AttachType). */
  readonly attachType?: number;
  /** TCX links: the interface index. */
  readonly ifindex?: number;
}

/** What createMap makes: a map without an object file. */
export interface CreateMapSpec {
  /** At most 15 characters of [A-Za-z0-9_.] (the kernel's limit). */
  readonly name: string;
  /** bpf_map_type (see MapType). */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  /** 0 for the types that need it (CGROUP_STORAGE, SK_STORAGE, ...). */
  readonly maxEntries: number;
  /** map_flags (see MapFlags), e.g. MapFlags.NO_PREALLOC for an LPM_TRIE. Default 0. */
  readonly flags?: number;
  /** For ARRAY_OF_MAPS / HASH_OF_MAPS: the template every inner map must match (inner_map_fd). */
  readonly innerMap?: BpfMap;
}

/** What a re-opened map must look like; any listed field that differs is refused. */
export interface MapExpectation {
  readonly type?: number;
  readonly keySize?: number;
  readonly valueSize?: number;
  readonly maxEntries?: number;
}

/**
 * A kernel map behind an fd this object owns. Raw API: keys and values are bytes.
 * Every key/value buffer is checked against the map's sizes before libbpf sees it.
 * Owner: whoever created it (a Collection until `takeMap`, else the caller). close() releases
 * the fd; the map lives on while pinned or used by a loaded program.
 */
export interface BpfMap extends MapSpec, Disposable {
  readonly fd: number;
  /** Per-CPU map: values are `roundUp(valueSize, 8) * possibleCpus` bytes. */
  readonly perCpu: boolean;
  /** Bytes of a value buffer for lookup/update (valueSize, or the per-CPU size). */
  readonly valueBufferSize: number;
  /** Path this object pinned or was opened from; undefined when not pinned. */
  readonly pinnedPath: string | undefined;
  readonly closed: boolean;
  /** Copies the value into `out` (or a new Buffer); undefined when the key is absent. */
  lookup(key: Uint8Array, out?: Buffer): Buffer | undefined;
  /** Throws BPF_ERR_MAP_FULL (E2BIG/ENOSPC), BPF_ERR_EXISTS (NOEXIST), BPF_ERR_NOT_FOUND (EXIST). */
  update(key: Uint8Array, value: Uint8Array, flags?: number): void;
  /** True when an element was deleted, false when the key was absent. */
  delete(key: Uint8Array): boolean;
  /** Writes the key after `key` (first key when null) into `out`; false at the end. */
  nextKey(key: Uint8Array | null, out: Buffer): boolean;
  /** Iterates keys (fresh Buffers) with bpf_map_get_next_key. */
  keys(): IterableIterator<Buffer>;
  /**
   * Updates `count` elements packed in `keys` (count*keySize) and `values` (count*valueBufferSize)
   * with bpf_map_update_batch, or element by element where the map type has no batch op.
   */
  updateBatch(keys: Uint8Array, values: Uint8Array, count: number, flags?: number): void;
  /** Deletes `count` packed keys; keys that are absent are skipped. Returns how many were deleted. */
  deleteBatch(keys: Uint8Array, count: number): number;
  /** Kernel view of the map (id, name, type, sizes). */
  info(): MapInfo;
  /** bpf_obj_pin at `path` (the directory must exist in a bpffs). */
  pin(path: string): void;
  /** Removes the pin this object knows about (no-op when not pinned). */
  unpin(): void;
  /** Idempotent. */
  close(): void;
}

export interface TestRunOptions {
  /** Packet (or context-less input) fed to the program. For SCHED_CLS: a full Ethernet frame (>= 14 bytes). */
  readonly data: Uint8Array;
  /** Times to run it (duration is the average). Default 1. */
  readonly repeat?: number;
  /** Bytes reserved for data_out. Default data.length + 256. */
  readonly dataOutSize?: number;
  /** Optional context in (e.g. a struct __sk_buff). */
  readonly ctx?: Uint8Array;
  /** Bytes reserved for ctx_out. Default 0 (no ctx out). */
  readonly ctxOutSize?: number;
}

export interface TestRunResult {
  /** The program's return value (TC: 0 TC_ACT_OK, 2 TC_ACT_SHOT, ...). */
  readonly retval: number;
  /** Average ns per run. */
  readonly durationNs: number;
  /** The packet after the program ran. */
  readonly data: Buffer;
  readonly ctx: Buffer | undefined;
}

/**
 * A loaded program behind an fd this object owns (a Collection until `takeProgram`).
 * close() releases the fd; attached links keep the program alive.
 */
export interface BpfProgram extends Disposable {
  readonly fd: number;
  readonly name: string;
  readonly section: string;
  readonly type: number;
  readonly expectedAttachType: number;
  readonly pinnedPath: string | undefined;
  readonly closed: boolean;
  /** BPF_PROG_TEST_RUN (bpf_prog_test_run_opts). */
  testRun(opts: TestRunOptions): TestRunResult;
  info(): ProgramInfo;
  pin(path: string): void;
  unpin(): void;
  close(): void;
}

/**
 * An attachment. Owner: the caller. close() releases it, which detaches the program
 * unless the link is pinned (a pin outlives the process). detach() detaches now even
 * when pinned and removes the pin this object knows about.
 */
export interface BpfLink extends Disposable {
  /** `bpf-link` (TCX, cgroup, iter: a kernel bpf_link) or `tc-clsact` (fallback filter, no fd). */
  readonly kind: 'bpf-link' | 'tc-clsact';
  /** Link fd; -1 for a `tc-clsact` filter. */
  readonly fd: number;
  readonly pinnedPath: string | undefined;
  readonly closed: boolean;
  pin(path: string): void;
  unpin(): void;
  detach(): void;
  info(): LinkInfo;
  /** Info (id, tag, maps) of the program the link runs now, opened by id for the query. */
  programInfo(): ProgramInfo;
  close(): void;
}

export interface XdpAttachOptions {
  /** Interface index, resolved in the netns given by netnsPath (or the caller thread's). */
  readonly ifindex?: number;
  /** Interface name; alternative to ifindex. */
  readonly ifname?: string;
  /** Attach inside this network namespace via withNetns. */
  readonly netnsPath?: string;
  /** 'native' (driver), 'generic' (skb path, any device) or 'auto' (default: the kernel chooses, native when it can). */
  readonly mode?: 'auto' | 'native' | 'generic';
}

export interface TcxAttachOptions {
  /** Interface index, resolved in the netns given by netnsPath (or the caller thread's). */
  readonly ifindex?: number;
  /** Interface name; alternative to ifindex. */
  readonly ifname?: string;
  readonly direction: 'ingress' | 'egress';
  /** Attach inside this network namespace (e.g. /run/netns/x) via withNetns. */
  readonly netnsPath?: string;
  /**
   * `tcx` needs kernel >= 6.6 (NotSupportedError otherwise); `clsact` uses a tc filter
   * (bpf_tc_attach); `auto` (default) tries TCX and falls back to clsact on EINVAL.
   */
  readonly mode?: 'auto' | 'tcx' | 'clsact';
}

export interface UpdateLinkOptions {
  /** Swap only if the link still runs this program (BPF_F_REPLACE); else BPF_ERR_CONFLICT. */
  readonly expectedProgram?: BpfProgram;
}

export interface CgroupAttachOptions {
  /** cgroup2 directory path, or an open fd to it. */
  readonly cgroup: string | number;
  /** Defaults to the program's expectedAttachType. */
  readonly attachType?: number;
}

export interface LoadOptions {
  /** max_entries overrides by map name, applied before load (bpf_map__set_max_entries). */
  readonly mapSizes?: Readonly<Record<string, number>>;
  /**
   * Pin maps under `dir` (a bpffs directory that must exist) as `dir/<map name>`: an existing
   * compatible pin is reused (its contents kept), an incompatible one fails the load, a
   * missing one is created. `maps` limits this to some maps (default: all non-internal maps).
   */
  readonly pinMaps?: { readonly dir: string; readonly maps?: readonly string[] };
  /** Initial contents of maps (e.g. `.rodata` constants) by name (bpf_map__set_initial_value). */
  readonly initialValues?: Readonly<Record<string, Uint8Array>>;
  /** Load only these programs (default: all). */
  readonly programs?: readonly string[];
}

/**
 * A loaded object: its maps and programs. Owner of every map and program it lists until one is
 * handed over with takeMap/takeProgram; close() closes the rest (idempotent).
 */
export interface Collection extends Disposable {
  readonly spec: ObjectSpec;
  /** Maps still owned by the collection, by name. */
  readonly maps: ReadonlyMap<string, BpfMap>;
  /** Programs still owned by the collection, by name. */
  readonly programs: ReadonlyMap<string, BpfProgram>;
  /** Throws BPF_ERR_NOT_FOUND for an unknown (or taken) name. */
  map(name: string): BpfMap;
  program(name: string): BpfProgram;
  /** Hands the map over: the caller now owns (and must close) it. */
  takeMap(name: string): BpfMap;
  takeProgram(name: string): BpfProgram;
  readonly closed: boolean;
  close(): void;
}

/** Encodes a JS value into exactly `size` bytes and back. */
export interface Codec<T> {
  readonly size: number;
  encode(value: T, target: Buffer, offset: number): void;
  decode(source: Buffer, offset: number): T;
  /** Combines two values (used for summed per-CPU reads). */
  add?(a: T, b: T): T;
}

/** An LPM trie key: prefix length in bits and the address bytes (network order). */
export interface LpmKey {
  readonly prefixLen: number;
  readonly data: Uint8Array;
}

/** Typed views: they borrow the BpfMap (no close of their own; close the map). */
export interface HashMapView<K, V> {
  readonly map: BpfMap;
  get(key: K): V | undefined;
  has(key: K): boolean;
  set(key: K, value: V, flags?: number): void;
  delete(key: K): boolean;
  keys(): IterableIterator<K>;
  entries(): IterableIterator<[K, V]>;
  /** Batch update (bpf_map_update_batch, per-element fallback). Returns the count written. */
  setMany(entries: Iterable<readonly [K, V]>, flags?: number): number;
  /** Batch delete; absent keys are skipped. Returns the count deleted. */
  deleteMany(keys: Iterable<K>): number;
  /** Deletes every element. Returns the count deleted. */
  clear(): number;
}

export interface ArrayMapView<V> {
  readonly map: BpfMap;
  readonly length: number;
  /** Throws BPF_ERR_NOT_FOUND for an index >= maxEntries. */
  get(index: number): V;
  set(index: number, value: V): void;
  entries(): IterableIterator<[number, V]>;
  setMany(entries: Iterable<readonly [number, V]>): number;
}

export interface PerCpuArrayMapView<V> {
  readonly map: BpfMap;
  readonly length: number;
  readonly possibleCpus: number;
  /** One value per possible CPU. */
  getPerCpu(index: number): V[];
  /** Values of all CPUs combined with the codec's `add` (or the given one). */
  getSummed(index: number, add?: (a: V, b: V) => V): V;
  /** Sets every CPU's slot to `value`. */
  set(index: number, value: V): void;
  /** Sets each CPU's slot to its own value (`values.length` must equal possibleCpus). */
  setPerCpu(index: number, values: readonly V[]): void;
}

/** ARRAY_OF_MAPS / HASH_OF_MAPS from user space: inner maps go in by fd, come out as ids. */
export interface MapOfMapsView<K> {
  readonly map: BpfMap;
  /**
   * Puts `inner` in the slot (its fd as the 4-byte value). BPF_ERR_TYPE_MISMATCH when the kernel
   * refuses it for differing from the template (type, key/value size, flags); max_entries may
   * differ except for arrays without MapFlags.INNER_MAP. BPF_ERR_NOT_FOUND for an index past an
   * array's end.
   */
  set(key: K, inner: BpfMap, flags?: number): void;
  /** Id of the inner map in the slot, undefined when empty. */
  getId(key: K): number | undefined;
  /** Opens the inner map in the slot by id (the caller owns it), undefined when empty. */
  open(key: K, expect?: MapExpectation): BpfMap | undefined;
  /** Empties the slot; false when it was empty. */
  delete(key: K): boolean;
  /** [key, inner map id] of every filled slot. */
  entries(): IterableIterator<[K, number]>;
}

export type LpmTrieMapView<V> = HashMapView<LpmKey, V> & {
  /** Longest-prefix match of a full-length address (kernel lookup semantics). */
  lookup(address: Uint8Array): V | undefined;
};

export interface RingBufferOptions {
  /** Consume interval in ms (default 25). The timer is unref'd. */
  readonly intervalMs?: number;
  /** Called when a record callback throws or consuming fails. Default: errors are dropped. */
  readonly onError?: (err: unknown) => void;
}

/**
 * Delivers ring buffer records (Buffer copies) to a callback on the main thread, consuming on
 * a short unref'd interval (never a blocking poll). Owner: the caller; close() stops it and
 * frees the libbpf ring_buffer. The map itself is not closed.
 */
export interface RingBufferConsumer extends Disposable {
  /** Consumes what is available now; returns the record count. */
  consume(): number;
  readonly closed: boolean;
  close(): void;
}

/** Where libbpf's messages go besides error capture (pino-compatible subset). */
export interface LibbpfLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}
