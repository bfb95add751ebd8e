// Moving an attachment onto a new slot while its target stays filtered: the layout-v1
// migration (state copied exactly from its own maps), and re-attaching an attachment whose pins
// cannot be re-opened (state copied from its old slot). The old pins are set aside
// (<id>_aside), the new slot is filled with the copy, and bindTarget switches the target over
// (target-binding.ts); then the old slot is cleared and the set-aside pins removed.
//
// The switch has one point of no return: the target's binding (tc_slots, or the cgroup storage)
// names the new slot. A start that finds <id>_aside (a crash during a move) completes the move
// when that point was passed, and otherwise removes the new half and puts the old pins back.

import { existsSync, mkdirSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { encodeConfig, type AttachmentConfig, type DnsRateLimit } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import type { HostProgramSet } from './host-program-set';
import { isV1Dir, readV1Snapshot, type SlotSnapshot } from './layout-v1';
import { EVENTS_LINK, HOST_DIR } from './pin-layout';
import { closeRuleTries, createRuleTries, initialSnapshot, readSlot, slotActive, type RuleTries } from './slot-state';
import { devicesOf, type SlotTable, type Target } from './slot-table';
import { bindTarget, detachPinnedLinks } from './target-binding';

/** What moving an attachment needs of the datapath. */
export interface TakeoverContext {
  readonly root: string;
  readonly host: HostProgramSet;
  readonly slots: SlotTable;
  /** Entries each trie is created with room for (maps.allow_entries + maps.deny_entries). */
  readonly trieEntries: number;
  readonly dnsLimit: DnsRateLimit;
  readonly logger: Logger;
}

export const asideDir = (root: string, id: string): string => join(root, `${id}_aside`);

/** The attachment's directory, made with its `events` link to the host ring. */
export function makeAttachmentDir(root: string, id: string): string {
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const link = join(dir, EVENTS_LINK);
  if (!existsSync(link)) symlinkSync(join('..', HOST_DIR, EVENTS_LINK), link);
  return dir;
}

/** The target of the params: an interface's XDP hook when `xdp`, else its TC hook in `direction`; or a cgroup. */
export function targetOf(p: { kind: 'tc'; ifindex: number; direction: 'ingress' | 'egress'; xdp?: boolean } | { kind: 'cgroup'; cgroupPath: string }): Target {
  if (p.kind === 'tc') return { kind: 'tc', ifindex: p.ifindex, direction: p.xdp ? 'xdp' : p.direction };
  return { kind: 'cgroup', cgroupPath: p.cgroupPath, cgroupId: statSync(p.cgroupPath, { bigint: true }).ino };
}


/**
 * Removes an attachment's pins and state: its links detached (now, not when the pin goes), its
 * slot cleared and freed, the directory removed. A layout-v1 directory has no host state: its
 * pins go (which detaches its links).
 */
export function removeAttachmentDir(ctx: Pick<TakeoverContext, 'host' | 'slots' | 'logger'>, dir: string): void {
  if (!existsSync(dir)) return;
  if (!isV1Dir(dir)) {
    const slot = ctx.slots.slotOfDir(dir);
    const { devices } = detachPinnedLinks(dir, ctx.logger, ctx.host);
    if (slot !== undefined) ctx.slots.release(slot, devices);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** A start found `<id>_aside`: completes the move if the target is bound to the new slot, else undoes it. */
function recoverInterrupted(ctx: TakeoverContext, id: string, target: Target): void {
  const dir = join(ctx.root, id);
  const aside = asideDir(ctx.root, id);
  const slot = existsSync(dir) ? ctx.slots.slotOfDir(dir) : undefined;
  if (slot !== undefined && ctx.slots.boundSlot(target) === slot) {
    bindTarget(ctx.host, slot, dir, target, aside, ctx.logger);
    const old = ctx.slots.slotOfDir(aside);
    if (old !== undefined && old !== slot) ctx.slots.release(old, devicesOf(target));
    rmSync(aside, { recursive: true, force: true });
    ctx.logger.info({ attachment: id }, 'completed a move to a new slot that a stop interrupted');
    return;
  }
  removeAttachmentDir(ctx, dir);
  renameSync(aside, dir);
  ctx.logger.info({ attachment: id }, 'undid a move to a new slot that a stop interrupted; the old pins are back');
}

/** What the new slot is filled from: the old slot, a layout-v1 directory, or (nothing left) block-all until the saved state is applied. */
function snapshotFor(ctx: TakeoverContext, dir: string, target: Target, blockAll: AttachmentConfig): { snap: SlotSnapshot; oldSlot?: number; from: string } {
  // The slot this directory's tries fill (the target's binding is no proof of ownership: a
  // cgroup's storage outlives its links), and only while it is in use.
  const oldSlot = existsSync(dir) ? ctx.slots.slotOfDir(dir) : undefined;
  if (oldSlot !== undefined && slotActive(ctx.host.maps, oldSlot)) return { snap: readSlot(ctx.host.maps, oldSlot), oldSlot, from: 'slot' };
  if (existsSync(dir) && isV1Dir(dir)) {
    try {
      return { snap: readV1Snapshot(dir), from: 'layout-v1' };
    } catch (e) {
      ctx.logger.warn({ err: e, dir }, 'cannot read the layout-v1 maps; the new filter blocks all until the saved state is applied');
    }
  }
  encodeConfig(blockAll); // checks it
  return { snap: initialSnapshot(blockAll, ctx.dnsLimit), from: 'nothing' };
}

/**
 * Moves the attachment `id` (pins in <root>/<id>/, any layout, or none) to a new slot bound to
 * `target`, and returns the new slot and its tries. `blockAll` is the config used when nothing
 * of the old state can be read (fail closed until the runtime applies the saved state).
 */
export function takeOver(ctx: TakeoverContext, id: string, target: Target, blockAll: AttachmentConfig): { slot: number; tries: RuleTries; snap: SlotSnapshot } {
  const dir = join(ctx.root, id);
  const aside = asideDir(ctx.root, id);
  if (existsSync(aside)) recoverInterrupted(ctx, id, target);
  const { snap, oldSlot, from } = snapshotFor(ctx, dir, target, blockAll);
  const slot = ctx.slots.allocate();
  let tries: RuleTries | undefined;
  let moved = false;
  try {
    if (existsSync(dir)) {
      renameSync(dir, aside);
      moved = true;
    }
    makeAttachmentDir(ctx.root, id);
    tries = createRuleTries(dir, Math.max(ctx.trieEntries, snap.rules.length));
    ctx.slots.fill(slot, snap, tries);
    bindTarget(ctx.host, slot, dir, target, moved ? aside : undefined, ctx.logger);
  } catch (e) {
    if (ctx.slots.boundSlot(target) === slot) {
      // Past the switch: the target runs on the new slot; the next start completes the move.
      ctx.logger.error({ err: e, attachment: id }, 'a move to a new slot failed after the switch; the next start completes it');
      if (tries) closeRuleTries(tries);
      throw e;
    }
    if (tries) closeRuleTries(tries);
    detachPinnedLinks(dir, ctx.logger, ctx.host);
    ctx.slots.release(slot);
    rmSync(dir, { recursive: true, force: true });
    if (moved) renameSync(aside, dir);
    throw e;
  }
  if (oldSlot !== undefined && oldSlot !== slot) ctx.slots.release(oldSlot, devicesOf(target));
  rmSync(aside, { recursive: true, force: true });
  ctx.logger.info({ attachment: id, slot, from, rules: snap.rules.length }, from === 'layout-v1' ? 'migrated a layout-v1 attachment to the host program set' : 'moved an attachment to a new slot');
  return { slot, tries, snap };
}
