import { readFileSync, realpathSync, statSync } from 'node:fs';
import { sep } from 'node:path';
import { ARPHRD, getLink, listLinks, type LinkRecord } from '@netfence/netlink';
import { DaemonError } from './daemon-error';
import { quoteInput } from './request-limits';

/** The cgroup2 mount point, from /proc/self/mounts (never hard-coded). */
export function findCgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) return f[1];
  }
  return undefined;
}

export interface InterfaceTarget {
  readonly ifname: string;
  readonly ifindex: number;
  /** Link kind from /sys (veth, tun, bridge, ... or 'device' for physical NICs). */
  readonly linkKind: string;
  /** true when the device has no Ethernet header (tun in L3 mode, ipip, wireguard, ...). */
  readonly l3: boolean;
}

/** An interface name (at most 15 bytes) or an alternative name (at most 127 bytes, `ip link property add altname`). */
const IFNAME_RE = /^[A-Za-z0-9_.:@-]{1,127}$/;

/**
 * The daemon's network namespace's links, asked over netlink (@netfence/netlink): not /sys
 * (/sys/class/net reflects the namespace /sys was mounted in, which need not be ours), and not
 * `ip -j link` (a process spawned per Attach cost ~15 ms of the event loop, serialising
 * concurrent TC attaches).
 */
function netlinkFailure(e: unknown, what: string): DaemonError {
  return new DaemonError('NETFENCE_ERR_DATAPATH', `${what}: ${(e as Error).message}`, { cause: e });
}

function lookupLink(name: string): LinkRecord | undefined {
  try {
    return getLink(name);
  } catch (e) {
    throw netlinkFailure(e, `cannot look up interface ${quoteInput(name)}`);
  }
}

/** Resolves an interface in the daemon's network namespace; errors name the input. */
export function resolveInterface(name: string): InterfaceTarget {
  if (!IFNAME_RE.test(name) || name === '.' || name === '..')
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `interface name ${quoteInput(name)} is not a valid interface name`);
  // An alternative name resolves to the interface it names: the target is its primary name.
  const link = lookupLink(name);
  if (!link) throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `interface ${quoteInput(name)} does not exist`);
  // Loopback carries the host's own traffic to itself, never a workload's: a filter there would
  // cut the daemon's DNS servers and API off from every workload, so it is refused.
  if (link.arphrd === ARPHRD.LOOPBACK)
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `interface ${quoteInput(name)} is a loopback device; attach to the workload's interface or cgroup instead`);
  const kind = link.kind ?? 'device';
  const linkKind = kind === 'tun' ? (link.arphrd === ARPHRD.ETHER ? 'tap' : 'tun') : kind;
  // No Ethernet header: tun in L3 mode, ipip, gre, wireguard, ... (any link type but Ethernet).
  const l3 = link.arphrd !== ARPHRD.ETHER;
  return { ifname: link.name, ifindex: link.ifindex, linkKind, l3 };
}

/**
 * The workload's outbound direction: on an interface whose other end is the workload
 * (veth host end, tap, tun) that is TC ingress; on an uplink it is TC egress.
 */
export function defaultTcDirection(t: InterfaceTarget): 'ingress' | 'egress' {
  return ['veth', 'tap', 'tun'].includes(t.linkKind) ? 'ingress' : 'egress';
}

/** ifindex -> name of every interface now (one netlink dump: a few ms for thousands of links). */
export function interfaceSnapshot(): Map<number, string> {
  try {
    return new Map(listLinks().map((l) => [l.ifindex, l.name]));
  } catch (e) {
    throw netlinkFailure(e, 'cannot list network interfaces');
  }
}

/**
 * The interface still exists: by ifindex, its identity (a rename keeps it; the kernel does
 * not hand a deleted interface's index to a new one while indexes remain).
 */
export function interfaceAlive(ifindex: number, snapshot: Map<number, string> = interfaceSnapshot()): boolean {
  return snapshot.has(ifindex);
}

export interface CgroupTarget {
  readonly path: string;
  /** The cgroup id (inode number of the directory), its identity. */
  readonly cgroupId: string;
}

