import { BpfError, Errno } from './errors';
import { MapType, attachTypeName, mapTypeName, progTypeName } from './constants';
import { openMapById } from './bpf-map';
import { getLibbpf } from './libbpf';
import { LinkType } from './obj-info';
import { offsetOf, sizeOf } from './structs';
import type { BpfLink, BpfProgram, LinkInfo, ProgramInfo, UpdateLinkOptions } from './types';

const BPF_F_REPLACE = 1 << 2;
const CGROUP_STORAGE_TYPES: ReadonlySet<number> = new Set([MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE]);

function liveFd(prog: BpfProgram, role: string): number {
  if (prog.closed) throw new BpfError('BPF_ERR_CLOSED', `updateLink: ${role} '${prog.name}' is closed`);
  return prog.fd;
}

/** Type and name of a map by id (a loaded program holds its maps, so they exist). */
function mapTypeById(id: number): { type: number; name: string } {
  const m = openMapById(id);
  try {
    return { type: m.type, name: m.name };
  } finally {
    m.close();
  }
}

/**
 * Why the kernel refused (EINVAL) to put `program` on the link, if it is one of the checks the
 * kernel makes (seen on 6.18): another program type; for a cgroup link, a program made for
 * another attach type; or cgroup storage maps that differ from those of the program the link
 * runs (on replace the kernel keeps the storage allocated at attach, so it must be the same map).
 */
function misfit(link: LinkInfo, current: ProgramInfo, next: ProgramInfo, program: BpfProgram): string | undefined {
  if (next.type !== current.type) return `the program is ${progTypeName(next.type)}, the link runs a ${progTypeName(current.type)} program`;
  if (link.type === LinkType.CGROUP && program.section !== '' && link.attachType !== undefined && program.expectedAttachType !== link.attachType) {
    return `the program is made for ${attachTypeName(program.expectedAttachType)}, the link is attached as ${attachTypeName(link.attachType)}`;
  }
  const storage = (ids: readonly number[]): Map<number, string> => {
    const found = new Map<number, string>();
    for (const id of ids) {
      const m = mapTypeById(id);
      if (CGROUP_STORAGE_TYPES.has(m.type)) found.set(id, `${mapTypeName(m.type)} map '${m.name}' (id ${id})`);
    }
    return found;
  };
  const was = storage(current.mapIds);
  const now = storage(next.mapIds);
  if ([...now.keys()].sort().join() !== [...was.keys()].sort().join()) {
    const list = (m: Map<number, string>): string => (m.size === 0 ? 'no cgroup storage' : [...m.values()].join(', '));
    return `the program uses ${list(now)}, the link's program (id ${current.id}) uses ${list(was)}; attach a new link instead`;
  }
  return undefined;
}

function updateOpts(expected: BpfProgram | undefined): Buffer {
  const o = Buffer.alloc(sizeOf('bpf_link_update_opts'));
  o.writeBigUInt64LE(BigInt(o.length), offsetOf('bpf_link_update_opts', 'sz'));
  if (expected) {
    o.writeUInt32LE(BPF_F_REPLACE, offsetOf('bpf_link_update_opts', 'flags'));
    o.writeUInt32LE(liveFd(expected, 'expectedProgram'), offsetOf('bpf_link_update_opts', 'old_prog_fd'));
  }
  return o;
}

function updateError(ret: number, link: BpfLink, linkId: number, program: BpfProgram, expected: BpfProgram | undefined): BpfError {
  const what = `bpf_link_update(link ${linkId}, program '${program.name}')`;
  if (ret === -Errno.EINVAL) {
    const reason = misfit(link.info(), link.programInfo(), program.info(), program);
    if (reason) return new BpfError('BPF_ERR_TYPE_MISMATCH', `${what}: the kernel refused a program that does not fit the link: ${reason} (EINVAL)`, { errno: Errno.EINVAL });
  }
  if (ret === -Errno.EPERM && expected) {
    const now = link.info().progId;
    const want = expected.info().id;
    if (now !== want) {
      return new BpfError('BPF_ERR_CONFLICT', `${what}: the link runs program id ${now}, not the expected '${expected.name}' (id ${want}); nothing was changed (EPERM)`, {
        errno: Errno.EPERM,
      });
    }
  }
  if (ret === -Errno.ENOLINK) {
    return new BpfError('BPF_ERR_NOT_FOUND', `${what}: the link is defunct, its cgroup or interface is gone (ENOLINK)`, { errno: Errno.ENOLINK });
  }
  return BpfError.fromErrno(ret, what);
}

/**
 * Replaces the program a link runs, atomically (bpf_link_update): every packet or call sees the
 * old or the new program, never none. With `expectedProgram` the kernel swaps only if the link
 * still runs that program (BPF_F_REPLACE + old_prog_fd), else BPF_ERR_CONFLICT and nothing
 * changes. A program that does not fit the link is refused by the kernel and reported as
 * BPF_ERR_TYPE_MISMATCH with the reason (see misfit). A defunct link (cgroup or interface
 * gone) is BPF_ERR_NOT_FOUND; a clsact filter has no link to update (BPF_ERR_INVALID_ARGUMENT).
 */
export function updateLink(link: BpfLink, program: BpfProgram, opts: UpdateLinkOptions = {}): void {
  if (link.kind !== 'bpf-link') throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `updateLink needs a kernel bpf_link (TCX, cgroup, iter), got a ${link.kind} filter`);
  if (link.closed) throw new BpfError('BPF_ERR_CLOSED', 'updateLink: the link is closed');
  const progFd = liveFd(program, 'program');
  const r = getLibbpf().bpf_link_update(link.fd, progFd, updateOpts(opts.expectedProgram)) as number;
  if (r < 0) throw updateError(r, link, link.info().id, program, opts.expectedProgram);
}
