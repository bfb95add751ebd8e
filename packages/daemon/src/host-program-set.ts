// The host-wide program set: the TC, XDP and cgroup objects loaded and verified ONCE per bpffs root
// (at start, synchronously), their maps pinned in <root>/_host/ and reused by every later load,
// their programs pinned there as prog_<function>. Every attachment's links run these programs;
// an attachment is a slot in the host maps (slot-state.ts). A build whose programs differ from
// the pinned ones (program tag) replaces them on every live link first (program-upgrade.ts).
// The sever iterators load lazily, once, against the same pins.

import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import {
  createArrayMap,
  createHashMap,
  createMapOfMaps,
  createPerCpuArrayMap,
  loadCollection,
  loadCollectionAsync,
  openPinnedMap,
  openPinnedProgram,
  codecs,
  type ArrayMapView,
  type BpfMap,
  type BpfProgram,
  type Collection,
  type HashMapView,
  type MapOfMapsView,
  type PerCpuArrayMapView,
} from '@netfence/bpf-loader';
import {
  CGROUP_ATTACHED_PROGRAMS,
  CGROUP_ONLY_MAPS,
  CODECS,
  HOST_MAPS,
  OBJECTS,
  SEVER_PROGRAMS,
  SEVER_SHARED_MAPS,
  TC_ONLY_MAPS,
  TC_PROGRAM_BY_DIRECTION,
  hostPinnedMaps,
  mapSizes,
  objectPath,
  type AttachmentConfig,
  type DevSlots,
  type MapManifest,
  type SeverTarget,
} from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import { DaemonError } from './daemon-error';
import { HOST_DIR, LEGACY_EVENTS, programPin, type CgroupHookKey } from './pin-layout';
import { upgradeLinks, type ProgramsByHook } from './program-upgrade';

export type FilterObject = 'tc' | 'xdp' | 'cgroup';
export type HostObject = FilterObject | 'sever';
/** A tc_slots key, as its codec takes it. */
export type TcKey = Parameters<(typeof CODECS)['tcKey']['encode']>[0];

export interface HostProgramSetOptions {
  /** The bpffs directory (bpffs_root). */
  readonly root: string;
  /** Slots of host maps created now (maps.max_attachments + 1); pinned maps keep theirs. */
  readonly slots: number;
  /** Size of the event ring created now; a pinned ring keeps its size. */
  readonly ringBytes: number;
  /** Where the objects are (default: @netfence/bpf-programs' build). Tests load a second build this way. */
  readonly objectPath?: (name: HostObject) => string;
  readonly logger: Logger;
}

/** Typed views of the host-wide maps (docs/DESIGN.md "Host-wide maps"); `all` to close. */
export interface HostMaps {
  readonly config: ArrayMapView<AttachmentConfig & { readonly active?: boolean }>;
  readonly rules: Readonly<Record<4 | 6, MapOfMapsView<number>>>;
  /** A slot's counters, one element per slot (STATS.COUNT u64 per CPU). */
  readonly stats: PerCpuArrayMapView<readonly bigint[]>;
  /** Raw: a slot's value is copied whole on migration (with its bucket). */
  readonly dnsLimit: BpfMap;
  /** Device bindings (device-slots.ts): by ifindex for the usual ones, by {ifindex, direction} above. */
  readonly devSlots: ArrayMapView<DevSlots>;
  readonly tcSlots: HashMapView<TcKey, number>;
  readonly cgSlot: HashMapView<bigint, number>;
  readonly severCfg: ArrayMapView<SeverTarget>;
  readonly events: BpfMap;
  readonly all: readonly BpfMap[];
}

const expect = (m: MapManifest) => ({ type: m.type, keySize: m.keySize, valueSize: m.valueSize });

/** The loaded objects' maps by name, sized for `slots` and `ringBytes`, limited to what `object` has. */
function sizesFor(object: HostObject, all: Record<string, number>): Record<string, number> {
  const names = new Set(Object.values(OBJECTS[object].maps).map((m) => m.name));
  return Object.fromEntries(Object.entries(all).filter(([n]) => names.has(n)));
}

export class HostProgramSet {
  readonly dir: string;
  readonly slots: number;
  readonly maps: HostMaps;
  /** Id of the host's nf_config: a program that uses it is one of this host set's (any build). */
  readonly configMapId: number;
  private readonly programs: ProgramsByHook;
  private readonly sizes: Record<string, number>;
  private sever: Promise<Collection> | undefined;
  private closed = false;

  private constructor(
    private readonly opts: HostProgramSetOptions,
    init: { dir: string; slots: number; sizes: Record<string, number>; maps: HostMaps; programs: ProgramsByHook },
  ) {
    this.dir = init.dir;
    this.slots = init.slots;
    this.sizes = init.sizes;
    this.maps = init.maps;
    this.programs = init.programs;
    this.configMapId = init.maps.config.map.info().id;
  }

