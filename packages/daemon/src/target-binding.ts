// Binding a target to a filled slot: the device's slot binding (dev_slots, or tc_slots above
// DEV_SLOTS_MAX) then its TCX link, or for an XDP target its XDP link (native mode only); a
// cgroup's links in CGROUP_ATTACH_ORDER with its cg_slot storage written between the address
// restoring programs and the judging ones. Every link is pinned in the attachment's directory
// and its fd closed (a pin keeps a link; the daemon opens it again to detach it).
//
// The same function takes over from an older attachment of the target whose pins were set
// aside (reattach, layout-v1 migration), so the target is never without a filter:
// - links of this host set (same programs) are kept: the target is re-bound to the new slot
//   (one map write: the device binding, or the cgroup storage all its links share), then their
//   pins move;
// - a layout-v1 TC link gets the host program with bpf_link_update (atomic);
// - layout-v1 cgroup links (no cg_slot: never updated in place) stay attached until the new
//   links are all in place, then are detached (both judge meanwhile, with the same state).
// It is idempotent: run again after a crash, it completes what is missing.

import { existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AttachType, BpfError, attachCgroup, attachTcx, attachXdp, errnoName, openPinnedLink, openProgramById, updateLink, type BpfLink, type BpfProgram } from '@netfence/bpf-loader';
import { CGROUP_ATTACH_ORDER, OBJECTS } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import type { Device, DeviceDirection } from './device-slots';
import { bindDevice } from './device-slots';
import type { HostProgramSet } from './host-program-set';
import { TC_LINK, XDP_LINK, linkPin, type CgroupHookKey } from './pin-layout';
import type { Target } from './slot-table';

type DeviceTarget = Extract<Target, { kind: 'tc' }>;

/**
 * The kernel refused to attach the XDP program in native mode (a driver without XDP, such as a
 * bridge or a tun in TUN mode; a device that already has an XDP program): `reason` names the
 * errno. A new attachment falls back to TC (datapath-ops.ts).
 */
export class XdpRefused extends Error {
  constructor(
    readonly reason: string,
    options: { cause: unknown },
  ) {
    super(reason, options);
    this.name = 'XdpRefused';
  }
}

/** The attach type of a cgroup hook (a program re-opened from its pin does not know its own). */
function cgroupAttachType(k: CgroupHookKey): number {
  const a = OBJECTS.cgroup.programs[k].attach;
  if (a.kind !== 'cgroup') throw new Error(`manifest: ${k} is not a cgroup program`);
  return a.attachType;
}

/** Does the link run a program of this host set (any build)? */
function isOurs(host: HostProgramSet, link: BpfLink): boolean {
  return link.programInfo().mapIds.includes(host.configMapId);
}

function pinAndClose(link: BpfLink, path: string): void {
  try {
    link.pin(path);
  } catch (e) {
    link.close(); // not pinned: closing detaches it
    throw e;
  }
  link.close();
}

function deviceProgram(host: HostProgramSet, t: DeviceTarget): BpfProgram {
  return t.direction === 'xdp' ? host.xdpProgram() : host.tcProgram(t.direction);
}

/**
 * A new link on the device hook. TCX is required: clsact filters cannot be pinned
 * (docs/DESIGN.md). XDP in native mode only: generic XDP runs once the skb exists, where it
 * saves nothing over TC (../bpf-programs/README.md, "XDP flood benchmark"); a refusal is
 * XdpRefused.
 */
function attachDeviceLink(host: HostProgramSet, t: DeviceTarget): BpfLink {
  if (t.direction !== 'xdp') return attachTcx(host.tcProgram(t.direction), { ifindex: t.ifindex, direction: t.direction, mode: 'tcx' });
  try {
    return attachXdp(host.xdpProgram(), { ifindex: t.ifindex, mode: 'native' });
  } catch (e) {
    if (!(e instanceof BpfError) || e.errno === undefined) throw e;
    throw new XdpRefused(`the kernel refused native XDP: ${errnoName(e.errno)}`, { cause: e });
  }
}

/** Binds a device hook: its slot binding, then its link (kept from `aside`, updated from v1, or new). */
function bindDeviceHook(host: HostProgramSet, slot: number, dir: string, t: DeviceTarget, aside: string | undefined): void {
  bindDevice(host.maps, t, slot);
  const key = t.direction === 'xdp' ? XDP_LINK : TC_LINK;
  const pin = linkPin(dir, key);
  if (existsSync(pin)) return;
  const old = aside === undefined ? undefined : linkPin(aside, key);
  if (old !== undefined && existsSync(old)) {
    const link = openPinnedLink(old);
    try {
      if (!isOurs(host, link)) {
        const cur = openProgramById(link.info().progId);
        try {
          updateLink(link, deviceProgram(host, t), { expectedProgram: cur });
        } finally {
          cur.close();
        }
      }
    } finally {
      link.close();
    }
    renameSync(old, pin);
    return;
  }
  pinAndClose(attachDeviceLink(host, t), pin);
}

