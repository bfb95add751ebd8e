import { closeSync, openSync, read as fsRead, readSync } from 'node:fs';
import { AttachType } from './constants';
import { KernelFdObject, unlinkPin } from './fd-object';
import { BpfError, Errno, NotSupportedError } from './errors';
import { check, closeFd, dupFd, getLibbpf } from './libbpf';
import { ifindexOf, withNetns } from './netns';
import { queryLinkInfo } from './obj-info';
import { openProgramById } from './bpf-program';
import { offsetOf, sizeOf } from './structs';
import type { BpfLink, BpfProgram, CgroupAttachOptions, LinkInfo, ProgramInfo, TcxAttachOptions, XdpAttachOptions } from './types';

/** Info of the program with this id, opened just for the query. */
function programInfoById(id: number): ProgramInfo {
  const prog = openProgramById(id);
  try {
    return prog.info();
  } finally {
    prog.close();
  }
}

class KernelLink extends KernelFdObject implements BpfLink {
  readonly kind = 'bpf-link' as const;

  constructor(fd: number, pinnedPath: string | undefined) {
    super(fd, pinnedPath);
  }
  protected get label(): string {
    return 'link';
  }
  detach(): void {
    if (this.fd < 0) return;
    const r = getLibbpf().bpf_link_detach(this.fd) as number;
    // ENOLINK: already detached (e.g. its cgroup or netdev went away).
    if (r < 0 && r !== -67) throw BpfError.fromErrno(r, 'bpf_link_detach');
    this.unpin();
    this.close();
  }
  info(): LinkInfo {
    return queryLinkInfo(this.live());
  }
  programInfo(): ProgramInfo {
    return programInfoById(this.info().progId);
  }
}

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;

/** A clsact tc filter made with bpf_tc_attach (kernels without TCX). No fd, cannot be pinned. */
class ClsactLink implements BpfLink {
  readonly kind = 'tc-clsact' as const;
  readonly fd = -1;
  readonly pinnedPath = undefined;
  #closed = false;

