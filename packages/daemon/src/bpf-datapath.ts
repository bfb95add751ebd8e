// The datapath over the host-wide program set (docs/DESIGN.md "Datapath"): the programs are
// loaded once per bpffs root (host-program-set.ts); an attachment is a slot in the host maps,
// two rules tries and its links (bpf-attachment.ts). Attaching loads no program and makes only
// synchronous syscalls (map create/update, link create, pin), so any number of attaches can be
// in progress without a worker thread or an asynchronous koffi call among them.
//
// Pins (pin-layout.ts): <root>/_host/ for the host set, <root>/<attachment-id>/ for each
// attachment's tries and links. The pins keep every filter enforcing while the daemon is down.

import { existsSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { encodeDnsLimit, type DnsRateLimit } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import { asideDir, removeAttachmentDir } from './attachment-takeover';
import { datapathError, type BpfAttachment } from './bpf-attachment';
import { consumeEventRing } from './bpf-event-ring';
import { DaemonError } from './daemon-error';
import { attachNew, moveToNewSlot, reopenPinned, type OpenedDatapath } from './datapath-ops';
import type { AttachParams, Datapath, DatapathEvent } from './datapath';
import { HostProgramSet, type HostObject } from './host-program-set';
import { isV1Dir } from './layout-v1';
import { HOST_DIR, LEGACY_EVENTS, attachmentDirNames, validAttachmentId } from './pin-layout';
import { SeverRunner } from './sever-runner';
import { SlotTable } from './slot-table';

export interface BpfDatapathOptions {
  /** bpffs directory: the host set in _host/, one sub-directory of pins per attachment. */
  readonly root: string;
  /**
   * Per attachment and family: allow and deny entries (maps.allow_entries / deny_entries); the
   * host maps' slots (maps.max_attachments, default 4096) and the event ring's size.
   */
  readonly mapSizes: { readonly allow: number; readonly deny: number; readonly ringbufBytes: number; readonly maxAttachments?: number };
  /**
   * The kernel's rate limit on what each workload sends to its own DNS server (dns.rate_limit_qps,
   * dns.rate_limit_burst): written at attach, and at restore when the pinned one differs.
   * Default: none (rateQps 0).
   */
  readonly dnsRateLimit?: DnsRateLimit;
  readonly onEvent: (ev: DatapathEvent) => void;
  readonly logger: Logger;
  /** Where the eBPF objects are (default: @netfence/bpf-programs' build); tests load another build. */
  readonly objectPath?: (name: HostObject) => string;
}

/** The datapath, and how many attachments hold open fds in this process (closed ones are forgotten). */
export interface BpfDatapath extends Datapath {
  readonly liveAttachments: number;
}

function settled<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

export function createBpfDatapath(opts: BpfDatapathOptions): BpfDatapath {
  const root = opts.root;
  const limits = { allow: opts.mapSizes.allow, deny: opts.mapSizes.deny };
  const dnsLimit: DnsRateLimit = opts.dnsRateLimit ?? { rateQps: 0, burst: 0 };
  encodeDnsLimit(dnsLimit); // a bad limit fails here, at start, not at the first attach
  const live = new Set<BpfAttachment>();
  /** Sever passes of closed attachments still running on a worker thread (close() waits for them). */
  const settling = new Set<Promise<void>>();
  let opened: OpenedDatapath | undefined;
  let closed = false;

  const forget = (a: BpfAttachment) => {
    live.delete(a);
    const p: Promise<void> = a.settle().finally(() => settling.delete(p));
    settling.add(p);
  };
  const track = (a: BpfAttachment) => {
    live.add(a);
    return a;
  };

  /** Loads the host set (once), recovers the slots in use, starts reading the event ring. */
  function open(): OpenedDatapath {
    if (opened) return opened;
    if (closed) throw new DaemonError('NETFENCE_ERR_SHUTTING_DOWN', 'the datapath is closed');
    const logger = opts.logger;
    const host = HostProgramSet.open({ root, slots: (opts.mapSizes.maxAttachments ?? 4096) + 1, ringBytes: opts.mapSizes.ringbufBytes, objectPath: opts.objectPath, logger });
    try {
      const dirs = attachmentDirNames(root).flatMap((id) => [join(root, id), asideDir(root, id)].filter((d) => existsSync(d)));
      const slots = SlotTable.recover(host.maps, host.slots, dirs, logger);
      const sever = new SeverRunner(host, logger);
      const ring = consumeEventRing(host.maps.events, opts.onEvent, logger);
      const ctx = { host, slots, sever, limits, logger, forget };
      const takeover = { root, host, slots, trieEntries: limits.allow + limits.deny, dnsLimit, logger };
      opened = { root, host, slots, sever, ring, ctx, takeover, limits, dnsLimit, logger, track };
      dropLegacyRingIfUnused();
      return opened;
    } catch (e) {
      void host.close();
      throw e;
    }
  }

  /** The v1 event ring pin goes with the last v1 attachment (the host set holds the ring under its own pin). */
  function dropLegacyRingIfUnused(): void {
    if (attachmentDirNames(root).some((id) => isV1Dir(join(root, id)))) return;
    rmSync(join(root, LEGACY_EVENTS), { force: true });
  }

  function moved(p: AttachParams): BpfAttachment {
    const a = moveToNewSlot(open(), p);
    dropLegacyRingIfUnused();
    return a;
  }

  return {
    // Synchronous work (in the caller's thread and network namespace), promised for the interface.
    attach: (p, initialMode) => settled(() => attachNew(open(), p, initialMode)),

    get liveAttachments() {
      return live.size;
    },

    reopen(p) {
      const o = open();
      const dir = join(root, p.id);
      // Layout v1, or a move a stop interrupted: moved now, the target filtered throughout.
      if (existsSync(asideDir(root, p.id)) || (existsSync(dir) && isV1Dir(dir))) return moved(p);
      if (!existsSync(dir)) throw new DaemonError('NETFENCE_ERR_DATAPATH', `no pins at ${dir}`);
      try {
        return reopenPinned(o, p, dir);
      } catch (e) {
        throw datapathError(e, `re-opening the pins of ${p.id}`);
      }
    },

    reattach: (p) => settled(() => moved(p)),

    removePins(id: string) {
      if (!validAttachmentId(id)) return;
      const dirs = [join(root, id), asideDir(root, id)].filter((d) => existsSync(d));
      if (dirs.length === 0) return;
      const o = open();
      for (const d of dirs) removeAttachmentDir(o.takeover, d);
      dropLegacyRingIfUnused();
    },

    pinnedIds() {
      return attachmentDirNames(root);
    },

    warm() {
      open(); // the host set is loaded and verified once; nothing else to prepare
    },

    async close() {
      closed = true;
      // Nothing of ours may still be running on a worker thread when the process exits.
      await Promise.all([...[...live].map((a) => a.settle()), ...settling, opened?.sever.settle()]);
      for (const a of [...live]) a.close();
      live.clear();
      if (!opened) return;
      opened.ring.close();
      await opened.host.close();
      opened = undefined;
      removeUnusedHostPins(root, opts.logger);
    },
  };
}

/**
 * The host pins stay only while an attachment's directory needs them: with none left they go
 * (maps, programs, the ring), and so does the root when that leaves it empty.
 */
function removeUnusedHostPins(root: string, logger: Logger): void {
  if (!existsSync(root) || attachmentDirNames(root).length > 0 || readdirSync(root).some((n) => n.endsWith('_aside'))) return;
  try {
    rmSync(join(root, HOST_DIR), { recursive: true, force: true });
    rmSync(join(root, LEGACY_EVENTS), { force: true });
  } catch (e) {
    logger.warn({ err: e, root }, 'cannot remove the unused host pins');
    return;
  }
  try {
    rmdirSync(root);
  } catch {
    /* a mount point, or something else appeared in it: it stays */
  }
}
