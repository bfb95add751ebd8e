import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open as openAsync, unlink as unlinkAsync } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseState, type AttachmentPolicyState } from '@netfence/policy-engine';
import { DaemonError } from './daemon-error';

export type AttachmentKind = 'tc' | 'cgroup';
export type TcDirection = 'ingress' | 'egress';

/** What the daemon persists about one attachment: enough to re-open its pins and rebuild its DNS server. */
export interface AttachmentRecord {
  readonly version: 1;
  readonly id: string;
  /** Small number carried in eBPF events to name the attachment. */
  readonly numericId: number;
  readonly kind: AttachmentKind;
  /** Interface name or cgroup path, as the caller gave it. */
  readonly target: string;
  /** The identity the target was attached by: ifindex (TC) or cgroup inode id (cgroup). */
  readonly identity: { readonly ifindex?: number; readonly cgroupId?: string };
  readonly tcDirection?: TcDirection;
  /** The interface has no Ethernet header (tun and other L3 devices). */
  readonly l3?: boolean;
  /** Interfaces: XDP was asked for (Attach `xdp`). */
  readonly xdp?: boolean;
  /** Interfaces: where the filter runs, XDP or TC (absent: TC; records before XDP existed). Re-opening and moves keep it. */
  readonly hook?: 'tc' | 'xdp';
  /** XDP was asked for and the kernel refused it: why (the filter runs at TC). */
  readonly xdpFallback?: string;
  /** The auto_attach rule that made it (its pattern, rulePattern); absent for an Attach call. */
  readonly autoRule?: string;
  /** Saved before the SubscribedAck arrived: rolled back if the daemon restarts in that state. */
  readonly pending?: boolean;
  readonly metadata: Readonly<Record<string, string>>;
  /** host:port of the attachment's DNS server. */
  readonly dnsAddress: string;
  readonly attachedAt: string;
  readonly policy: AttachmentPolicyState;
}