  constructor(
    private readonly hook: Buffer,
    private readonly handle: number,
    private readonly priority: number,
    private readonly progId: number,
    private readonly netnsPath: string | undefined,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }
  pin(): void {
    throw new NotSupportedError('pinning a clsact tc filter (use a TCX link)', '6.6');
  }
  unpin(): void {
    /* never pinned */
  }
  detach(): void {
    if (this.#closed) return;
    this.#closed = true;
    const opts = Buffer.alloc(sizeOf('bpf_tc_opts'));
    opts.writeBigUInt64LE(BigInt(opts.length), offsetOf('bpf_tc_opts', 'sz'));
    opts.writeUInt32LE(this.handle, offsetOf('bpf_tc_opts', 'handle'));
    opts.writeUInt32LE(this.priority, offsetOf('bpf_tc_opts', 'priority'));
    const run = (): number => getLibbpf().bpf_tc_detach(this.hook, opts) as number;
    const r = this.netnsPath === undefined ? run() : withNetns(this.netnsPath, run);
    if (r < 0 && r !== -Errno.ENOENT) throw BpfError.fromErrno(r, 'bpf_tc_detach');
  }
  info(): LinkInfo {
    return { id: 0, type: 0, progId: this.progId };
  }
  programInfo(): ProgramInfo {
    if (this.#closed) throw new BpfError('BPF_ERR_CLOSED', 'clsact filter is detached');
    return programInfoById(this.progId);
  }
  close(): void {
    this.detach();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

function attachClsact(prog: BpfProgram, ifindex: number, ingress: boolean, netnsPath: string | undefined): BpfLink {
  const lib = getLibbpf();
  const hook = Buffer.alloc(sizeOf('bpf_tc_hook'));
  hook.writeBigUInt64LE(BigInt(hook.length), offsetOf('bpf_tc_hook', 'sz'));
  hook.writeInt32LE(ifindex, offsetOf('bpf_tc_hook', 'ifindex'));
  hook.writeInt32LE(ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS, offsetOf('bpf_tc_hook', 'attach_point'));
  const opts = Buffer.alloc(sizeOf('bpf_tc_opts'));
  opts.writeBigUInt64LE(BigInt(opts.length), offsetOf('bpf_tc_opts', 'sz'));
  opts.writeInt32LE(prog.fd, offsetOf('bpf_tc_opts', 'prog_fd'));
  const hr = lib.bpf_tc_hook_create(hook) as number;
  if (hr < 0 && hr !== -Errno.EEXIST) throw BpfError.fromErrno(hr, `bpf_tc_hook_create(ifindex ${ifindex})`);
  check(lib.bpf_tc_attach(hook, opts) as number, `bpf_tc_attach(ifindex ${ifindex})`);
  return new ClsactLink(
    hook,
    opts.readUInt32LE(offsetOf('bpf_tc_opts', 'handle')),
    opts.readUInt32LE(offsetOf('bpf_tc_opts', 'priority')),
    opts.readUInt32LE(offsetOf('bpf_tc_opts', 'prog_id')),
    netnsPath,
  );
}

function liveFd(prog: BpfProgram): number {
  if (prog.closed) throw new BpfError('BPF_ERR_CLOSED', `program '${prog.name}' is closed`);
  return prog.fd;
}

/**
 * Attaches a SCHED_CLS program to an interface's TCX ingress/egress hook with
 * bpf_link_create(prog, ifindex, BPF_TCX_INGRESS|EGRESS). With mode 'auto' (default) a kernel
 * without TCX (EINVAL) gets a clsact tc filter instead. The interface is resolved in
 * `netnsPath` when given (withNetns), else in the caller thread's netns. EEXIST when the same
 * program is already attached to that hook. Owner: the caller.
 */
export function attachTcx(program: BpfProgram, opts: TcxAttachOptions): BpfLink {
  const progFd = liveFd(program);
  const ingress = opts.direction === 'ingress';
  if (!ingress && opts.direction !== 'egress') throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `bad direction ${String(opts.direction)}`);
  const mode = opts.mode ?? 'auto';
  const run = (): BpfLink => {
    let ifindex = opts.ifindex;
    if (ifindex === undefined) {
      if (opts.ifname === undefined) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', 'attachTcx needs ifindex or ifname');
      ifindex = ifindexOf(opts.ifname);
    }
    if (!Number.isInteger(ifindex) || ifindex <= 0) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `bad ifindex ${ifindex}`);
    if (mode !== 'clsact') {
      const type = ingress ? AttachType.TCX_INGRESS : AttachType.TCX_EGRESS;
      const fd = getLibbpf().bpf_link_create(progFd, ifindex, type, null) as number;
      if (fd >= 0) return new KernelLink(fd, undefined);
      if (fd !== -Errno.EINVAL) throw BpfError.fromErrno(fd, `bpf_link_create(${program.name}, ifindex ${ifindex}, TCX ${opts.direction})`);
      if (mode === 'tcx') throw new NotSupportedError('TCX links (bpf_link_create BPF_TCX_*)', '6.6', { errno: Errno.EINVAL });
    }
    return attachClsact(program, ifindex, ingress, opts.netnsPath);
  };
  return opts.netnsPath === undefined ? run() : withNetns(opts.netnsPath, run);
}

/** XDP_FLAGS_* of the kernel (include/uapi/linux/if_link.h). */
const XDP_FLAGS = { skb: 1 << 1, drv: 1 << 2 } as const;

/**
 * Attaches an XDP program to an interface with a bpf_link (bpf_link_create(prog, ifindex,
 * BPF_XDP, flags)). `mode` 'native' runs it in the driver (XDP_FLAGS_DRV_MODE: refused with
 * BPF_ERR_NOT_SUPPORTED-style errno by a driver without XDP support), 'generic' on the skb path
 * (XDP_FLAGS_SKB_MODE: works on every device, after the skb is built), 'auto' (default) lets the
 * kernel choose (native when the driver has it). One XDP link per interface and mode: a second
 * gives EBUSY. The interface is resolved in `netnsPath` when given. Owner: the caller.
 */
export function attachXdp(program: BpfProgram, opts: XdpAttachOptions): BpfLink {
  const progFd = liveFd(program);
  const mode = opts.mode ?? 'auto';
  if (mode !== 'auto' && mode !== 'native' && mode !== 'generic') throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `bad XDP mode ${String(mode)}`);
  const run = (): BpfLink => {
    const ifindex = opts.ifindex ?? (opts.ifname !== undefined ? ifindexOf(opts.ifname) : undefined);
    if (ifindex === undefined) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', 'attachXdp needs ifindex or ifname');
    if (!Number.isInteger(ifindex) || ifindex <= 0) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `bad ifindex ${ifindex}`);
    const o = Buffer.alloc(sizeOf('bpf_link_create_opts'));
    o.writeBigUInt64LE(BigInt(o.length), offsetOf('bpf_link_create_opts', 'sz'));
    o.writeUInt32LE(mode === 'native' ? XDP_FLAGS.drv : mode === 'generic' ? XDP_FLAGS.skb : 0, offsetOf('bpf_link_create_opts', 'flags'));
    const fd = getLibbpf().bpf_link_create(progFd, ifindex, AttachType.XDP, o) as number;
    if (fd < 0) throw BpfError.fromErrno(fd, `bpf_link_create(${program.name}, ifindex ${ifindex}, XDP ${mode})`);
    return new KernelLink(fd, undefined);
  };
  return opts.netnsPath === undefined ? run() : withNetns(opts.netnsPath, run);
}

/**
 * Attaches a cgroup program (connect4/6, sendmsg4/6, recvmsg4/6, getpeername4/6, sock_create,
 * cgroup_skb ingress/egress, ...) to a cgroup2 directory with a bpf_link. Owner: the caller.
 */
