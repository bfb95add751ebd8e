// The auto-attach driver: the config's `auto_attach` rules (or SetAutoAttachRules') applied to
// interfaces and cgroups as the kernel announces them (target-watch.ts feeds it link events and
// new cgroup directories). A matching target gets its filter at once, in BLOCK_ALL, in the same
// turn of the event loop as the event (registry.attachAuto: synchronous syscalls, nothing
// awaited before them); what takes time (its DNS server, records, Subscribed) is queued, at most
// AUTO_ATTACH_IN_FLIGHT at once, so a burst of thousands of links costs bounded sockets and
// memory while every one of them is already filtered.

import { readFileSync } from 'node:fs';
import { ARPHRD, type LinkRecord } from '@netfence/netlink';
import type { Logger } from 'pino';
import type { StartedAttach } from './attachment-registry';
import { isInterfaceRule, linkKind, matchCgroup, matchInterface, ruleMetadata, rulePattern, type AutoAttachRule } from './auto-attach-rules';
import { DaemonError } from './daemon-error';
import { resolveCgroup, type AttachTarget } from './targets';
import type { WorkloadLog } from './workload-log';

/** Auto attaches finishing at once (DNS server, saves, Subscribed); the rest wait, already filtered. */
export const AUTO_ATTACH_IN_FLIGHT = 64;

/** What the driver needs of the registry. */
export interface AutoAttachRegistry {
  holds(t: Pick<AttachTarget, 'kind' | 'identity'>): boolean;
  attachAuto(t: AttachTarget, metadata: Record<string, string>, autoRule: string): StartedAttach;
}

export interface AutoAttachDeps {
  readonly registry: AutoAttachRegistry;
  readonly logger: Logger;
  /** Auto attach lines (made, failed) go through the daemon's rate limit: they come in bursts. */
  readonly workloadLog: WorkloadLog;
  /** The host's own devices, which a glob never matches (default: the default-route devices). */
  readonly protectedNames?: () => ReadonlySet<string>;
  readonly maxInFlight?: number;
}

/**
 * The devices that carry a default route of this network namespace (main table, IPv4 and IPv6):
 * the host's uplinks. /proc/net is the reading process's namespace. Read when a glob matches.
 */
export function defaultRouteDevices(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): Set<string> {
  const out = new Set<string>();
  const lines = (path: string) => {
    try {
      return read(path).split('\n');
    } catch {
      return [];
    }
  };
  // Iface Destination Gateway Flags RefCnt Use Metric Mask ...: a default route is 0.0.0.0/0.
  for (const l of lines('/proc/net/route').slice(1)) {
    const f = l.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === '00000000' && f[7] === '00000000') out.add(f[0]!);
  }
  // dst dst_len src src_len next_hop metric refcnt use flags device: a default route is ::/0.
  for (const l of lines('/proc/net/ipv6_route')) {
    const f = l.trim().split(/\s+/);
    if (f.length >= 10 && /^0{32}$/.test(f[0]!) && f[1] === '00' && f[9] !== 'lo') out.add(f[9]!);
  }
  return out;
}

/** The attach target of a link as the kernel describes it (no look-up: the event says it all). */
export function linkTarget(l: LinkRecord): AttachTarget {
  // veth, tap and tun are host ends whose other end is the workload: its traffic is TC ingress;
  // any other device (named exactly by a rule) is an uplink: egress, as for an Attach call.
  return { kind: 'tc', target: l.name, identity: { ifindex: l.ifindex }, direction: linkKind(l) ? 'ingress' : 'egress', l3: l.arphrd !== ARPHRD.ETHER };
}

export class AutoAttacher {
  private current: readonly AutoAttachRule[] = [];
  /** Links seen, ifindex -> name: a link is matched when it appears or is renamed, not on every change of its flags. */
  private readonly seen = new Map<number, string>();
  private readonly queue: { readonly s: StartedAttach; readonly pattern: string }[] = [];
  private running = 0;
  private closed = false;
  private drained: (() => void) | undefined;
  private readonly limit: number;

  constructor(private readonly d: AutoAttachDeps) {
    this.limit = d.maxInFlight ?? AUTO_ATTACH_IN_FLIGHT;
  }

