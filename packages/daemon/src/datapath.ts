// The daemon's view of the eBPF datapath of one attachment. Implemented over
// @netfence/bpf-loader and the @netfence/bpf-programs manifest in bpf-datapath.ts.

import type { KernelOp, KernelView } from '@netfence/policy-engine';
import type { TcDirection } from './state-store';

/** One drop (or dry-run would-drop) reported by the kernel. */
export interface DatapathEvent {
  readonly numericId: number;
  readonly destination: string;
  readonly port: number;
  readonly protocol: number;
  readonly reason: string;
  readonly dryRun: boolean;
  readonly hook: string;
}

export interface DatapathCounters {
  readonly allowed: bigint;
  readonly blocked: bigint;
  readonly dryRunWouldBlock: bigint;
  /** Drop events the programs could not report (the shared event ring was full). */
  readonly eventsLost?: bigint;
  /** Queries to the attachment's own DNS server the kernel dropped over dns.rate_limit_qps. */
  readonly dnsRateLimited?: bigint;
}

/** The kernel objects of one attachment. Owner: the daemon's attachment runtime. */
export interface AttachmentDatapath {
  readonly tcDirection: TcDirection | undefined;
  /** Where the filter runs: a TC hook, the interface's XDP hook, or the cgroup's hooks. */
  readonly hook: 'tc' | 'xdp' | 'cgroup';
  /** XDP was asked for and the kernel refused it (why): the filter runs at TC instead. */
  readonly xdpFallback: string | undefined;
  /**
   * Applies the ops in order. On failure throws a DaemonError after undoing the ops it had
   * applied, so the kernel is back where it started.
   */
  apply(ops: readonly KernelOp[]): void;
  /** What the kernel maps and config hold now. */
  readView(): KernelView;
  /** The attachment's DNS server (always allowed) and whether DNS filtering (bypass drop/redirect) is on. */
  configureDns(server: { address: string; port: number }, filtering: boolean): void;
  counters(): DatapathCounters;
  /**
   * The allow entries the kernel must stop honouring on its own at a wall-clock time (ms): CIDR
   * TTLs, so that a grant does not outlive its TTL while the daemon is down. Entries written
   * from now on carry their deadline; entries already in the kernel whose deadline changed are
   * rewritten in place. Entries not listed have none.
   */
  setAllowDeadlines(deadlines: ReadonlyMap<string, number>): void;
  /** Last time (ms, wall clock) the kernel saw traffic to this allow entry; undefined if never / unknown. */
  lastSeenMs(cidr: string): number | undefined;
  /**
   * Resets established sockets to addresses in this prefix (cgroup attachments; TC drops by
   * itself). Runs in the background; the filter already drops the flow's packets meanwhile.
   */
  sever(cidr: string): Promise<void>;
  /** Releases fds; pins stay, so the filter keeps enforcing. Idempotent. */
  close(): void;
  /** Detaches the programs and removes every pin. Idempotent. */
  destroy(): void;
}

export interface TcAttachParams {
  readonly id: string;
  readonly numericId: number;
  readonly ifindex: number;
  readonly direction: TcDirection;
  readonly l3: boolean;
  /**
   * Judge at XDP on the interface's receive path instead of TC (`direction` is then the TC hook a
   * new attachment falls back to when the kernel refuses native XDP; re-opening and moving an
   * attachment never fall back: the record says which hook runs).
   */
  readonly xdp?: boolean;
}

export interface CgroupAttachParams {
  readonly id: string;
  readonly numericId: number;
  readonly cgroupPath: string;
}

/** What the datapath needs to attach, re-open or re-attach one attachment. */
export type AttachParams = (TcAttachParams & { readonly kind: 'tc' }) | (CgroupAttachParams & { readonly kind: 'cgroup' });

export interface Datapath {
  /**
   * Attaches the target (mode DISABLED, or `initialMode`: BLOCK_ALL for an auto attachment, which
   * must block from its first packet; no rules), pinned under the attachment's id. Loads no
   * program: the host's program set is loaded once (warm, or the first call that needs it). The
   * kernel work is done before this returns (the promise is already settled).
   */
  attach(p: AttachParams, initialMode?: 'DISABLED' | 'BLOCK_ALL'): Promise<AttachmentDatapath>;
  /** Prepares ahead (loads and verifies the host's programs) so attaches need no load. */
  warm(kinds: readonly ('tc' | 'cgroup')[]): void;
  /**
   * Re-opens an attachment from its pins; throws when they are gone or incompatible. Pins of the
   * previous layout (layout v1) are migrated here, the target filtered throughout.
   */
  reopen(p: AttachParams): AttachmentDatapath;
  /**
   * Attaches again under the same id when its pins cannot be re-opened. The old pins are set
   * aside (and keep enforcing) until the new attachment is in place, with whatever state could be
   * read from them (else block-all, until the saved state is applied), then removed; if the new
   * attach fails before the target is switched they are put back, so the kernel never goes
   * without a filter.
   */
  reattach(p: AttachParams): Promise<AttachmentDatapath>;
  /** Removes whatever pins exist for this id (rollback of a half-made attachment). */
  removePins(id: string): void;
  /** Ids that have pins under the root (to find orphans). */
  pinnedIds(): string[];
  close(): Promise<void>;
}
