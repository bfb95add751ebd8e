// The datapath over @netfence/bpf-loader and the @netfence/bpf-programs manifest.
//
// Pins, per attachment, under <root>/<attachment-id>/: the policy maps (by their
// manifest names) and one link per attached program (link_<program>). The pins
// are what keeps a filter enforcing while the daemon is down.

import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import {
  attachCgroup,
  attachIter,
  attachTcx,
  createArrayMap,
  createLpmTrieMap,
  createPerCpuArrayMap,
  loadCollectionAsync,
  openPinnedLink,
  openPinnedMap,
  readIteratorAsync,
  type ArrayMapView,
  type BpfLink,
  type BpfMap,
  type Collection,
  type LpmKey,
  type LpmTrieMapView,
  type PerCpuArrayMapView,
} from '@netfence/bpf-loader';
import {
  CGROUP_ATTACHED_PROGRAMS,
  CGROUP_ONLY_MAPS,
  OBJECTS,
  POLICY_MAPS,
  STATS,
  SEVER_PROGRAMS,
  SEVER_SHARED_MAPS,
  CODECS,
  encodeDnsLimit,
  formatPrefix,
  objectPath,
  policyEntry,
  type AllowValue,
  type AttachmentConfig,
  type DnsRateLimit,
  type MapManifest,
  type ModeName,
  type SeverTarget,
} from '@netfence/bpf-programs';
import { parseCidr, type KernelOp, type KernelView, type PolicyMode } from '@netfence/policy-engine';
import type { Logger } from 'pino';
import { SharedEventRing } from './bpf-event-ring';
import { DaemonError } from './daemon-error';
import { withCapabilityHint } from './capabilities';
import type { AttachParams, AttachmentDatapath, CgroupAttachParams, Datapath, DatapathEvent, TcAttachParams } from './datapath';

export interface BpfDatapathOptions {
  /** bpffs directory holding one sub-directory of pins per attachment. */
  readonly root: string;
  readonly mapSizes: { readonly allow: number; readonly deny: number; readonly ringbufBytes: number };
  /**
   * The kernel's rate limit on what each workload sends to its own DNS server (dns.rate_limit_qps,
   * dns.rate_limit_burst): written at attach, and at restore when the pinned one differs.
   * Default: none (rateQps 0).
   */
  readonly dnsRateLimit?: DnsRateLimit;
  readonly onEvent: (ev: DatapathEvent) => void;
  readonly logger: Logger;
}

const MODE_TO_KERNEL: Record<PolicyMode, ModeName> = { disabled: 'DISABLED', allowlist: 'ALLOWLIST', denylist: 'DENYLIST', block_all: 'BLOCK_ALL' };
const MODE_FROM_KERNEL: Record<ModeName, PolicyMode> = { DISABLED: 'disabled', ALLOWLIST: 'allowlist', DENYLIST: 'denylist', BLOCK_ALL: 'block_all' };


function mapFull(e: unknown): boolean {
  return (e as { code?: string }).code === 'BPF_ERR_MAP_FULL';
}

function datapathError(e: unknown, what: string): DaemonError {
  if (e instanceof DaemonError) return e;
  if (mapFull(e)) return new DaemonError('NETFENCE_ERR_MAP_FULL', `${what}: the eBPF map is full (raise maps.allow_entries / maps.deny_entries)`, { cause: e });
  return withCapabilityHint(new DaemonError('NETFENCE_ERR_DATAPATH', `${what}: ${(e as Error).message}`, { cause: e }));
}

/** An LPM map key as the canonical prefix text the policy engine uses. */
function cidrOfKey(key: LpmKey): string {
  return parseCidr(formatPrefix({ family: key.data.length === 4 ? 4 : 6, bytes: key.data, prefixLen: key.prefixLen })).text;
}

/** The typed view of an allow map (v4: 4 address bytes, v6: 16), values by the manifest's codec. */
function allowView(map: BpfMap, m: MapManifest): LpmTrieMapView<AllowValue> {
  return createLpmTrieMap(map, { dataSize: m.keySize - 4, value: CODECS.allowValue });
}

