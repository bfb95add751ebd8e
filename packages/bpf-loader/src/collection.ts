import { join } from 'node:path';
import { BpfError, errnoName } from './errors';
import { adoptMapFd } from './bpf-map';
import { adoptProgramFd } from './bpf-program';
import { captureLibbpfLog, dupFd, getLibbpf, suspendLibbpfPrint } from './libbpf';
import { mapSpecOf, objectMaps, objectPrograms, openObject, programSpecOf, readObjectSpec } from './object-spec';
import type { BpfMap, BpfProgram, Collection, LoadOptions, ObjectSpec } from './types';

const LOG_BEGIN = '-- BEGIN PROG LOAD LOG --';
const LOG_END = '-- END PROG LOAD LOG --';

/** Extracts the verifier log(s) libbpf printed between its BEGIN/END markers. */
export function extractVerifierLog(libbpfLog: string): string | undefined {
  const parts: string[] = [];
  let from = 0;
  for (;;) {
    const b = libbpfLog.indexOf(LOG_BEGIN, from);
    if (b < 0) break;
    const start = libbpfLog.indexOf('\n', b) + 1;
    const e = libbpfLog.indexOf(LOG_END, start);
    parts.push(libbpfLog.slice(start, e < 0 ? undefined : e));
    if (e < 0) break;
    from = e + LOG_END.length;
  }
  return parts.length ? parts.join('\n') : undefined;
}

class CollectionImpl implements Collection {
  #closed = false;
  constructor(
    readonly spec: ObjectSpec,
    private readonly mapsByName: Map<string, BpfMap>,
    private readonly progsByName: Map<string, BpfProgram>,
  ) {}
  get maps(): ReadonlyMap<string, BpfMap> {
    return this.mapsByName;
  }
  get programs(): ReadonlyMap<string, BpfProgram> {
    return this.progsByName;
  }
  get closed(): boolean {
    return this.#closed;
  }
  #live(): void {
    if (this.#closed) throw new BpfError('BPF_ERR_CLOSED', `collection ${this.spec.path} is closed`);
  }
  map(name: string): BpfMap {
    this.#live();
    const m = this.mapsByName.get(name);
    if (!m) throw new BpfError('BPF_ERR_NOT_FOUND', `no map '${name}' in ${this.spec.path} (have: ${[...this.mapsByName.keys()].join(', ')})`);
    return m;
  }
  program(name: string): BpfProgram {
    this.#live();
    const p = this.progsByName.get(name);
    if (!p) throw new BpfError('BPF_ERR_NOT_FOUND', `no program '${name}' in ${this.spec.path} (have: ${[...this.progsByName.keys()].join(', ')})`);
    return p;
  }
  takeMap(name: string): BpfMap {
    const m = this.map(name);
    this.mapsByName.delete(name);
    return m;
  }
  takeProgram(name: string): BpfProgram {
    const p = this.program(name);
    this.progsByName.delete(name);
    return p;
  }
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.progsByName.values()) p.close();
    for (const m of this.mapsByName.values()) m.close();
    this.progsByName.clear();
    this.mapsByName.clear();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** An opened object with the load options applied, ready for bpf_object__load. */
interface Prepared {
  readonly lib: ReturnType<typeof getLibbpf>;
  readonly spec: ObjectSpec;
  readonly obj: unknown;
}

/** bpf_object__open_file plus every option (sizes, initial values, pins, autoload). Closes the object on failure. */
function prepare(specOrPath: ObjectSpec | string, opts: LoadOptions): Prepared {
  const lib = getLibbpf();
  const spec = typeof specOrPath === 'string' ? readObjectSpec(specOrPath) : specOrPath;
  const { ptr: obj } = openObject(spec.path);
  try {
    const knownMaps = new Set<string>();
    for (const m of objectMaps(lib, obj)) {
      const name = lib.bpf_map__name(m) as string;
      knownMaps.add(name);
      const size = opts.mapSizes?.[name];
      if (size !== undefined) {
        const r = lib.bpf_map__set_max_entries(m, size) as number;
        if (r < 0) throw BpfError.fromErrno(r, `bpf_map__set_max_entries(${name}, ${size})`);
      }
      const init = opts.initialValues?.[name];
      if (init !== undefined) {
        const r = lib.bpf_map__set_initial_value(m, init, init.length) as number;
        if (r < 0) throw BpfError.fromErrno(r, `bpf_map__set_initial_value(${name}, ${init.length} bytes)`);
      }
      const pin = opts.pinMaps;
      if (pin && (pin.maps ? pin.maps.includes(name) : !(lib.bpf_map__is_internal(m) as boolean))) {
        const r = lib.bpf_map__set_pin_path(m, join(pin.dir, name)) as number;
        if (r < 0) throw BpfError.fromErrno(r, `bpf_map__set_pin_path(${name})`);
      }
    }
    for (const name of [...Object.keys(opts.mapSizes ?? {}), ...Object.keys(opts.initialValues ?? {}), ...(opts.pinMaps?.maps ?? [])]) {
      if (!knownMaps.has(name)) throw new BpfError('BPF_ERR_NOT_FOUND', `load option names map '${name}', which ${spec.path} does not have`);
    }
    if (opts.programs) {
      const wanted = new Set(opts.programs);
      const seen = new Set<string>();
      for (const p of objectPrograms(lib, obj)) {
        const name = lib.bpf_program__name(p) as string;
        seen.add(name);
        lib.bpf_program__set_autoload(p, wanted.has(name));
      }
      for (const name of wanted) {
        if (!seen.has(name)) throw new BpfError('BPF_ERR_NOT_FOUND', `no program '${name}' in ${spec.path}`);
      }
    }
    return { lib, spec, obj };
  } catch (e) {
    lib.bpf_object__close(obj);
    throw e;
  }
}

