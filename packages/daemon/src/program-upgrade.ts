// A new build of the programs onto every live link (host-program-set.ts calls this at start when
// a program's tag differs from the pinned one): bpf_link_update with the expected old program,
// so each link swaps atomically (every packet or call sees the old or the new program) and a
// link someone changed meanwhile is left alone. Which program a link gets follows from its attach
// type. Only links whose program uses this host's maps are touched: a layout-v1 link (its own
// maps; for cgroups no cg_slot storage, which the kernel would not create on a link update) is
// migrated instead (layout-v1-migration.ts).

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AttachType, openPinnedLink, openProgramById, updateLink, type BpfLink, type BpfProgram } from '@netfence/bpf-loader';
import { CGROUP_ATTACHED_PROGRAMS, OBJECTS } from '@netfence/bpf-programs';
import type { Logger } from 'pino';
import { isV1Dir } from './layout-v1';
import { attachmentDirNames, type CgroupHookKey } from './pin-layout';

/** The host set's programs, by hook. */
export interface ProgramsByHook {
  readonly tc: { readonly ingress: BpfProgram; readonly egress: BpfProgram };
  readonly xdp: BpfProgram;
  readonly cgroup: Readonly<Record<CgroupHookKey, BpfProgram>>;
}

const CGROUP_BY_ATTACH_TYPE = new Map<number, CgroupHookKey>(
  CGROUP_ATTACHED_PROGRAMS.map((k) => {
    const a = OBJECTS.cgroup.programs[k].attach;
    return [a.kind === 'cgroup' ? a.attachType : -1, k];
  }),
);

/** The program a link of this attach type runs in the host set; undefined for another kind of link. */
export function programForLink(programs: ProgramsByHook, attachType: number | undefined): BpfProgram | undefined {
  if (attachType === AttachType.TCX_INGRESS) return programs.tc.ingress;
  if (attachType === AttachType.TCX_EGRESS) return programs.tc.egress;
  if (attachType === AttachType.XDP) return programs.xdp;
  const k = attachType === undefined ? undefined : CGROUP_BY_ATTACH_TYPE.get(attachType);
  return k === undefined ? undefined : programs.cgroup[k];
}

/** Map ids that make a link's program one of this host set's (any build). */
export interface HostIdentity {
  readonly configMapId: number;
  readonly cgSlotMapId: number;
}

/**
 * Puts `next` on the link when the link runs another build of the host set's program for its
 * hook. True when it did.
 */
function upgradeOne(link: BpfLink, programs: ProgramsByHook, host: HostIdentity): boolean {
  const info = link.info();
  const next = programForLink(programs, info.attachType);
  if (!next) return false;
  const cur = link.programInfo();
  if (!cur.mapIds.includes(host.configMapId)) return false; // not on this host's maps: v1 or foreign
  if (info.cgroupId !== undefined && !cur.mapIds.includes(host.cgSlotMapId)) return false; // never update a link made without cg_slot
  if (cur.tag === next.info().tag) return false;
  const expected = openProgramById(cur.id);
  try {
    updateLink(link, next, { expectedProgram: expected });
  } finally {
    expected.close();
  }
  return true;
}

/** Upgrades every link pinned under the root's attachment directories (not v1 ones). Returns how many were updated. */
export function upgradeLinks(root: string, programs: ProgramsByHook, host: HostIdentity, logger: Logger): number {
  let n = 0;
  for (const id of attachmentDirNames(root)) {
    const dir = join(root, id);
    if (isV1Dir(dir)) continue;
    for (const name of readdirSync(dir).filter((f) => f.startsWith('link_'))) {
      let link: BpfLink | undefined;
      try {
        link = openPinnedLink(join(dir, name));
        if (upgradeOne(link, programs, host)) n++;
      } catch (e) {
        // A defunct link (its cgroup or device is gone) is the target watch's business; anything
        // else leaves this link on the old build, which keeps enforcing the same state.
        logger.warn({ err: e, link: join(dir, name) }, 'could not put the new build of its program on a link');
      } finally {
        link?.close();
      }
    }
  }
  return n;
}
