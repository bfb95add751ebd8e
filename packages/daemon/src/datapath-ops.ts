// The three ways an attachment comes into being on an opened host set (bpf-datapath.ts opens it):
// attached new, moved to a new slot (layout-v1 migration, unusable pins, a move a stop
// interrupted), or re-opened from its pins. Each returns the BpfAttachment, tracked by `track`.

import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RingBufferConsumer } from '@netfence/bpf-loader';
import { decodeDnsLimit, encodeDnsLimit, type AttachmentConfig, type DnsRateLimit } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import { makeAttachmentDir, takeOver, targetOf, type TakeoverContext } from './attachment-takeover';
import { BpfAttachment, datapathError, type AttachmentContext } from './bpf-attachment';
import { DaemonError } from './daemon-error';
import type { AttachParams } from './datapath';
import type { HostProgramSet } from './host-program-set';
import { linkKeys, linkPin, validAttachmentId } from './pin-layout';
import { RuleTrie, type RuleLimits } from './rule-trie';
import type { SeverRunner } from './sever-runner';
import { closeRuleTries, createRuleTries, initialSnapshot, openRuleTries, readRules, type RuleTries } from './slot-state';
import { unbindDevice, type Device } from './device-slots';
import { devicesOf, hookOf, type SlotTable, type Target } from './slot-table';
import { XdpRefused, bindTarget, detachPinnedLinks } from './target-binding';

/** The host set and what hangs off it, once opened. */
export interface OpenedDatapath {
  readonly root: string;
  readonly host: HostProgramSet;
  readonly slots: SlotTable;
  readonly sever: SeverRunner;
  readonly ring: RingBufferConsumer;
  readonly ctx: AttachmentContext;
  readonly takeover: TakeoverContext;
  readonly limits: RuleLimits;
  readonly dnsLimit: DnsRateLimit;
  readonly logger: Logger;
  /** Starts tracking a new attachment object (the datapath counts and closes them). */
  readonly track: (a: BpfAttachment) => BpfAttachment;
}

function initialConfig(p: AttachParams, mode: 'DISABLED' | 'BLOCK_ALL'): AttachmentConfig {
  return { mode, dryRun: false, dnsFilter: false, l3Device: p.kind === 'tc' && p.l3, attachmentId: p.numericId };
}

export function checkAttachmentId(id: string): void {
  if (!validAttachmentId(id)) throw new DaemonError('NETFENCE_ERR_INVALID_ARGUMENT', `attachment id ${JSON.stringify(id)} cannot name a pin directory`);
}

/** The target an attachment was bound to, and why not the XDP hook it asked for (when so). */
interface Bound {
  readonly target: Target;
  readonly xdpFallback?: string;
}

function track(o: OpenedDatapath, p: AttachParams, dir: string, slot: number, tries: RuleTries, model: RuleTrie, bound: Bound = { target: targetOf(p) }): BpfAttachment {
  return o.track(new BpfAttachment(o.ctx, { id: p.id, dir, slot, ...bound }, tries, model));
}

/**
 * Binds a new attachment's target. An XDP hook the kernel refuses (XdpRefused: no native XDP in
 * the driver, another XDP program on the device) falls back to the TC hook in `p.direction`,
 * exactly as without xdp: the XDP binding is removed first, and why is kept for List.
 */
function bindNew(o: OpenedDatapath, slot: number, dir: string, p: AttachParams, target: Target): Bound {
  try {
    bindTarget(o.host, slot, dir, target);
    return { target };
  } catch (e) {
    if (!(e instanceof XdpRefused) || p.kind !== 'tc') throw e;
    unbindDevice(o.host.maps, { ifindex: p.ifindex, direction: 'xdp' }, slot);
    const tc = targetOf({ ...p, xdp: false });
    bindTarget(o.host, slot, dir, tc);
    o.logger.warn({ attachment: p.id, ifindex: p.ifindex, err: e.cause, xdpFallback: e.reason }, 'XDP refused by the kernel: the filter runs at TC instead');
    return { target: tc, xdpFallback: e.reason };
  }
}