export function attachCgroup(program: BpfProgram, opts: CgroupAttachOptions): BpfLink {
  const progFd = liveFd(program);
  const attachType = opts.attachType ?? program.expectedAttachType;
  let cgFd: number;
  if (typeof opts.cgroup === 'number') cgFd = opts.cgroup;
  else {
    try {
      cgFd = openSync(opts.cgroup, 'r');
    } catch (e) {
      throw BpfError.from(e);
    }
  }
  try {
    const fd = getLibbpf().bpf_link_create(progFd, cgFd, attachType, null) as number;
    if (fd < 0) throw BpfError.fromErrno(fd, `bpf_link_create(${program.name}, cgroup, attach type ${attachType})`);
    return new KernelLink(fd, undefined);
  } finally {
    if (typeof opts.cgroup !== 'number') closeSync(cgFd);
  }
}

/** Creates an iterator link (BPF_TRACE_ITER) for an `iter/...` program. Run it with readIterator. */
export function attachIter(program: BpfProgram): BpfLink {
  const fd = getLibbpf().bpf_link_create(liveFd(program), 0, AttachType.TRACE_ITER, null) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_link_create(${program.name}, BPF_TRACE_ITER)`);
  return new KernelLink(fd, undefined);
}

/** Creates an iterator fd for `link` (in `netnsPath` when given: a socket iterator walks the namespace it is created in). */
function createIterFd(link: BpfLink, what: string, netnsPath?: string): number {
  if (link.kind !== 'bpf-link' || link.closed) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `${what} needs an open iterator link`);
  const create = (): number => getLibbpf().bpf_iter_create(link.fd) as number;
  const iterFd = netnsPath ? withNetns(netnsPath, create) : create();
  if (iterFd < 0) throw BpfError.fromErrno(iterFd, 'bpf_iter_create');
  return iterFd;
}

/** Gathers what an iterator fd yields, 64 KiB a read, refusing more than maxBytes. */
class IterOutput {
  private readonly chunks: Buffer[] = [];
  private total = 0;
  readonly max: number;
  constructor(maxBytes: number | undefined) {
    this.max = maxBytes ?? 64 * 1024 * 1024;
  }
  /** A buffer for the next read. */
  next(): Buffer {
    return Buffer.allocUnsafe(64 * 1024);
  }
  /** Records a read of `n` bytes into `chunk`; false at EOF. */
  add(chunk: Buffer, n: number): boolean {
    if (n === 0) return false;
    this.chunks.push(chunk.subarray(0, n));
    this.total += n;
    if (this.total > this.max) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `iterator output exceeds maxBytes ${this.max}`);
    return true;
  }
  result(): Buffer {
    return Buffer.concat(this.chunks, this.total);
  }
}

/**
 * Runs an iterator once: bpf_iter_create, then reads the iterator fd to EOF (synchronously, on
 * the calling thread, so it sees that thread's netns) and returns what the program wrote.
 */
export function readIterator(link: BpfLink, opts: { maxBytes?: number } = {}): Buffer {
  const iterFd = createIterFd(link, 'readIterator');
  const out = new IterOutput(opts.maxBytes);
  try {
    for (let chunk = out.next(); out.add(chunk, readSync(iterFd, chunk, 0, chunk.length, null)); chunk = out.next());
  } catch (e) {
    throw BpfError.from(e);
  } finally {
    closeFd(iterFd);
  }
  return out.result();
}

/**
 * readIterator off the event loop: the iterator fd is created now (in the caller thread's
 * network namespace, or in `netnsPath` via withNetns), and read on libuv's thread pool,
 * where the kernel runs the program.
 */
export async function readIteratorAsync(link: BpfLink, opts: { maxBytes?: number; netnsPath?: string } = {}): Promise<Buffer> {
  const iterFd = createIterFd(link, 'readIteratorAsync', opts.netnsPath);
  const out = new IterOutput(opts.maxBytes);
  const read = (chunk: Buffer) => new Promise<number>((resolve, reject) => fsRead(iterFd, chunk, 0, chunk.length, null, (err, n) => (err ? reject(err) : resolve(n))));
  try {
    for (let chunk = out.next(); out.add(chunk, await read(chunk)); chunk = out.next());
  } catch (e) {
    throw BpfError.from(e);
  } finally {
    closeFd(iterFd);
  }
  return out.result();
}

/** Opens a pinned link (bpf_obj_get). close() keeps it attached (it is pinned); detach() ends it. */
export function openPinnedLink(path: string): BpfLink {
  const fd = getLibbpf().bpf_obj_get(path) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_obj_get(${path})`);
  return new KernelLink(fd, path);
}

/** Wraps a link fd; the fd is duplicated, so the caller keeps ownership of its own fd. */
export function linkFromFd(fd: number): BpfLink {
  return new KernelLink(dupFd(fd), undefined);
}