/**
 * The last-seen times (kernel monotonic ns, as the programs write them) of the allow entries in
 * the pinned maps under `dir`, by canonical prefix; maps whose layout is not this build's are
 * skipped (their times are then lost: those addresses fall back to their TTL, failing closed).
 */
function pinnedLastSeen(dir: string, logger: Logger): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const m of [POLICY_MAPS.allowV4, POLICY_MAPS.allowV6]) {
    const path = join(dir, m.name);
    if (!existsSync(path)) continue;
    let map: BpfMap | undefined;
    try {
      map = openPinnedMap(path, { type: m.type, keySize: m.keySize, valueSize: m.valueSize });
      for (const [key, v] of allowView(map, m).entries()) if (v.lastSeenNs !== 0n) out.set(cidrOfKey(key), v.lastSeenNs);
    } catch (e) {
      logger.warn({ err: e, map: path }, 'cannot read last-seen times from the old map; its learned addresses fall back to their TTL');
    } finally {
      map?.close();
    }
  }
  return out;
}

/** A wall-clock deadline (ms) as the programs read it: CLOCK_MONOTONIC seconds, rounded up; 0 (none) for undefined. */
function monotonicSeconds(wallMs: number | undefined): number {
  if (wallMs === undefined) return 0;
  const monoNs = process.hrtime.bigint() + BigInt(Math.round((wallMs - Date.now()) * 1e6));
  return Math.max(1, Number((monoNs + 999_999_999n) / 1_000_000_000n));
}

/**
 * The maps every attachment uses, opened (from a fresh load or from pins), as typed views with
 * the manifest's codecs; `all` holds the maps themselves, to close.
 */
interface PolicyMaps {
  readonly config: ArrayMapView<AttachmentConfig>;
  readonly allow: Record<'allow_v4' | 'allow_v6', LpmTrieMapView<AllowValue>>;
  readonly deny: Record<'deny_v4' | 'deny_v6', LpmTrieMapView<{ readonly prefixLen: number }>>;
  readonly stats: PerCpuArrayMapView<bigint>;
  readonly dnsLimit: ArrayMapView<DnsRateLimit>;
  readonly severCfg?: ArrayMapView<SeverTarget>;
  readonly all: readonly BpfMap[];
}

/** How a cgroup attachment loads its sever iterators when it first needs them. */
interface SeverContext {
  readonly cgroupId: bigint;
  readonly cgroupPath: string;
  readonly load: () => Promise<Collection>;
  collection?: Collection;
}

class BpfAttachment implements AttachmentDatapath {
  private closed = false;
  private cfg: AttachmentConfig;
  private severChain: Promise<void> = Promise.resolve();
  /** Last-seen times carried over from the maps this attachment replaced (see reattach). */
  private inherited = new Map<string, bigint>();
  /** Wall-clock deadlines (ms) of allow entries, enforced by the programs themselves (see setAllowDeadlines). */
  private deadlines: ReadonlyMap<string, number> = new Map();

  constructor(
    private readonly dir: string,
    readonly tcDirection: 'ingress' | 'egress' | undefined,
    private readonly maps: PolicyMaps,
    private readonly links: BpfLink[],
    /** Cgroup attachments: what the sever iterators need (loaded on first use). */
    private readonly severCtx: SeverContext | undefined,
    private readonly logger: Logger,
    /** Told once this attachment's fds are released (the datapath stops tracking it). */
    private readonly onClosed: (a: BpfAttachment) => void,
  ) {
    this.cfg = maps.config.get(0);
  }

  private writeConfig(cfg: AttachmentConfig): void {
    this.maps.config.set(0, cfg);
    this.cfg = cfg;
  }

  /** Takes over the last-seen times of the maps this attachment replaces: written with each allow entry, and answered by lastSeenMs until then. */
  inheritLastSeen(times: Map<string, bigint>): void {
    this.inherited = times;
  }