  /** Loads (or takes over from pins, upgrading live links) the host set. Synchronous: runs at start. */
  static open(opts: HostProgramSetOptions): HostProgramSet {
    const dir = join(opts.root, HOST_DIR);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    adoptLegacyRing(opts.root, dir, opts.logger);
    const { slots, ringBytes } = pinnedSizes(dir, opts);
    const sizes = mapSizes({ slots, ringBytes });
    const path = opts.objectPath ?? objectPath;
    const load = (object: FilterObject) => {
      try {
        return loadCollection(path(object), { mapSizes: sizesFor(object, sizes), pinMaps: { dir, maps: hostPinnedMaps(object) } });
      } catch (e) {
        throw new DaemonError('NETFENCE_ERR_DATAPATH', `loading the ${object} programs against the host maps pinned in ${dir}: ${(e as Error).message}`, { cause: e });
      }
    };
    const tc = load('tc');
    let xdp: Collection | undefined;
    let cgroup: Collection | undefined;
    let maps: HostMaps | undefined;
    const taken: BpfProgram[] = [];
    try {
      xdp = load('xdp'); // the same maps as tc (its pins, just made or reused)
      cgroup = load('cgroup');
      maps = hostMaps(tc, cgroup);
      const fresh: ProgramsByHook = {
        tc: { ingress: take(tc, OBJECTS.tc.programs[TC_PROGRAM_BY_DIRECTION.ingress].name, taken), egress: take(tc, OBJECTS.tc.programs[TC_PROGRAM_BY_DIRECTION.egress].name, taken) },
        xdp: take(xdp, OBJECTS.xdp.programs.filter.name, taken),
        cgroup: Object.fromEntries(CGROUP_ATTACHED_PROGRAMS.map((k) => [k, take(cgroup!, OBJECTS.cgroup.programs[k].name, taken)])) as ProgramsByHook['cgroup'],
      };
      const programs = installPrograms(opts.root, dir, fresh, maps, opts.logger);
      return new HostProgramSet(opts, { dir, slots, sizes, maps, programs });
    } catch (e) {
      for (const p of taken) p.close();
      for (const m of maps?.all ?? []) m.close();
      throw e;
    } finally {
      tc.close();
      xdp?.close();
      cgroup?.close();
    }
  }

  tcProgram(direction: 'ingress' | 'egress'): BpfProgram {
    return this.programs.tc[direction];
  }

  /** The XDP filter (attached in native mode: see target-binding.ts). */
  xdpProgram(): BpfProgram {
    return this.programs.xdp;
  }

  cgroupProgram(key: CgroupHookKey): BpfProgram {
    return this.programs.cgroup[key];
  }

  /**
   * The sever iterators, loaded on first use against the host pins (one load for the life of
   * the set; on a worker thread: it parses the kernel's BTF). Callers run passes one at a time.
   */
  severIterators(): Promise<Collection> {
    if (this.closed) return Promise.reject(new DaemonError('NETFENCE_ERR_SHUTTING_DOWN', 'the host program set is closed'));
    if (!this.sever) {
      const path = (this.opts.objectPath ?? objectPath)('sever');
      const p = loadCollectionAsync(path, {
        mapSizes: sizesFor('sever', this.sizes),
        pinMaps: { dir: this.dir, maps: SEVER_SHARED_MAPS },
        programs: SEVER_PROGRAMS.map((n) => OBJECTS.sever.programs[n].name),
      });
      this.sever = p;
      p.catch(() => {
        if (this.sever === p) this.sever = undefined; // the next pass loads again
      });
    }
    return this.sever;
  }