/** Every device binding attaching `p` may have written (an XDP attach may have fallen back to TC). */
function devicesTried(p: AttachParams, target: Target): Device[] {
  return p.kind === 'tc' && p.xdp ? [...devicesOf(target), ...devicesOf(targetOf({ ...p, xdp: false }))] : devicesOf(target);
}

/** A new attachment: slot, tries, config (DISABLED, or BLOCK_ALL for an auto attachment) and DNS limit, then the target bound. No program load. */
export function attachNew(o: OpenedDatapath, p: AttachParams, initialMode: 'DISABLED' | 'BLOCK_ALL' = 'DISABLED'): BpfAttachment {
  checkAttachmentId(p.id);
  const target = targetOf(p);
  const slot = o.slots.allocate();
  const dir = join(o.root, p.id);
  let tries: RuleTries | undefined;
  try {
    makeAttachmentDir(o.root, p.id);
    tries = createRuleTries(dir, o.limits.allow + o.limits.deny);
    o.slots.fill(slot, initialSnapshot(initialConfig(p, initialMode), o.dnsLimit), tries);
    const bound = bindNew(o, slot, dir, p, target);
    return track(o, p, dir, slot, tries, new RuleTrie(o.limits), bound);
  } catch (e) {
    detachPinnedLinks(dir, o.logger, o.host);
    o.slots.release(slot, devicesTried(p, target));
    if (tries) closeRuleTries(tries);
    rmSync(dir, { recursive: true, force: true });
    const where = p.kind === 'tc' ? `the ${p.xdp ? 'XDP' : 'TC'} filter to ifindex ${p.ifindex}${p.xdp ? '' : ` (${p.direction})`}` : `the cgroup programs to ${p.cgroupPath}`;
    throw datapathError(e, `attaching ${where}`);
  }
}

/** Moves `p` to a new slot (layout v1, unusable pins, an interrupted move), keeping the target filtered. */
export function moveToNewSlot(o: OpenedDatapath, p: AttachParams): BpfAttachment {
  checkAttachmentId(p.id);
  try {
    const { slot, tries, snap } = takeOver(o.takeover, p.id, targetOf(p), initialConfig(p, 'BLOCK_ALL'));
    const a = track(o, p, join(o.root, p.id), slot, tries, RuleTrie.fromEntries(snap.rules, o.limits));
    ensureDnsLimit(o, slot, p.id);
    return a;
  } catch (e) {
    throw datapathError(e, `moving ${p.id} to a new slot`);
  }
}

/** Restore: a pinned attachment keeps its bucket unless the configured limit changed (then it is written, which also refills the bucket). */
function ensureDnsLimit(o: OpenedDatapath, slot: number, id: string): void {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(slot, 0);
  const now = decodeDnsLimit(o.host.maps.dnsLimit.lookup(key)!);
  if (now.rateQps === o.dnsLimit.rateQps && now.burst === o.dnsLimit.burst) return;
  o.host.maps.dnsLimit.update(key, encodeDnsLimit(o.dnsLimit));
  o.logger.info({ attachment: id, from: now, to: o.dnsLimit }, 'DNS rate limit updated');
}

/** Re-opens an attachment pinned in the host layout: its tries, its slot (which its target must be bound to), its links. */
export function reopenPinned(o: OpenedDatapath, p: AttachParams, dir: string): BpfAttachment {
  const target = targetOf(p);
  const slot = o.slots.slotOfDir(dir);
  if (slot === undefined) throw new DaemonError('NETFENCE_ERR_DATAPATH', `${dir}: its rules tries are missing or in no slot`);
  const bound = o.slots.boundSlot(target);
  if (bound !== slot) throw new DaemonError('NETFENCE_ERR_DATAPATH', `${dir}: the target is bound to slot ${bound ?? 'none'}, the pins fill slot ${slot}`);
  for (const k of linkKeys(hookOf(target))) if (!existsSync(linkPin(dir, k))) throw new DaemonError('NETFENCE_ERR_DATAPATH', `${dir}: link_${k} is missing`);
  const tries = openRuleTries(dir);
  try {
    const a = track(o, p, dir, slot, tries, RuleTrie.fromEntries(readRules(tries), o.limits));
    ensureDnsLimit(o, slot, p.id);
    return a;
  } catch (e) {
    closeRuleTries(tries);
    throw e;
  }
}