  setAllowDeadlines(next: ReadonlyMap<string, number>): void {
    const prev = this.deadlines;
    this.deadlines = next;
    const changed = new Set<string>();
    for (const [c, ms] of next) if (prev.get(c) !== ms) changed.add(c);
    for (const c of prev.keys()) if (!next.has(c)) changed.add(c);
    for (const cidr of changed) {
      const entry = policyEntry('allow', cidr);
      const map = this.maps.allow[entry.map as keyof PolicyMaps['allow']];
      const held = map.get(entry.lpmKey);
      if (!held) continue; // written with its deadline when it is added
      map.set(entry.lpmKey, { prefixLen: held.prefixLen, lastSeenNs: held.lastSeenNs, expiresS: monotonicSeconds(next.get(cidr)) });
    }
  }

  private lpmOp(op: 'add' | 'delete', list: 'allow' | 'deny', cidr: string): void {
    const entry = policyEntry(list, cidr);
    const prefixLen = entry.prefix.prefixLen;
    if (list === 'allow') {
      const map = this.maps.allow[entry.map as keyof PolicyMaps['allow']];
      if (op === 'add') map.set(entry.lpmKey, { prefixLen, lastSeenNs: this.inherited.get(cidr) ?? 0n, expiresS: monotonicSeconds(this.deadlines.get(cidr)) });
      else map.delete(entry.lpmKey);
    } else {
      const map = this.maps.deny[entry.map as keyof PolicyMaps['deny']];
      if (op === 'add') map.set(entry.lpmKey, { prefixLen });
      else map.delete(entry.lpmKey);
    }
  }

  apply(ops: readonly KernelOp[]): void {
    const done: { op: KernelOp; prev?: AttachmentConfig }[] = [];
    try {
      for (const op of ops) {
        if (op.op === 'setMode') {
          const prev = this.cfg;
          this.writeConfig({ ...this.cfg, mode: MODE_TO_KERNEL[op.mode], dryRun: op.dryRun });
          done.push({ op, prev });
        } else {
          this.lpmOp(op.op, op.map, op.cidr);
          done.push({ op });
        }
      }
    } catch (e) {
      // Undo in reverse so the kernel is back where it started.
      for (const d of done.reverse()) {
        try {
          if (d.op.op === 'setMode') this.writeConfig(d.prev!);
          else this.lpmOp(d.op.op === 'add' ? 'delete' : 'add', d.op.map, d.op.cidr);
        } catch (undoErr) {
          this.logger.error({ err: undoErr, op: d.op }, 'could not undo a kernel op');
        }
      }
      throw datapathError(e, `applying ${ops.length} kernel op(s)`);
    }
  }

  readView(): KernelView {
    const allow = new Set<string>();
    const deny = new Set<string>();
    for (const map of Object.values(this.maps.allow)) for (const key of map.keys()) allow.add(cidrOfKey(key));
    for (const map of Object.values(this.maps.deny)) for (const key of map.keys()) deny.add(cidrOfKey(key));
    return { mode: MODE_FROM_KERNEL[this.cfg.mode], dryRun: !!this.cfg.dryRun, allow, deny };
  }

  configureDns(server: { address: string; port: number }, filtering: boolean): void {
    const v6 = server.address.includes(':');
    this.writeConfig({ ...this.cfg, dnsFilter: filtering, dnsServer: v6 ? { v6: server.address, port: server.port } : { v4: server.address, port: server.port } });
  }

  counters() {
    const at = (i: number) => this.maps.stats.getSummed(i);
    return {
      allowed: at(STATS.ALLOWED),
      blocked: at(STATS.BLOCKED),
      dryRunWouldBlock: at(STATS.DRY_RUN_WOULD_BLOCK),
      eventsLost: at(STATS.EVENTS_LOST),
      dnsRateLimited: at(STATS.DNS_RATE_LIMITED),
    };
  }

  lastSeenMs(cidr: string): number | undefined {
    const entry = policyEntry('allow', cidr);
    const v = this.maps.allow[entry.map as keyof PolicyMaps['allow']].get(entry.lpmKey);
    const lastSeenNs = (v?.lastSeenNs ?? 0n) || (this.inherited.get(cidr) ?? 0n);
    if (lastSeenNs === 0n) return undefined;
    const ageMs = Number((process.hrtime.bigint() - lastSeenNs) / 1_000_000n);
    return Date.now() - Math.max(0, ageMs);
  }