  get rules(): readonly AutoAttachRule[] {
    return this.current;
  }

  /** The rules from now on (already validated); the caller matches existing targets again. */
  setRules(rules: readonly AutoAttachRule[]): void {
    this.current = rules;
  }

  /** Auto attaches waiting for their turn, and finishing now. */
  get backlog(): { queued: number; running: number } {
    return { queued: this.queue.length, running: this.running };
  }

  /** A link event (RTM_NEWLINK / RTM_DELLINK) or a link listed at start. */
  link(l: LinkRecord): void {
    if (l.event === 'del') {
      this.seen.delete(l.ifindex);
      return;
    }
    if (this.seen.get(l.ifindex) === l.name) return;
    this.seen.set(l.ifindex, l.name);
    if (!this.current.some(isInterfaceRule)) return;
    const rule = matchInterface(this.current, l, (this.d.protectedNames ?? defaultRouteDevices)());
    if (!rule) return;
    // Named exactly, still refused as an Attach call refuses it: a filter on the loopback would cut
    // every workload off the daemon's DNS servers.
    if (l.arphrd === ARPHRD.LOOPBACK) return this.failed(l.name, rulePattern(rule), new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `interface ${l.name} is a loopback device`));
    // XDP judges what the interface receives: the TC ingress side (a fallback to TC runs there).
    this.begin(rule.xdp ? { ...linkTarget(l), direction: 'ingress', xdp: true } : linkTarget(l), rule);
  }

  /** Every link now (start, or after the kernel dropped events): gone ones forgotten, new or renamed ones matched. */
  resync(all: readonly LinkRecord[]): void {
    const now = new Set(all.map((l) => l.ifindex));
    for (const i of [...this.seen.keys()]) if (!now.has(i)) this.seen.delete(i);
    for (const l of all) this.link({ ...l, event: 'new' });
  }

  /** The rules changed: every link is matched again (a link detached by hand included). */
  rematch(all: readonly LinkRecord[]): void {
    this.seen.clear();
    this.resync(all);
  }

  /** A directory appeared in a watched cgroup directory (or was there at start). */
  cgroup(path: string): void {
    const rule = matchCgroup(this.current, path);
    if (!rule) return;
    let t: AttachTarget;
    try {
      const c = resolveCgroup(path);
      t = { kind: 'cgroup', target: c.path, identity: { cgroupId: c.cgroupId }, direction: undefined, l3: false };
    } catch (e) {
      return this.failed(path, rulePattern(rule), e);
    }
    this.begin(t, rule);
  }

  /** Stops matching; resolves once every begun auto attach has finished (none is left half made). */
  close(): Promise<void> {
    this.closed = true;
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drained = resolve));
  }

  private begin(t: AttachTarget, rule: AutoAttachRule): void {
    if (this.closed || this.d.registry.holds(t)) return;
    const pattern = rulePattern(rule);
    try {
      this.queue.push({ s: this.d.registry.attachAuto(t, ruleMetadata(rule, t.target), pattern), pattern });
    } catch (e) {
      return this.failed(t.target, pattern, e);
    }
    this.pump();
  }

  private pump(): void {
    while (this.running < this.limit && this.queue.length > 0) {
      const { s, pattern } = this.queue.shift()!;
      this.running++;
      s.finish()
        .catch((e: unknown) => this.failed(s.target, pattern, e, s.id))
        .finally(() => {
          this.running--;
          this.pump();
          if (this.running === 0 && this.queue.length === 0) this.drained?.();
        });
    }
  }

  private failed(target: string, autoRule: string, e: unknown, attachment?: string): void {
    const err = DaemonError.from(e);
    // A target that went while it was being attached is the normal end of a short-lived one.
    const level = err.code === 'NETFENCE_ERR_TARGET_GONE' || err.code === 'NETFENCE_ERR_ALREADY_EXISTS' ? 'debug' : 'warn';
    this.d.workloadLog.write('auto', 'auto-attach', level, { target, autoRule, attachment, err }, 'auto attach failed (rolled back)');
  }
}
