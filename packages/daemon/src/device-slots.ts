// Which slot a device's programs judge for: dev_slots[ifindex] (an array, one u32 per direction)
// for the usual small ifindex, tc_slots[{ifindex, direction}] (a hash) above DEV_SLOTS_MAX;
// devBinding() of the manifest picks. A binding of 0 (or none) makes the device's programs drop.

import { devBinding, type DevSlots } from '@netfence/bpf-programs';
import type { HostMaps } from './host-program-set';

export type DeviceDirection = keyof DevSlots;
export interface Device {
  readonly ifindex: number;
  readonly direction: DeviceDirection;
}

/** The slot the device's program for `direction` judges for; undefined when none. */
export function deviceSlot(host: HostMaps, d: Device): number | undefined {
  const b = devBinding(d.ifindex, d.direction);
  const s = b.kind === 'array' ? host.devSlots.get(d.ifindex)[d.direction] : host.tcSlots.get(d);
  return s === undefined || s === 0 ? undefined : s;
}

/** Binds the device (one map write: the programs switch to `slot` with the next packet). */
export function bindDevice(host: HostMaps, d: Device, slot: number): void {
  const b = devBinding(d.ifindex, d.direction);
  if (b.kind === 'array') host.devSlots.set(d.ifindex, { ...host.devSlots.get(d.ifindex), [d.direction]: slot });
  else host.tcSlots.set(d, slot);
}

/** Removes the device's binding, only while it still names `slot` (when given). */
export function unbindDevice(host: HostMaps, d: Device, slot?: number): void {
  if (slot !== undefined && deviceSlot(host, d) !== slot) return;
  const b = devBinding(d.ifindex, d.direction);
  if (b.kind === 'array') host.devSlots.set(d.ifindex, { ...host.devSlots.get(d.ifindex), [d.direction]: 0 });
  else host.tcSlots.delete(d);
}