/** Temp file, rename: never a torn file. `sync`: the data and the rename are on disk when this returns. */
function writeFileAtomic(path: string, data: string, sync = true): void {
  const tmp = `${path}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, data);
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  if (!sync) return;
  const dir = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * writeFileAtomic without blocking the event loop on the writes and fsyncs (same guarantees once
 * it resolves), from the chunks serializeRecordChunks made. `current()` is asked just before the
 * rename: when it says no (a newer save or a removal came first), the data is discarded instead
 * of replacing newer data. The rename itself is synchronous, so nothing on the event loop can come
 * between that check and the rename.
 */
async function writeFileAtomicAsync(path: string, chunks: readonly Buffer[], current: () => boolean): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  const fh = await openAsync(tmp, 'w', 0o600);
  try {
    for (const c of chunks) await fh.write(c);
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (!current()) {
    await unlinkAsync(tmp);
    return;
  }
  renameSync(tmp, path);
  await fsyncPath(join(path, '..'));
}

const LEARNED_SLOT = `"nf-learned-${randomUUID()}"`;
/** Learned entries stringified per turn of the event loop by serializeRecordChunks. */
const SERIALIZE_SLICE = 1000;

/**
 * JSON.stringify(record) as UTF-8 chunks, SERIALIZE_SLICE learned entries each, made one per turn
 * of the event loop: a record is saved about once a second while DNS answers stream in, and
 * stringifying 10,000 learned entries at once held answers back for 3 ms on a quiet machine and up
 * to 19 ms on a busy one (issue 16's profile under dnsperf); joining the slices into one string
 * and converting it for the write still took 15-18 ms in one turn with the entries a dnsperf run
 * leaves (the profile of the fixed-rate run). Same bytes, same total CPU, no long stall. The
 * record is immutable (frozen state), so the slices are consistent.
 */
export async function serializeRecordChunks(record: AttachmentRecord): Promise<Buffer[]> {
  const learned = record.policy.learned;
  if (learned.length <= SERIALIZE_SLICE) return [Buffer.from(JSON.stringify(record))];
  const rest = JSON.stringify({ ...record, policy: { ...record.policy, learned: LEARNED_SLOT.slice(1, -1) } });
  const at = rest.lastIndexOf(LEARNED_SLOT);
  const out = [Buffer.from(`${rest.slice(0, at)}[`)];
  for (let i = 0; i < learned.length; i += SERIALIZE_SLICE) {
    const slice = JSON.stringify(learned.slice(i, i + SERIALIZE_SLICE)).slice(1, -1);
    out.push(Buffer.from(i === 0 ? slice : `,${slice}`));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  out.push(Buffer.from(`]${rest.slice(at + LEARNED_SLOT.length)}`));
  return out;
}

/**
 * Crash-safe persistence under data_dir: one JSON file per attachment, each
 * replaced atomically (write temp, fsync, rename, fsync dir), so a kill -9 at
 * any moment leaves either the old or the new record, never a torn one.
 */
export interface StateStore {
  readonly dir: string;
  daemonId(): string;
  /** Every saved record; `problems` are files that could not be read, with the attachment id their name carries. */
  loadAll(): { records: AttachmentRecord[]; problems: { file: string; id: string; error: string }[] };
  save(record: AttachmentRecord): void;
  /** Same as save, off the event loop. */
  saveAsync(record: AttachmentRecord): Promise<void>;
  /**
   * Writes the record (temp file, rename) without waiting for the disk: from the moment this
   * returns it survives the daemon dying (kill -9: the kernel's page cache holds it); it reaches
   * the disk within a flush of the background flusher (`flushed()` resolves then). Attach uses
   * it: see docs/DESIGN.md "Saving an attachment".
   */
  write(record: AttachmentRecord): void;
  /** Resolves when every write() made before the call is on disk (fsynced), or rejects with the flush error. */
  flushed(): Promise<void>;
  remove(id: string): void;
}

/** How many record files the background flusher fsyncs at once (on libuv's thread pool of 4). */
const FLUSH_CONCURRENCY = 4;

/**
 * The background half of StateStore.write: fsyncs written records and then their directory, in
 * batches. A write made while a batch is in flight joins the next batch, so a burst of N
 * attaches costs N file fsyncs and a few directory fsyncs, none of them on an Attach's path.
 * (Fsync on this kind of disk: 0.5 ms when quiet, tens of ms at p99 under load — measured by
 * bench:attach as the larger part of an Attach's latency when it waited for them.)
 */
class RecordFlusher {
  private readonly dirty = new Set<string>();
  private readonly failed = new Set<string>();
  private running = false;
  private readonly waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(private readonly dir: string, private readonly onError: (e: unknown) => void) {}

  add(path: string): void {
    this.dirty.add(path);
    this.kick();
  }

  flushed(): Promise<void> {
    this.kick();
    if (!this.running) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Starts a flush of what is dirty; files whose flush failed are retried with it (on the next write or flushed(), never in a loop). */
  private kick(): void {
    for (const f of this.failed) this.dirty.add(f);
    this.failed.clear();
    if (this.dirty.size === 0 || this.running) return;
    this.running = true; // cleared by loop() in the same turn it sees nothing dirty: no write can fall between
    void this.loop();
  }

  /** Batches until nothing is dirty; a waiter settles with the first batch that started after it did, or with the last. */
  private async loop(): Promise<void> {
    let failure: unknown;
    while (this.dirty.size > 0) {
      const batch = [...this.dirty];
      this.dirty.clear();
      const waiters = this.waiters.splice(0);
      failure = undefined;
      try {
        for (let i = 0; i < batch.length; i += FLUSH_CONCURRENCY) await Promise.all(batch.slice(i, i + FLUSH_CONCURRENCY).map(fsyncIfPresent));
        await fsyncPath(this.dir);
      } catch (e) {
        failure = e;
        this.onError(e);
        for (const p of batch) this.failed.add(p);
      }
      settle(waiters, failure);
      if (failure !== undefined) break;
    }
    this.running = false;
    settle(this.waiters.splice(0), failure);
  }
}

function settle(waiters: readonly { resolve: () => void; reject: (e: unknown) => void }[], failure: unknown): void {
  for (const w of waiters) (failure === undefined ? w.resolve() : w.reject(failure));
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await openAsync(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A record removed (or replaced: the new file is synced instead) since it was written needs no fsync. */
async function fsyncIfPresent(path: string): Promise<void> {
  try {
    await fsyncPath(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** `onFlushError`: a background flush failed (the records stay written; the next write retries their flush). */
export function createStateStore(dataDir: string, explicitDaemonId?: string, onFlushError: (e: unknown) => void = () => undefined): StateStore {
  const attDir = join(dataDir, 'attachments');
  try {
    mkdirSync(attDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new DaemonError('NETFENCE_ERR_STATE', `cannot create data_dir ${dataDir}: ${(e as Error).message}`, { cause: e });
  }
  const fileOf = (id: string) => join(attDir, `${id}.json`);
  const flusher = new RecordFlusher(attDir, onFlushError);
  // The latest save of each record, by a number no other save ever gets. A background save
  // that finishes after a later synchronous one (a narrowing command is saved synchronously,
  // before the kernel sees it) or after a removal must not put the older, wider record back.
  let saves = 0;
  const latest = new Map<string, number>();
  const bump = (id: string): number => {
    latest.set(id, ++saves);
    return saves;
  };
  return {
    dir: dataDir,
    daemonId() {
      if (explicitDaemonId) return explicitDaemonId;
      const p = join(dataDir, 'daemon-id');
      try {
        const id = readFileSync(p, 'utf8').trim();
        if (id) return id;
      } catch {
        /* first start */
      }
      const id = `nfd-${randomUUID()}`;
      writeFileAtomic(p, `${id}\n`);
      return id;
    },
    loadAll() {
      const records: AttachmentRecord[] = [];
      const problems: { file: string; id: string; error: string }[] = [];
      for (const name of readdirSync(attDir)) {
        const file = join(attDir, name);
        if (name.endsWith('.tmp')) {
          try {
            unlinkSync(file); // a write that never reached its rename
          } catch {
            /* ignore */
          }
          continue;
        }
        if (!name.endsWith('.json')) continue;
        try {
          const raw = JSON.parse(readFileSync(file, 'utf8')) as AttachmentRecord;
          if (raw.version !== 1 || typeof raw.id !== 'string' || (raw.kind !== 'tc' && raw.kind !== 'cgroup')) throw new Error('unknown record format');
          records.push({ ...raw, policy: parseState(raw.policy) });
        } catch (e) {
          problems.push({ file, id: name.slice(0, -'.json'.length), error: (e as Error).message });
        }
      }
      records.sort((a, b) => a.attachedAt.localeCompare(b.attachedAt) || a.id.localeCompare(b.id));
      return { records, problems };
    },
    save(record) {
      bump(record.id);
      writeFileAtomic(fileOf(record.id), JSON.stringify(record));
    },
    saveAsync(record) {
      const mine = bump(record.id);
      const current = () => latest.get(record.id) === mine;
      return serializeRecordChunks(record).then((chunks) => (current() ? writeFileAtomicAsync(fileOf(record.id), chunks, current) : undefined));
    },
    write(record) {
      bump(record.id);
      const path = fileOf(record.id);
      writeFileAtomic(path, JSON.stringify(record), false);
      flusher.add(path);
    },
    flushed: () => flusher.flushed(),
    remove(id) {
      latest.delete(id);
      try {
        unlinkSync(fileOf(id));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    },
  };
}
