// Where the datapath pins things under bpffs_root (docs/DESIGN.md "Pins"):
//
//   <root>/_host/             the host-wide maps (by their manifest names) and programs (prog_<function>)
//   <root>/<attachment id>/   rules_v4, rules_v6 (the attachment's tries), link_<program key> per
//                             link (an interface: link_filter at TC, link_xdp at XDP), `events`
//                             (a symlink to the host ring, for tools)
//
// and, from the layout before issue 11 (layout v1, migrated on start): <root>/events (the ring)
// and per attachment nf_config, allow_v4, ..., link_<program key>.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CGROUP_ATTACH_ORDER, CGROUP_ATTACHED_PROGRAMS, HOST_MAPS, RULE_TRIES } from '@netfence/bpf-programs';

/** The host set's directory under the root (no attachment id starts with an underscore). */
export const HOST_DIR = '_host';
/** The v1 layout's event ring, pinned at the root. */
export const LEGACY_EVENTS = HOST_MAPS.events.name;
/** The per-attachment symlink to the host ring. */
export const EVENTS_LINK = HOST_MAPS.events.name;
/** The attachment's tries, by family. */
export const TRIE_PINS = { 4: RULE_TRIES.v4.name, 6: RULE_TRIES.v6.name } as const;

export type CgroupHookKey = (typeof CGROUP_ATTACHED_PROGRAMS)[number];

/** The link pin keys of an interface attachment: its TCX link, or its XDP link. */
export const TC_LINK = 'filter';
export const XDP_LINK = 'xdp';

/** Where an attachment's filter runs: a TC hook, the device's XDP hook, or a cgroup's hooks. */
export type Hook = 'tc' | 'xdp' | 'cgroup';

/** The link pins of an attachment, in the order the links are made (cgroup: CGROUP_ATTACH_ORDER). */
export function linkKeys(hook: Hook): readonly string[] {
  if (hook === 'tc') return [TC_LINK];
  if (hook === 'xdp') return [XDP_LINK];
  return [...CGROUP_ATTACH_ORDER.storage, ...CGROUP_ATTACH_ORDER.judging];
}

export const linkPin = (dir: string, key: string): string => join(dir, `link_${key}`);
export const programPin = (hostDir: string, fn: string): string => join(hostDir, `prog_${fn}`);

/** Names under the root that are not attachments. */
export function isAttachmentDirName(name: string): boolean {
  return name !== HOST_DIR && name !== LEGACY_EVENTS && !name.endsWith('_aside');
}

/** The attachment directories under the root. */
export function attachmentDirNames(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && isAttachmentDirName(e.name))
    .map((e) => e.name);
}

/** An attachment id that can name a pin directory. */
export function validAttachmentId(id: string): boolean {
  return /^[A-Za-z0-9_.-]+$/.test(id) && !id.startsWith('_') && isAttachmentDirName(id) && id !== '.' && id !== '..';
}