  /** Resolves when no sever pass is running. */
  settle(): Promise<void> {
    return this.severChain;
  }

  /** Severs in the background, one pass at a time per attachment (they share sever_cfg). */
  sever(cidr: string): Promise<void> {
    const run = this.severChain.then(() => this.severNow(cidr));
    this.severChain = run.catch(() => undefined);
    return run;
  }

  private async severNow(cidr: string): Promise<void> {
    const ctx = this.severCtx;
    if (!ctx || !this.maps.severCfg || this.closed) return; // TC: the next packet is dropped by the filter itself
    ctx.collection ??= await ctx.load();
    if (this.closed) return;
    this.maps.severCfg.set(0, { cgroupId: ctx.cgroupId, prefix: cidr });
    // A socket iterator walks the network namespace it is created in: run it in every
    // namespace that a process of the cgroup (or a descendant) lives in.
    const namespaces = cgroupNetnsPaths(ctx.cgroupPath);
    for (const p of SEVER_PROGRAMS) {
      const link = attachIter(ctx.collection.program(OBJECTS.sever.programs[p].name));
      try {
        for (const ns of namespaces) {
          try {
            await readIteratorAsync(link, { netnsPath: ns });
          } catch (e) {
            this.logger.warn({ err: e, netns: ns }, 'sever pass failed in a namespace');
          }
        }
      } finally {
        link.close();
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.links) l.close(); // pinned: stays attached
    closePolicyMaps(this.maps);
    this.severCtx?.collection?.close();
    this.onClosed(this);
  }

  destroy(): void {
    if (!this.closed) {
      for (const l of this.links) {
        try {
          l.detach();
        } catch (e) {
          this.logger.warn({ err: e }, 'detach');
        }
      }
      this.close();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

}

function closePolicyMaps(maps: PolicyMaps): void {
  for (const m of maps.all) m.close();
}

/**
 * The attachment's maps, each from `get` (taken from a fresh collection, or opened from its
 * pin and checked against the manifest). Closes what it got if one fails.
 */
function policyMaps(get: (m: MapManifest) => BpfMap, withSever: boolean): PolicyMaps {
  const got: BpfMap[] = [];
  const one = (m: MapManifest): BpfMap => {
    const map = get(m);
    got.push(map);
    return map;
  };
  try {
    const deny = (m: MapManifest) => createLpmTrieMap(one(m), { dataSize: m.keySize - 4, value: CODECS.denyValue });
    return {
      config: createArrayMap(one(POLICY_MAPS.config), CODECS.config),
      allow: { allow_v4: allowView(one(POLICY_MAPS.allowV4), POLICY_MAPS.allowV4), allow_v6: allowView(one(POLICY_MAPS.allowV6), POLICY_MAPS.allowV6) },
      deny: { deny_v4: deny(POLICY_MAPS.denyV4), deny_v6: deny(POLICY_MAPS.denyV6) },
      stats: createPerCpuArrayMap(one(POLICY_MAPS.stats), CODECS.stat),
      dnsLimit: createArrayMap(one(POLICY_MAPS.dnsLimit), CODECS.dnsLimit),
      severCfg: withSever ? createArrayMap(one(CGROUP_ONLY_MAPS.severConfig), CODECS.severConfig) : undefined,
      all: got,
    };
  } catch (e) {
    for (const m of got) m.close();
    throw e;
  }
}

const takePolicyMaps = (c: Collection, withSever: boolean) => policyMaps((m) => c.takeMap(m.name), withSever);
const openPinnedPolicyMaps = (dir: string, withSever: boolean) =>
  policyMaps((m) => openPinnedMap(join(dir, m.name), { type: m.type, keySize: m.keySize, valueSize: m.valueSize }), withSever);

/** The sever iterators of a cgroup attachment, loaded against its pinned maps. */
function severContext(dir: string, cgroupPath: string, sizes: Record<string, number>): SeverContext {
  return {
    cgroupId: statSync(cgroupPath, { bigint: true }).ino,
    cgroupPath,
    load: () => loadCollectionAsync(objectPath('sever'), { mapSizes: sizes, pinMaps: { dir, maps: SEVER_SHARED_MAPS }, programs: SEVER_PROGRAMS.map((n) => OBJECTS.sever.programs[n].name) }),
  };
}

function initialConfig(numericId: number, l3: boolean): AttachmentConfig {
  return { mode: 'DISABLED', dryRun: false, dnsFilter: false, l3Device: l3, attachmentId: numericId };
}

/** One /proc/<pid>/ns/net path per distinct network namespace of the cgroup's processes (descendants included). */
function cgroupNetnsPaths(cgroupPath: string): string[] {
  const byInode = new Map<string, string>();
  const walk = (dir: string, depth: number) => {
    let procs: string[] = [];
    try {
      procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    } catch {
      return;
    }
    for (const pid of procs) {
      try {
        const ns = readlinkSync(`/proc/${pid}/ns/net`);
        if (!byInode.has(ns)) byInode.set(ns, `/proc/${pid}/ns/net`);
      } catch {
        /* exited */
      }
    }
    if (depth > 32) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name), depth + 1);
  };
  walk(cgroupPath, 0);
  return [...byInode.values()];
}

/** The datapath, and how many attachments hold open fds in this process (closed ones are forgotten). */
export interface BpfDatapath extends Datapath {
  readonly liveAttachments: number;
}

// Longer than ~150 lines (about 230): the per-datapath state (pool of loaded programs, live
// attachments, the shared ring) is one closure its attach/reopen/reattach/close share; the next
// step is the load-ahead pool as its own class (issue 10, left for a follow-up).
export function createBpfDatapath(opts: BpfDatapathOptions): BpfDatapath {
  const root = opts.root;
  const EVENTS = POLICY_MAPS.events.name;
  const sizes: Record<string, number> = {
    [POLICY_MAPS.allowV4.name]: opts.mapSizes.allow,
    [POLICY_MAPS.allowV6.name]: opts.mapSizes.allow,
    [POLICY_MAPS.denyV4.name]: opts.mapSizes.deny,
    [POLICY_MAPS.denyV6.name]: opts.mapSizes.deny,
    [EVENTS]: opts.mapSizes.ringbufBytes,
  };
  /** Maps pinned per attachment; `events` is a symlink to the one ring buffer every attachment shares. */
  const TC_PINNED = Object.values(POLICY_MAPS).map((m) => m.name);
  const CGROUP_PINNED = [...TC_PINNED, CGROUP_ONLY_MAPS.severConfig.name];
  const live = new Set<BpfAttachment>();
  const ring = new SharedEventRing(root, sizes, opts.onEvent, opts.logger);
  const dnsLimit: DnsRateLimit = opts.dnsRateLimit ?? { rateQps: 0, burst: 0 };
  encodeDnsLimit(dnsLimit); // a bad limit fails here, at start, not at the first attach

  /**
   * Restore: a pinned attachment keeps its bucket unless the configured limit changed (then it is
   * written, which also refills the bucket).
   */
  function ensureDnsLimit(maps: PolicyMaps, id: string): void {
    const now = maps.dnsLimit.get(0);
    if (now.rateQps === dnsLimit.rateQps && now.burst === dnsLimit.burst) return;
    maps.dnsLimit.set(0, dnsLimit);
    opts.logger.info({ attachment: id, from: now, to: dnsLimit }, 'DNS rate limit updated');
  }
  function ensureDir(id: string): string {
    if (!/^[A-Za-z0-9_.-]+$/.test(id) || id === EVENTS) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `attachment id ${JSON.stringify(id)} cannot name a pin directory`);
    ring.open();
    const dir = join(root, id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!existsSync(join(dir, EVENTS))) symlinkSync(join('..', EVENTS), join(dir, EVENTS));
    return dir;
  }

