/**
 * koffi bindings to libbpf.so.1 (1.1.x) and the few libc calls we need. Loaded lazily on first
 * use so that pure code (codecs, errors, specs of constants) never needs the library.
 *
 * Every struct we hand to libbpf is built by hand in a Buffer at offsets taken from the koffi
 * struct definitions in structs.ts, whose sizes/offsets a unit test checks against gcc.
 */
import { koffi, type TypeObject } from './koffi';
import { closeSync } from 'node:fs';
import { BpfError } from './errors';
import type { LibbpfLogger } from './types';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Fn = (...args: any[]) => any;

export interface Libbpf {
  bpf_object__open_file: Fn;
  bpf_object__load: Fn;
  bpf_object__close: Fn;
  bpf_object__next_program: Fn;
  bpf_object__next_map: Fn;
  bpf_program__name: Fn;
  bpf_program__section_name: Fn;
  bpf_program__type: Fn;
  bpf_program__expected_attach_type: Fn;
  bpf_program__fd: Fn;
  bpf_program__set_autoload: Fn;
  bpf_map__name: Fn;
  bpf_map__type: Fn;
  bpf_map__key_size: Fn;
  bpf_map__value_size: Fn;
  bpf_map__max_entries: Fn;
  bpf_map__map_flags: Fn;
  bpf_map__fd: Fn;
  bpf_map__set_max_entries: Fn;
  bpf_map__set_pin_path: Fn;
  bpf_map__is_pinned: Fn;
  bpf_map__is_internal: Fn;
  bpf_map__set_initial_value: Fn;
  bpf_map_lookup_elem: Fn;
  bpf_map_update_elem: Fn;
  bpf_map_delete_elem: Fn;
  bpf_map_get_next_key: Fn;
  bpf_map_update_batch: Fn;
  bpf_map_delete_batch: Fn;
  bpf_map_create: Fn;
  bpf_map_get_fd_by_id: Fn;
  bpf_prog_get_fd_by_id: Fn;
  bpf_obj_get: Fn;
  bpf_obj_pin: Fn;
  bpf_obj_get_info_by_fd: Fn;
  bpf_link_create: Fn;
  bpf_link_detach: Fn;
  bpf_link_update: Fn;
  bpf_iter_create: Fn;
  bpf_prog_test_run_opts: Fn;
  bpf_tc_hook_create: Fn;
  bpf_tc_attach: Fn;
  bpf_tc_detach: Fn;
  libbpf_num_possible_cpus: Fn;
  ring_buffer__new: Fn;
  ring_buffer__consume: Fn;
  ring_buffer__free: Fn;
  /** The koffi prototype of ring_buffer_sample_fn, for koffi.register. */
  sampleFnType: TypeObject;
}

export interface Libc {
  vsnprintf: Fn;
  setns: Fn;
  if_nametoindex: Fn;
  fcntl: Fn;
  mallopt: Fn;
}

let lib: Libbpf | undefined;
let typeCounter = 0;
let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  const c = koffi.load('libc.so.6');
  libc = {
    vsnprintf: c.func('int vsnprintf(void *buf, size_t size, void *fmt, void *ap)'),
    setns: c.func('int setns(int fd, int nstype)'),
    if_nametoindex: c.func('unsigned int if_nametoindex(const char *ifname)'),
    fcntl: c.func('int fcntl(int fd, int cmd, ...)'),
    mallopt: c.func('int mallopt(int param, int value)'),
  };
  return libc;
}

const M_ARENA_MAX = -8;

/**
 * Bounds glibc's malloc arenas for the whole process (mallopt(M_ARENA_MAX)). Each thread that
 * runs a libbpf load (loadCollectionAsync: koffi worker threads) otherwise gets an arena of its
 * own, and the memory libbpf frees there (the kernel BTF it parses, ~10 MB a load) stays in the
 * process. Call once, early, in a long-lived process that loads objects asynchronously.
 */
export function limitMallocArenas(max: number): void {
  if (!Number.isInteger(max) || max < 1) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `arena count must be a positive integer, got ${max}`);
  if ((loadLibc().mallopt(M_ARENA_MAX, max) as number) !== 1) throw new BpfError('BPF_ERR_ERRNO', `mallopt(M_ARENA_MAX, ${max}) failed`);
}

export function getLibc(): Libc {
  return loadLibc();
}