  /** Releases fds; the pins (maps, programs) stay. Waits for a sever load in flight. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of allPrograms(this.programs)) p.close();
    for (const m of this.maps.all) m.close();
    const sever = this.sever;
    this.sever = undefined;
    if (sever) (await sever.catch(() => undefined))?.close();
  }
}

function allPrograms(p: ProgramsByHook): BpfProgram[] {
  return [...Object.values(p.tc), p.xdp, ...Object.values(p.cgroup)];
}

function take(c: Collection, name: string, taken: BpfProgram[]): BpfProgram {
  const p = c.takeProgram(name);
  taken.push(p);
  return p;
}

/**
 * A root whose attachments still use the layout-v1 ring (<root>/events) shares it with the host
 * set: pinned a second time as the host ring, so one consumer reads the events of both layouts
 * while they are migrated (the v1 pin goes with the last v1 attachment).
 */
function adoptLegacyRing(root: string, dir: string, logger: Logger): void {
  const legacy = join(root, LEGACY_EVENTS);
  const host = join(dir, HOST_MAPS.events.name);
  if (!existsSync(legacy) || existsSync(host)) return;
  const ring = openPinnedMap(legacy, { type: HOST_MAPS.events.type });
  try {
    ring.pin(host);
  } finally {
    ring.close();
  }
  logger.info({ ring: legacy }, 'the host set shares the event ring of the previous layout');
}

/** The slot count and ring size of a pinned host set (which keeps them), else the configured ones. */
function pinnedSizes(dir: string, opts: HostProgramSetOptions): { slots: number; ringBytes: number } {
  let slots = opts.slots;
  let ringBytes = opts.ringBytes;
  const read = (name: string, type: number): number | undefined => {
    const p = join(dir, name);
    if (!existsSync(p)) return undefined;
    const m = openPinnedMap(p, { type });
    try {
      return m.maxEntries;
    } finally {
      m.close();
    }
  };
  const pinnedSlots = read(HOST_MAPS.config.name, HOST_MAPS.config.type);
  if (pinnedSlots !== undefined && pinnedSlots !== slots) {
    opts.logger.warn({ pinned: pinnedSlots - 1, configured: slots - 1 }, 'the pinned host maps keep their size (maps.max_attachments) until no attachment is left');
    slots = pinnedSlots;
  }
  const pinnedRing = read(HOST_MAPS.events.name, HOST_MAPS.events.type);
  if (pinnedRing !== undefined && pinnedRing !== ringBytes) {
    opts.logger.warn({ pinned: pinnedRing, configured: ringBytes }, 'the pinned event ring keeps its size until no attachment is left');
    ringBytes = pinnedRing;
  }
  return { slots, ringBytes };
}

/** The host maps, taken from the loaded collections (which reused or created their pins), as typed views. */
function hostMaps(tc: Collection, cgroup: Collection): HostMaps {
  const all: BpfMap[] = [];
  const get = (c: Collection, m: MapManifest): BpfMap => {
    const map = c.takeMap(m.name);
    all.push(map);
    const e = expect(m);
    if (map.type !== e.type || map.keySize !== e.keySize || map.valueSize !== e.valueSize)
      throw new DaemonError('NETFENCE_ERR_DATAPATH', `host map ${m.name} is type ${map.type} key ${map.keySize} value ${map.valueSize}, the manifest says ${e.type}/${e.keySize}/${e.valueSize}`);
    return map;
  };
  try {
    return {
      config: createArrayMap(get(tc, HOST_MAPS.config), CODECS.config),
      rules: { 4: createMapOfMaps(get(tc, HOST_MAPS.rulesV4)), 6: createMapOfMaps(get(tc, HOST_MAPS.rulesV6)) },
      stats: createPerCpuArrayMap(get(tc, HOST_MAPS.stats), CODECS.stats),
      dnsLimit: get(tc, HOST_MAPS.dnsLimit),
      devSlots: createArrayMap(get(tc, TC_ONLY_MAPS.devSlots), CODECS.devSlots),
      tcSlots: createHashMap(get(tc, TC_ONLY_MAPS.tcSlots), { key: CODECS.tcKey, value: CODECS.slot }),
      cgSlot: createHashMap(get(cgroup, CGROUP_ONLY_MAPS.cgSlot), { key: codecs.u64, value: CODECS.cgSlot }),
      severCfg: createArrayMap(get(cgroup, CGROUP_ONLY_MAPS.severConfig), CODECS.severConfig),
      events: get(tc, HOST_MAPS.events),
      all,
    };
  } catch (e) {
    for (const m of all) m.close();
    throw e;
  }
}

/**
 * Pins this build's programs as prog_<function>, or keeps the pinned ones when they are the same
 * code on the same maps (equal tag, and they use this host's nf_config). A build that differs
 * is first put on every live link of the program it replaces (program-upgrade.ts), then pinned.
 * Returns the programs attaches use from now on; closes those it does not keep.
 */
function installPrograms(root: string, dir: string, fresh: ProgramsByHook, maps: HostMaps, logger: Logger): ProgramsByHook {
  const configId = maps.config.map.info().id;
  const keep = (p: BpfProgram): BpfProgram => {
    const pin = programPin(dir, p.name);
    if (!existsSync(pin)) {
      p.pin(pin);
      return p;
    }
    const pinned = openPinnedProgram(pin);
    const same = (() => {
      const a = pinned.info();
      return a.tag === p.info().tag && a.mapIds.includes(configId);
    })();
    if (same) {
      p.close();
      return pinned;
    }
    pinned.close();
    return p; // pinned below, once the links run it
  };
  const programs: ProgramsByHook = {
    tc: { ingress: keep(fresh.tc.ingress), egress: keep(fresh.tc.egress) },
    xdp: keep(fresh.xdp),
    cgroup: Object.fromEntries(Object.entries(fresh.cgroup).map(([k, p]) => [k, keep(p)])) as ProgramsByHook['cgroup'],
  };
  const updated = upgradeLinks(root, programs, { configMapId: configId, cgSlotMapId: maps.cgSlot.map.info().id }, logger);
  for (const p of allPrograms(programs)) {
    if (p.pinnedPath !== undefined) continue;
    const pin = programPin(dir, p.name);
    try {
      rmPin(pin);
      p.pin(pin);
    } catch (e) {
      throw new DaemonError('NETFENCE_ERR_DATAPATH', `pinning program ${p.name} at ${pin}: ${(e as Error).message}`, { cause: e });
    }
  }
  if (updated > 0) logger.info({ links: updated }, 'a new build of the programs replaced the old one on every live link');
  return programs;
}

function rmPin(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