  function track(a: BpfAttachment): BpfAttachment {
    live.add(a);
    return a;
  }
  /** Sever passes of closed attachments still running on a worker thread (close() waits for them). */
  const settling = new Set<Promise<void>>();
  const forget = (a: BpfAttachment) => {
    live.delete(a);
    const p: Promise<void> = a.settle().finally(() => settling.delete(p));
    settling.add(p);
  };

  /**
   * Loaded, unattached collections waiting for an attach, per object. Verifying a program takes
   * tens of milliseconds; loading ahead, on a worker thread, keeps that out of Attach. Their
   * maps are pinned into the attachment's directory when one is taken.
   */
  const POOL_SIZE = 2;
  const pools: Record<'tc' | 'cgroup', Promise<Collection>[]> = { tc: [], cgroup: [] };
  let closed = false;
  function loadAhead(object: 'tc' | 'cgroup'): Promise<Collection> {
    const programs = object === 'tc' ? [OBJECTS.tc.programs.filter.name] : CGROUP_ATTACHED_PROGRAMS.map((k) => OBJECTS.cgroup.programs[k].name);
    // Only the shared ring is pinned at load; the attachment's maps get their pins on attach.
    return loadCollectionAsync(objectPath(object), { mapSizes: sizes, pinMaps: { dir: root, maps: [EVENTS] }, programs });
  }
  function refill(object: 'tc' | 'cgroup'): void {
    while (!closed && pools[object].length < POOL_SIZE) {
      const p = loadAhead(object);
      p.catch((e: unknown) => opts.logger.warn({ err: e, object }, 'loading ahead failed; the next attach loads again'));
      pools[object].push(p);
    }
  }
  async function takeLoaded(object: 'tc' | 'cgroup'): Promise<Collection> {
    ring.open();
    const ready = pools[object].shift();
    refill(object);
    try {
      if (ready) return await ready;
    } catch {
      /* load again below, and let that error speak */
    }
    return loadAhead(object);
  }