/** Binds a cgroup target (see the file comment). */
function bindCgroup(host: HostProgramSet, slot: number, dir: string, t: Extract<Target, { kind: 'cgroup' }>, aside: string | undefined): void {
  const oldPin = (k: string) => (aside === undefined ? undefined : linkPin(aside, k));
  const all: readonly CgroupHookKey[] = [...CGROUP_ATTACH_ORDER.storage, ...CGROUP_ATTACH_ORDER.judging];
  const firstOld = all.map(oldPin).find((p): p is string => p !== undefined && existsSync(p));
  let keepOld = false;
  if (firstOld) {
    const l = openPinnedLink(firstOld);
    try {
      keepOld = isOurs(host, l);
    } finally {
      l.close();
    }
  }
  const ensure = (k: CgroupHookKey) => {
    const pin = linkPin(dir, k);
    if (existsSync(pin)) return;
    const old = oldPin(k);
    if (keepOld && old !== undefined && existsSync(old)) renameSync(old, pin);
    else pinAndClose(attachCgroup(host.cgroupProgram(k), { cgroup: t.cgroupPath, attachType: cgroupAttachType(k) }), pin);
  };
  if (keepOld) host.maps.cgSlot.set(t.cgroupId, slot); // the storage exists (the old links hold it): one write re-binds them all
  for (const k of CGROUP_ATTACH_ORDER.storage) ensure(k);
  if (!keepOld) host.maps.cgSlot.set(t.cgroupId, slot); // created zeroed (slot 0: drop) by the links just made
  for (const k of CGROUP_ATTACH_ORDER.judging) ensure(k);
}

/**
 * Binds `t` to `slot` with links pinned in `dir`, taking over from the links pinned in `aside`
 * (see the file comment); what is left in `aside` afterwards (layout-v1 cgroup links) is detached.
 */
export function bindTarget(host: HostProgramSet, slot: number, dir: string, t: Target, aside?: string, logger?: Logger): void {
  if (t.kind === 'tc') bindDeviceHook(host, slot, dir, t, aside);
  else bindCgroup(host, slot, dir, t, aside);
  if (aside !== undefined && existsSync(aside)) detachPinnedLinks(aside, logger);
}

/** The device binding a link of this attach type judges by (TCX ingress/egress, XDP); undefined for a cgroup link. */
function deviceDirectionOf(attachType: number | undefined): DeviceDirection | undefined {
  if (attachType === AttachType.TCX_INGRESS) return 'ingress';
  if (attachType === AttachType.TCX_EGRESS) return 'egress';
  return attachType === AttachType.XDP ? 'xdp' : undefined;
}

/**
 * Detaches every link pinned in `dir` now (bpf_link_detach: synchronous, unlike removing the pin)
 * and removes the pins. With `host`, a cgroup that lost its links gets slot 0 in its storage: the
 * kernel keeps a cgroup's storage after its links go (until the cgroup is freed), and a slot
 * number left there would name a slot that is freed, then reused by another attachment.
 */
export function detachPinnedLinks(dir: string, logger?: Logger, host?: HostProgramSet): { readonly devices: Device[] } {
  const devices: Device[] = [];
  if (!existsSync(dir)) return { devices };
  // Judging links first (a cgroup's), then the rest: detaching order does not open a window
  // (the whole filter goes), it only keeps the storage links' redirect restore to the end.
  const names = readdirSync(dir).filter((n) => n.startsWith('link_'));
  const rank = (n: string) => (CGROUP_ATTACH_ORDER.storage.some((k) => n.endsWith(`_${k}`)) ? 1 : 0);
  const cgroups = new Set<bigint>();
  for (const n of names.sort((a, b) => rank(a) - rank(b))) {
    let link: BpfLink | undefined;
    try {
      link = openPinnedLink(join(dir, n));
      const info = link.info();
      if (info.cgroupId !== undefined && info.cgroupId !== 0n) cgroups.add(info.cgroupId);
      const direction = deviceDirectionOf(info.attachType);
      if (direction && info.ifindex !== undefined) devices.push({ ifindex: info.ifindex, direction });
      link.detach();
    } catch (e) {
      logger?.warn({ err: e, link: join(dir, n) }, 'could not detach a link; removing its pin');
    } finally {
      link?.close();
    }
    rmSync(join(dir, n), { force: true });
  }
  for (const cg of host ? cgroups : []) {
    try {
      if (host!.maps.cgSlot.get(cg) !== undefined) host!.maps.cgSlot.set(cg, 0);
    } catch (e) {
      logger?.warn({ err: e, cgroupId: String(cg) }, 'could not reset the slot in a cgroup storage');
    }
  }
  return { devices };
}