export function getLibbpf(): Libbpf {
  if (lib) return lib;
  let l: ReturnType<typeof koffi.load>;
  try {
    l = koffi.load('libbpf.so.1');
  } catch (e) {
    throw new BpfError('BPF_ERR_LIBBPF_UNAVAILABLE', `cannot load libbpf.so.1 (install libbpf1): ${(e as Error).message}`, { cause: e });
  }
  // koffi's type names are process-wide (shared by every copy of this module, e.g. one per
  // jest module registry), so ours carry a unique suffix.
  const sfx = `_nfbl${(typeCounter++).toString(36)}${process.pid.toString(36)}${Math.floor(Math.random() * 1e9).toString(36)}`;
  for (const t of ['bpf_object', 'bpf_program', 'bpf_map', 'ring_buffer']) koffi.opaque(t + sfx);
  const sampleFnType = koffi.proto(`int ring_buffer_sample_fn${sfx}(void *ctx, void *data, size_t size)`);
  const printFnType = koffi.proto(`int libbpf_print_fn${sfx}(int level, void *fmt, void *ap)`);
  const f = (sig: string): Fn => l.func(sig.replace(/\b(bpf_object|bpf_program|bpf_map|ring_buffer|ring_buffer_sample_fn) \*/g, `$1${sfx} *`)) as Fn;
  const created: Libbpf = {
    bpf_object__open_file: f('bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
    bpf_object__load: f('int bpf_object__load(bpf_object *obj)'),
    bpf_object__close: f('void bpf_object__close(bpf_object *obj)'),
    bpf_object__next_program: f('bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prog)'),
    bpf_object__next_map: f('bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)'),
    bpf_program__name: f('const char *bpf_program__name(const bpf_program *prog)'),
    bpf_program__section_name: f('const char *bpf_program__section_name(const bpf_program *prog)'),
    bpf_program__type: f('int bpf_program__type(const bpf_program *prog)'),
    bpf_program__expected_attach_type: f('int bpf_program__expected_attach_type(const bpf_program *prog)'),
    bpf_program__fd: f('int bpf_program__fd(const bpf_program *prog)'),
    bpf_program__set_autoload: f('int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
    bpf_map__name: f('const char *bpf_map__name(const bpf_map *map)'),
    bpf_map__type: f('int bpf_map__type(const bpf_map *map)'),
    bpf_map__key_size: f('uint32_t bpf_map__key_size(const bpf_map *map)'),
    bpf_map__value_size: f('uint32_t bpf_map__value_size(const bpf_map *map)'),
    bpf_map__max_entries: f('uint32_t bpf_map__max_entries(const bpf_map *map)'),
    bpf_map__map_flags: f('uint32_t bpf_map__map_flags(const bpf_map *map)'),
    bpf_map__fd: f('int bpf_map__fd(const bpf_map *map)'),
    bpf_map__set_max_entries: f('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
    bpf_map__set_pin_path: f('int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
    bpf_map__is_pinned: f('bool bpf_map__is_pinned(const bpf_map *map)'),
    bpf_map__is_internal: f('bool bpf_map__is_internal(const bpf_map *map)'),
    bpf_map__set_initial_value: f('int bpf_map__set_initial_value(bpf_map *map, const void *data, size_t size)'),
    bpf_map_lookup_elem: f('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    bpf_map_update_elem: f('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    bpf_map_delete_elem: f('int bpf_map_delete_elem(int fd, const void *key)'),
    bpf_map_get_next_key: f('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
    bpf_map_update_batch: f('int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)'),
    bpf_map_delete_batch: f('int bpf_map_delete_batch(int fd, const void *keys, void *count, const void *opts)'),
    bpf_map_create: f(
      'int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)',
    ),
    bpf_map_get_fd_by_id: f('int bpf_map_get_fd_by_id(uint32_t id)'),
    bpf_prog_get_fd_by_id: f('int bpf_prog_get_fd_by_id(uint32_t id)'),
    bpf_obj_get: f('int bpf_obj_get(const char *pathname)'),
    bpf_obj_pin: f('int bpf_obj_pin(int fd, const char *pathname)'),
    bpf_obj_get_info_by_fd: f('int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)'),
    bpf_link_create: f('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
    bpf_link_detach: f('int bpf_link_detach(int link_fd)'),
    bpf_link_update: f('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
    bpf_iter_create: f('int bpf_iter_create(int link_fd)'),
    bpf_prog_test_run_opts: f('int bpf_prog_test_run_opts(int prog_fd, void *opts)'),
    bpf_tc_hook_create: f('int bpf_tc_hook_create(void *hook)'),
    bpf_tc_attach: f('int bpf_tc_attach(const void *hook, void *opts)'),
    bpf_tc_detach: f('int bpf_tc_detach(const void *hook, const void *opts)'),
    libbpf_num_possible_cpus: f('int libbpf_num_possible_cpus(void)'),
    ring_buffer__new: f('ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn *sample_cb, void *ctx, const void *opts)'),
    ring_buffer__consume: f('int ring_buffer__consume(ring_buffer *rb)'),
    ring_buffer__free: f('void ring_buffer__free(ring_buffer *rb)'),
    sampleFnType,
  };
  const setPrint = l.func(`void *libbpf_set_print(libbpf_print_fn${sfx} *fn)`) as Fn;
  installPrint(setPrint, printFnType);
  lib = created;
  return created;
}

// ---- libbpf_set_print: capture into the active sinks, forward to the logger ----

const sinks: string[][] = [];
let logger: LibbpfLogger | undefined;
let printBuf: Buffer | undefined;
const PRINT_BUF_SIZE = 1 << 20;

function installPrint(setPrint: Fn, printFnType: TypeObject): void {
  const c = loadLibc();
  printBuf = Buffer.alloc(PRINT_BUF_SIZE);
  // Registered once for the life of the process: libbpf keeps the pointer.
  const cb = koffi.register((level: number, fmt: unknown, ap: unknown): number => {
    try {
      const buf = printBuf as Buffer;
      const n = c.vsnprintf(buf, buf.length, fmt, ap) as number;
      if (n <= 0) return 0;
      const text = buf.toString('utf8', 0, Math.min(n, buf.length - 1));
      for (const s of sinks) s.push(text);
      if (logger) {
        const obj = { component: 'libbpf' };
        const msg = text.trimEnd();
        if (level === 0) logger.warn(obj, msg);
        else if (level === 1) logger.info(obj, msg);
        else logger.debug(obj, msg);
      }
    } catch {
      /* never throw into C */
    }
    return 0;
  }, koffi.pointer(printFnType));
  setPrint(cb);
  printControl = { off: () => setPrint(null), on: () => setPrint(cb) };
}

let printControl: { off(): void; on(): void } | undefined;
let printSuspensions = 0;

/**
 * Silences libbpf's print callback until the returned function is called (nested calls are
 * counted). Used around libbpf calls made on worker threads: a JS callback called from a
 * worker waits for the main thread, and a main thread that blocks (process.exit, a
 * synchronous wait) would then never let it finish.
 */
export function suspendLibbpfPrint(): () => void {
  getLibbpf();
  if (printSuspensions++ === 0) printControl?.off();
  let resumed = false;
  return () => {
    if (resumed) return;
    resumed = true;
    if (--printSuspensions === 0) printControl?.on();
  };
}

/**
 * Routes libbpf's messages (warnings, info, debug incl. verifier logs) to a pino-compatible
 * logger; `undefined` silences them. They are always captured into load errors regardless.
 */
export function setLibbpfLogger(l: LibbpfLogger | undefined): void {
  logger = l;
  getLibbpf();
}

/** Runs fn while collecting what libbpf prints; returns its result and the text. */
export function captureLibbpfLog<T>(fn: () => T): { result: T; log: string } {
  const sink: string[] = [];
  sinks.push(sink);
  try {
    const result = fn();
    return { result, log: sink.join('') };
  } catch (e) {
    if (e instanceof BpfError || !(e instanceof Error)) throw e;
    throw Object.assign(e, { libbpfLog: sink.join('') });
  } finally {
    const i = sinks.indexOf(sink);
    if (i >= 0) sinks.splice(i, 1);
  }
}

let cpus: number | undefined;
/** libbpf_num_possible_cpus(): the number of slots in a per-CPU map value. */
export function numPossibleCpus(): number {
  if (cpus !== undefined) return cpus;
  const n = getLibbpf().libbpf_num_possible_cpus() as number;
  if (n <= 0) throw BpfError.fromErrno(n, 'libbpf_num_possible_cpus');
  cpus = n;
  return n;
}

const F_DUPFD_CLOEXEC = 1030;
/** dup(2) with O_CLOEXEC. */
export function dupFd(fd: number): number {
  const r = loadLibc().fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0) as number;
  if (r < 0) throw BpfError.fromErrno(koffi.errno(), `fcntl(F_DUPFD_CLOEXEC, ${fd})`);
  return r;
}

export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    /* already closed */
  }
}

export function lastErrno(): number {
  return koffi.errno();
}

/** Throws a BpfError for a negative libbpf return value. */
export function check(ret: number, what: string): number {
  if (ret < 0) throw BpfError.fromErrno(ret, what);
  return ret;
}

/** Address of a Buffer's bytes (stable while the Buffer is referenced). */
export function addressOf(buf: Uint8Array): bigint {
  return koffi.address(buf);
}

/**
 * Safety net only: closes an fd whose owner was garbage collected without close().
 * Owners unregister on close so a reused fd number is never closed by mistake.
 */
export const fdFinalizer = new FinalizationRegistry<number>((fd) => closeFd(fd));