/** Validates a cgroup path: inside the cgroup2 mount, no traversal, an existing directory. */
export function resolveCgroup(input: string): CgroupTarget {
  const mount = findCgroup2Mount();
  if (!mount) throw new DaemonError('NETFENCE_ERR_DATAPATH', 'no cgroup2 filesystem is mounted on this host');
  if (!input.startsWith('/')) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${quoteInput(input)} must be absolute`);
  if (input.split('/').some((p) => p === '..' || p === '.'))
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${quoteInput(input)} must not contain . or .. components`);
  let real: string;
  try {
    real = realpathSync(input);
  } catch {
    throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `cgroup ${quoteInput(input)} does not exist`);
  }
  if (real !== mount && !real.startsWith(mount + sep))
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${quoteInput(input)} is not inside the cgroup2 mount ${mount}`);
  if (real === mount) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${quoteInput(input)} is the root cgroup; attach to a child cgroup`);
  const st = statSync(real, { bigint: true });
  if (!st.isDirectory()) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${quoteInput(input)} is not a directory`);
  return { path: real, cgroupId: st.ino.toString() };
}

export function cgroupAlive(path: string, cgroupId: string): boolean {
  try {
    return statSync(path, { bigint: true }).ino.toString() === cgroupId;
  } catch {
    return false;
  }
}

/** What an Attach names, resolved to the target's kind, canonical name and kernel identity. */
export interface AttachTarget {
  readonly kind: 'tc' | 'cgroup';
  readonly target: string;
  readonly identity: { ifindex?: number; cgroupId?: string };
  readonly direction: 'ingress' | 'egress' | undefined;
  readonly l3: boolean;
  /** Interfaces: judge at XDP (asked for). `direction` is then ingress, the TC hook a refused XDP falls back to. */
  readonly xdp?: boolean;
}

/**
 * The TC direction of an interface attachment. XDP judges what the interface receives, which at
 * TC is ingress (also where it falls back to), whatever the link kind; egress with it is refused.
 */
function directionFor(t: InterfaceTarget, input: { readonly tcDirection?: 'ingress' | 'egress'; readonly xdp?: boolean }): 'ingress' | 'egress' {
  if (!input.xdp) return input.tcDirection ?? defaultTcDirection(t);
  if (input.tcDirection === 'egress') throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', 'xdp judges what the interface receives (the TC ingress side): it cannot be combined with tc_direction egress');
  return 'ingress';
}

/** Resolves exactly one of interface_name or cgroup_path (tc_direction and xdp only with an interface). */
export function resolveAttachTarget(input: { readonly interfaceName?: string; readonly cgroupPath?: string; readonly tcDirection?: 'ingress' | 'egress'; readonly xdp?: boolean }): AttachTarget {
  if (input.interfaceName && !input.cgroupPath) {
    const t = resolveInterface(input.interfaceName);
    const direction = directionFor(t, input);
    return { kind: 'tc', target: t.ifname, identity: { ifindex: t.ifindex }, direction, l3: t.l3, ...(input.xdp ? { xdp: true } : {}) };
  }
  if (input.cgroupPath && !input.interfaceName) {
    if (input.tcDirection) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', 'tc_direction applies to interfaces, not cgroups');
    if (input.xdp) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', 'xdp applies to interfaces, not cgroups');
    const t = resolveCgroup(input.cgroupPath);
    return { kind: 'cgroup', target: t.path, identity: { cgroupId: t.cgroupId }, direction: undefined, l3: false };
  }
  throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', 'give exactly one of interface_name or cgroup_path');
}

/** Is the record's interface (by ifindex, in `links`) or cgroup (by id) still there? */
export function targetAlive(r: { readonly kind: string; readonly target: string; readonly identity: { ifindex?: number; cgroupId?: string } }, links: Map<number, string>): boolean {
  return r.kind === 'tc' ? interfaceAlive(r.identity.ifindex ?? -1, links) : cgroupAlive(r.target, r.identity.cgroupId ?? '');
}
