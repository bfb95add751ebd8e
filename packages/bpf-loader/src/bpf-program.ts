import { KernelFdObject } from './fd-object';
import { BpfError } from './errors';
import { addressOf, closeFd, dupFd, getLibbpf } from './libbpf';
import { queryProgramInfo } from './obj-info';
import { offsetOf, sizeOf } from './structs';
import type { BpfProgram, ProgramInfo, TestRunOptions, TestRunResult } from './types';

export interface ProgramMeta {
  readonly name: string;
  readonly section: string;
  readonly type: number;
  readonly expectedAttachType: number;
}

class BpfProgramImpl extends KernelFdObject implements BpfProgram {
  readonly name: string;
  readonly section: string;
  readonly type: number;
  readonly expectedAttachType: number;

  constructor(fd: number, meta: ProgramMeta, pinnedPath: string | undefined) {
    super(fd, pinnedPath);
    this.name = meta.name;
    this.section = meta.section;
    this.type = meta.type;
    this.expectedAttachType = meta.expectedAttachType;
  }


  protected get label(): string {
    return `program '${this.name}'`;
  }

  testRun(opts: TestRunOptions): TestRunResult {
    const fd = this.live();
    const repeat = opts.repeat ?? 1;
    if (!Number.isInteger(repeat) || repeat < 0 || repeat > 0x7fffffff) {
      throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `testRun: bad repeat ${repeat}`);
    }
    const dataIn = Buffer.from(opts.data.buffer, opts.data.byteOffset, opts.data.byteLength);
    const dataOut = Buffer.alloc(opts.dataOutSize ?? dataIn.length + 256);
    const ctxIn = opts.ctx ? Buffer.from(opts.ctx.buffer, opts.ctx.byteOffset, opts.ctx.byteLength) : undefined;
    const ctxOut = opts.ctxOutSize ? Buffer.alloc(opts.ctxOutSize) : undefined;
    const o = Buffer.alloc(sizeOf('bpf_test_run_opts'));
    const off = (f: string): number => offsetOf('bpf_test_run_opts', f);
    o.writeBigUInt64LE(BigInt(o.length), off('sz'));
    if (dataIn.length > 0) o.writeBigUInt64LE(addressOf(dataIn), off('data_in'));
    o.writeUInt32LE(dataIn.length, off('data_size_in'));
    if (dataOut.length > 0) o.writeBigUInt64LE(addressOf(dataOut), off('data_out'));
    o.writeUInt32LE(dataOut.length, off('data_size_out'));
    if (ctxIn && ctxIn.length > 0) {
      o.writeBigUInt64LE(addressOf(ctxIn), off('ctx_in'));
      o.writeUInt32LE(ctxIn.length, off('ctx_size_in'));
    }
    if (ctxOut) {
      o.writeBigUInt64LE(addressOf(ctxOut), off('ctx_out'));
      o.writeUInt32LE(ctxOut.length, off('ctx_size_out'));
    }
    o.writeInt32LE(repeat, off('repeat'));
    const r = getLibbpf().bpf_prog_test_run_opts(fd, o) as number;
    // Keep the buffers referenced until after the call (their addresses are in `o`).
    void dataIn.length;
    void ctxIn?.length;
    if (r < 0) throw BpfError.fromErrno(r, `bpf_prog_test_run_opts(${this.name})`);
    const outLen = o.readUInt32LE(off('data_size_out'));
    const ctxLen = o.readUInt32LE(off('ctx_size_out'));
    return {
      retval: o.readUInt32LE(off('retval')),
      durationNs: o.readUInt32LE(off('duration')),
      data: dataOut.subarray(0, Math.min(outLen, dataOut.length)),
      ctx: ctxOut ? ctxOut.subarray(0, Math.min(ctxLen, ctxOut.length)) : undefined,
    };
  }

  info(): ProgramInfo {
    return queryProgramInfo(this.live());
  }




}

export function adoptProgramFd(fd: number, meta: ProgramMeta, pinnedPath?: string): BpfProgram {
  return new BpfProgramImpl(fd, meta, pinnedPath);
}

function fromOwnedFd(fd: number, pinnedPath: string | undefined): BpfProgram {
  try {
    const info = queryProgramInfo(fd);
    return new BpfProgramImpl(fd, { name: info.name, section: '', type: info.type, expectedAttachType: 0 }, pinnedPath);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/**
 * Opens a pinned program (bpf_obj_get). `section` is '' and `expectedAttachType` 0 (the kernel
 * does not report them): pass attachType explicitly when attaching it. Caller owns the result.
 */
export function openPinnedProgram(path: string): BpfProgram {
  const fd = getLibbpf().bpf_obj_get(path) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_obj_get(${path})`);
  return fromOwnedFd(fd, path);
}

/**
 * Opens a loaded program by its kernel id (bpf_prog_get_fd_by_id), e.g. the one a link runs.
 * Like openPinnedProgram, `section` is '' and `expectedAttachType` 0. BPF_ERR_NOT_FOUND when no
 * program has that id. Caller owns the result.
 */
export function openProgramById(id: number): BpfProgram {
  if (!Number.isInteger(id) || id <= 0 || id > 0xffffffff) throw new BpfError('BPF_ERR_INVALID_ARGUMENT', `program id must be an integer in [1, 2^32), got ${id}`);
  const fd = getLibbpf().bpf_prog_get_fd_by_id(id) as number;
  if (fd < 0) throw BpfError.fromErrno(fd, `bpf_prog_get_fd_by_id(${id})`);
  return fromOwnedFd(fd, undefined);
}

/** Wraps a program fd; the fd is duplicated, so the caller keeps ownership of its own fd. */
export function programFromFd(fd: number): BpfProgram {
  return fromOwnedFd(dupFd(fd), undefined);
}