/** After bpf_object__load: the error with its verifier log, or the Collection. Always closes the bpf_object. */
function finish(p: Prepared, ret: number, log: string, opts: LoadOptions): Collection {
  const { lib, spec, obj } = p;
  const maps = new Map<string, BpfMap>();
  const progs = new Map<string, BpfProgram>();
  try {
    if (ret < 0) {
      const verifierLog = extractVerifierLog(log);
      const e = Math.abs(ret);
      if (verifierLog !== undefined) {
        throw new BpfError('BPF_ERR_VERIFIER', `the kernel rejected a program of ${spec.path} (${errnoName(e)}):\n${verifierLog}`, {
          errno: e,
          verifierLog,
          libbpfLog: log,
        });
      }
      throw new BpfError('BPF_ERR_LOAD', `bpf_object__load(${spec.path}): ${errnoName(e)}${log ? `\n${log}` : ''}`, { errno: e, libbpfLog: log });
    }
    for (const m of objectMaps(lib, obj)) {
      const meta = mapSpecOf(lib, m);
      const fd = lib.bpf_map__fd(m) as number;
      if (fd < 0) continue;
      const pinned = (lib.bpf_map__is_pinned(m) as boolean) && opts.pinMaps ? join(opts.pinMaps.dir, meta.name) : undefined;
      maps.set(meta.name, adoptMapFd(dupFd(fd), meta, pinned));
    }
    for (const pr of objectPrograms(lib, obj)) {
      const meta = programSpecOf(lib, pr);
      const fd = lib.bpf_program__fd(pr) as number;
      if (fd < 0) continue; // not loaded (autoload off)
      progs.set(meta.name, adoptProgramFd(dupFd(fd), meta));
    }
    return new CollectionImpl(spec, maps, progs);
  } catch (e) {
    for (const pr of progs.values()) pr.close();
    for (const m of maps.values()) m.close();
    throw e;
  } finally {
    lib.bpf_object__close(obj);
  }
}

/**
 * Loads an object into the kernel (bpf_object__open_file, the options, bpf_object__load),
 * then duplicates every map and program fd into objects the returned Collection owns and
 * closes the bpf_object. A rejected program throws BPF_ERR_VERIFIER with `verifierLog`;
 * any failure closes everything opened so far.
 */
export function loadCollection(specOrPath: ObjectSpec | string, opts: LoadOptions = {}): Collection {
  const p = prepare(specOrPath, opts);
  let ret: number;
  let log: string;
  try {
    ({ result: ret, log } = captureLibbpfLog(() => p.lib.bpf_object__load(p.obj) as number));
  } catch (e) {
    p.lib.bpf_object__close(p.obj);
    throw e;
  }
  return finish(p, ret, log, opts);
}

/**
 * loadCollection with bpf_object__load (where the verifier runs: milliseconds to tens of
 * milliseconds) on a worker thread, so the event loop keeps serving while a program is
 * verified. libbpf's print callback is silenced meanwhile (a JS callback called from a worker
 * thread would wait for the main thread: a deadlock if that thread blocks, e.g. in
 * process.exit); a load that fails is repeated synchronously to capture the verifier log.
 */
export async function loadCollectionAsync(specOrPath: ObjectSpec | string, opts: LoadOptions = {}): Promise<Collection> {
  const p = prepare(specOrPath, opts);
  const resume = suspendLibbpfPrint();
  let ret: number;
  try {
    ret = await new Promise<number>((resolve, reject) => {
      (p.lib.bpf_object__load as unknown as { async: (obj: unknown, cb: (err: unknown, r: number) => void) => void }).async(p.obj, (err, r) => (err ? reject(err) : resolve(r)));
    });
  } catch (e) {
    resume();
    p.lib.bpf_object__close(p.obj);
    throw BpfError.from(e);
  }
  resume();
  if (ret < 0) {
    p.lib.bpf_object__close(p.obj);
    return loadCollection(specOrPath, opts); // same failure, with libbpf's log and the verifier's
  }
  return finish(p, ret, '', opts);
}
