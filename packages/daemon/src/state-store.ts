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

function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * writeFileAtomic without blocking the event loop on the write and fsyncs (same guarantees once
 * it resolves). `current()` is asked just before the rename: when it says no (a newer save or a
 * removal came first), the data is discarded instead of replacing newer data. The rename itself
 * is synchronous, so nothing on the event loop can come between that check and the rename.
 */
async function writeFileAtomicAsync(path: string, data: string, current: () => boolean): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  const fh = await openAsync(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (!current()) {
    await unlinkAsync(tmp);
    return;
  }
  renameSync(tmp, path);
  const dir = await openAsync(join(path, '..'), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

const LEARNED_SLOT = `"nf-learned-${randomUUID()}"`;
/** Learned entries stringified per turn of the event loop by serializeRecordAsync. */
const SERIALIZE_SLICE = 1000;

/**
 * JSON.stringify(record) in slices of SERIALIZE_SLICE learned entries, yielding to the event
 * loop between them: a record is saved about once a second while DNS answers stream in, and
 * stringifying 10,000 learned entries at once held answers back for 3 ms on a quiet machine
 * and up to 19 ms on a busy one (issue 16's profile under dnsperf). Same text, same total CPU,
 * no long stall. The record is immutable (frozen state), so the slices are consistent.
 */
export async function serializeRecordAsync(record: AttachmentRecord): Promise<string> {
  const learned = record.policy.learned;
  if (learned.length <= SERIALIZE_SLICE) return JSON.stringify(record);
  const parts: string[] = [];
  for (let i = 0; i < learned.length; i += SERIALIZE_SLICE) {
    parts.push(JSON.stringify(learned.slice(i, i + SERIALIZE_SLICE)).slice(1, -1));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const rest = JSON.stringify({ ...record, policy: { ...record.policy, learned: LEARNED_SLOT.slice(1, -1) } });
  const at = rest.lastIndexOf(LEARNED_SLOT);
  return `${rest.slice(0, at)}[${parts.join(',')}]${rest.slice(at + LEARNED_SLOT.length)}`;
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
  remove(id: string): void;
}

export function createStateStore(dataDir: string, explicitDaemonId?: string): StateStore {
  const attDir = join(dataDir, 'attachments');
  try {
    mkdirSync(attDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new DaemonError('NETFENCE_ERR_STATE', `cannot create data_dir ${dataDir}: ${(e as Error).message}`, { cause: e });
  }
  const fileOf = (id: string) => join(attDir, `${id}.json`);
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
      return serializeRecordAsync(record).then((text) => (current() ? writeFileAtomicAsync(fileOf(record.id), text, current) : undefined));
    },
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
