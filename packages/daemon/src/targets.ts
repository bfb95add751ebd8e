import { readFileSync, realpathSync, statSync } from 'node:fs';
import { sep } from 'node:path';
import { DaemonError } from './daemon-error';

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

const IFNAME_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** Resolves an interface in the daemon's network namespace; errors name the input. */
export function resolveInterface(name: string): InterfaceTarget {
  if (!IFNAME_RE.test(name) || name === '.' || name === '..')
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `interface name ${JSON.stringify(name)} is not a valid interface name`);
  let ifindex: number;
  let type: number;
  try {
    ifindex = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
    type = Number(readFileSync(`/sys/class/net/${name}/type`, 'utf8').trim());
  } catch {
    throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `interface ${JSON.stringify(name)} does not exist`);
  }
  let linkKind = 'device';
  try {
    const uevent = readFileSync(`/sys/class/net/${name}/uevent`, 'utf8');
    const m = /DEVTYPE=(\S+)/.exec(uevent);
    if (m) linkKind = m[1]!;
  } catch {
    /* keep 'device' */
  }
  try {
    // tun/tap devices expose tun_flags; veth has a peer ifindex in iflink != ifindex.
    readFileSync(`/sys/class/net/${name}/tun_flags`, 'utf8');
    linkKind = type === 1 ? 'tap' : 'tun';
  } catch {
    /* not a tun */
  }
  if (linkKind === 'device') {
    try {
      const iflink = Number(readFileSync(`/sys/class/net/${name}/iflink`, 'utf8').trim());
      if (iflink !== ifindex) linkKind = 'veth';
    } catch {
      /* keep */
    }
  }
  // ARPHRD_ETHER = 1; ARPHRD_NONE = 0xfffe (tun), ARPHRD_IPGRE etc. have no Ethernet header.
  return { ifname: name, ifindex, linkKind, l3: type !== 1 && type !== 772 };
}

/**
 * The workload's outbound direction: on an interface whose other end is the workload
 * (veth host end, tap, tun) that is TC ingress; on an uplink it is TC egress.
 */
export function defaultTcDirection(t: InterfaceTarget): 'ingress' | 'egress' {
  return ['veth', 'tap', 'tun'].includes(t.linkKind) ? 'ingress' : 'egress';
}

/** Checks an interface still exists with the same ifindex (identity, not name). */
export function interfaceAlive(ifname: string, ifindex: number): boolean {
  try {
    return Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim()) === ifindex;
  } catch {
    // Renamed? Look the index up among all interfaces.
    return false;
  }
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
  if (!input.startsWith('/')) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${JSON.stringify(input)} must be absolute`);
  if (input.split('/').some((p) => p === '..' || p === '.'))
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${JSON.stringify(input)} must not contain . or .. components`);
  let real: string;
  try {
    real = realpathSync(input);
  } catch {
    throw new DaemonError('NETFENCE_ERR_NOT_FOUND', `cgroup ${JSON.stringify(input)} does not exist`);
  }
  if (real !== mount && !real.startsWith(mount + sep))
    throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${JSON.stringify(input)} is not inside the cgroup2 mount ${mount}`);
  if (real === mount) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${JSON.stringify(input)} is the root cgroup; attach to a child cgroup`);
  const st = statSync(real, { bigint: true });
  if (!st.isDirectory()) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `cgroup path ${JSON.stringify(input)} is not a directory`);
  return { path: real, cgroupId: st.ino.toString() };
}

export function cgroupAlive(path: string, cgroupId: string): boolean {
  try {
    return statSync(path, { bigint: true }).ino.toString() === cgroupId;
  } catch {
    return false;
  }
}