  /** Takes a loaded object, pins its maps in `dir`, attaches its programs, pins the links. Undoes everything on failure. */
  async function attachObject(
    dir: string,
    object: 'tc' | 'cgroup',
    programs: readonly string[],
    config: AttachmentConfig,
    attach: (c: Collection, program: string) => BpfLink,
  ): Promise<{ maps: PolicyMaps; links: BpfLink[] }> {
    let coll: Collection | undefined;
    const links: BpfLink[] = [];
    let maps: PolicyMaps | undefined;
    try {
      coll = await takeLoaded(object);
      for (const name of object === 'tc' ? TC_PINNED : CGROUP_PINNED) if (name !== EVENTS) coll.map(name).pin(join(dir, name));
      maps = takePolicyMaps(coll, object === 'cgroup');
      // The config and the DNS rate limit go in before any program can see a packet.
      maps.config.set(0, config);
      maps.dnsLimit.set(0, dnsLimit);
      for (const k of programs) {
        const link = attach(coll, k);
        links.push(link);
        link.pin(join(dir, `link_${k}`));
      }
      return { maps, links };
    } catch (e) {
      for (const l of links) {
        try {
          l.detach();
        } catch {
          /* keep rolling back */
        }
      }
      if (maps) closePolicyMaps(maps);
      rmSync(dir, { recursive: true, force: true });
      throw e;
    } finally {
      coll?.close(); // the links hold the programs, the pins and our fds hold the maps
    }
  }

  async function attachTcFilter(p: TcAttachParams): Promise<BpfAttachment> {
    const dir = ensureDir(p.id);
    try {
      const { maps, links } = await attachObject(dir, 'tc', ['filter'], initialConfig(p.numericId, p.l3), (c) =>
        attachTcx(c.program(OBJECTS.tc.programs.filter.name), { ifindex: p.ifindex, direction: p.direction, mode: 'tcx' /* TCX is required: clsact filters cannot be pinned (docs/DESIGN.md) */ }),
      );
      return track(new BpfAttachment(dir, p.direction, maps, links, undefined, opts.logger, forget));
    } catch (e) {
      throw datapathError(e, `attaching the TC filter to ifindex ${p.ifindex} (${p.direction})`);
    }
  }

  async function attachCgroupPrograms(p: CgroupAttachParams): Promise<BpfAttachment> {
    const dir = ensureDir(p.id);
    try {
      const { maps, links } = await attachObject(dir, 'cgroup', CGROUP_ATTACHED_PROGRAMS, initialConfig(p.numericId, false), (c, k) =>
        attachCgroup(c.program(OBJECTS.cgroup.programs[k as (typeof CGROUP_ATTACHED_PROGRAMS)[number]].name), { cgroup: p.cgroupPath }),
      );
      return track(new BpfAttachment(dir, undefined, maps, links, severContext(dir, p.cgroupPath, sizes), opts.logger, forget));
    } catch (e) {
      throw datapathError(e, `attaching the cgroup programs to ${p.cgroupPath}`);
    }
  }

  function attachFresh(p: AttachParams): Promise<BpfAttachment> {
    return p.kind === 'tc' ? attachTcFilter(p) : attachCgroupPrograms(p);
  }

  return {
    attach: attachFresh,

    get liveAttachments() {
      return live.size;
    },

    reopen(p) {
      ring.open();
      const dir = join(root, p.id);
      if (!existsSync(dir)) throw new DaemonError('NETFENCE_ERR_DATAPATH', `no pins at ${dir}`);
      const cgroup = p.kind === 'cgroup';
      const linkNames = cgroup ? CGROUP_ATTACHED_PROGRAMS.map((n) => `link_${n}`) : ['link_filter'];
      const links: BpfLink[] = [];
      let maps: PolicyMaps | undefined;
      try {
        for (const n of linkNames) links.push(openPinnedLink(join(dir, n)));
        maps = openPinnedPolicyMaps(dir, cgroup);
        ensureDnsLimit(maps, p.id);
        const sever = p.kind === 'cgroup' ? severContext(dir, p.cgroupPath, sizes) : undefined;
        return track(new BpfAttachment(dir, p.kind === 'tc' ? p.direction : undefined, maps, links, sever, opts.logger, forget));
      } catch (e) {
        for (const l of links) l.close();
        if (maps) closePolicyMaps(maps);
        throw datapathError(e, `re-opening the pins of ${p.id}`);
      }
    },

    async reattach(p) {
      const dir = join(root, p.id);
      const aside = join(root, `${p.id}_aside`); // bpffs refuses names with a dot
      if (existsSync(aside)) {
        // A crash during a previous reattach: the set-aside pins are the ones known to work.
        rmSync(dir, { recursive: true, force: true });
        renameSync(aside, dir);
      }
      if (existsSync(dir)) renameSync(dir, aside);
      try {
        // The old maps recorded when the kernel last saw traffic to each allow entry: carried
        // over, a learned address past its TTL but still in use is not cut by an upgrade.
        const lastSeen = existsSync(aside) ? pinnedLastSeen(aside, opts.logger) : new Map<string, bigint>();
        const a = await attachFresh(p);
        a.inheritLastSeen(lastSeen);
        rmSync(aside, { recursive: true, force: true }); // unlinking the old link pins detaches them
        return a;
      } catch (e) {
        rmSync(dir, { recursive: true, force: true });
        if (existsSync(aside)) renameSync(aside, dir);
        throw e;
      }
    },

    removePins(id: string) {
      if (id === EVENTS) return;
      const dir = join(root, id);
      if (!existsSync(dir)) return;
      // Unlinking a link pin detaches it (nothing else holds it: the daemon has no fd open).
      rmSync(dir, { recursive: true, force: true });
    },

    pinnedIds() {
      if (!existsSync(root)) return [];
      return readdirSync(root).filter((n) => n !== EVENTS);
    },

    warm(kinds: readonly ('tc' | 'cgroup')[]) {
      ring.open();
      for (const k of kinds) refill(k);
    },

    async close() {
      closed = true;
      // Nothing of ours may still be running on a worker thread when the process exits.
      await Promise.all([...[...live].map((a) => a.settle()), ...settling]);
      for (const p of [...pools.tc, ...pools.cgroup]) {
        try {
          (await p).close();
        } catch {
          /* reported when it failed */
        }
      }
      pools.tc = [];
      pools.cgroup = [];
      for (const a of live) a.close();
      live.clear();
      ring.close();
    },
  };
}
