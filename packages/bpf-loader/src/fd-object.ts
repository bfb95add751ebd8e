import { unlinkSync } from 'node:fs';
import { BpfError } from './errors';
import { check, closeFd, fdFinalizer, getLibbpf } from './libbpf';

/** Removes a pin; a pin that is already gone is fine. */
export function unlinkPin(p: string): void {
  try {
    unlinkSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw BpfError.from(e);
  }
}

/**
 * What maps, programs and links share: an fd this object owns (closed by close(), or by the
 * finalizer as a safety net), and a pin in bpffs it knows about.
 */
export abstract class KernelFdObject implements Disposable {
  #fd: number;
  #pinnedPath: string | undefined;

  protected constructor(fd: number, pinnedPath: string | undefined) {
    this.#fd = fd;
    this.#pinnedPath = pinnedPath;
    fdFinalizer.register(this, fd, this);
  }

  /** How errors name this object, e.g. `map 'allow_v4'`. */
  protected abstract get label(): string;

  get fd(): number {
    return this.#fd;
  }
  get closed(): boolean {
    return this.#fd < 0;
  }
  get pinnedPath(): string | undefined {
    return this.#pinnedPath;
  }

  /** The fd; BPF_ERR_CLOSED once closed. */
  protected live(): number {
    if (this.#fd < 0) throw new BpfError('BPF_ERR_CLOSED', `${this.label} is closed`);
    return this.#fd;
  }

  /** bpf_obj_pin at `path` (the directory must exist in a bpffs). */
  pin(path: string): void {
    check(getLibbpf().bpf_obj_pin(this.live(), path) as number, `bpf_obj_pin(${this.label}, ${path})`);
    this.#pinnedPath = path;
  }

  /** Removes the pin this object knows about (no-op when not pinned). */
  unpin(): void {
    const p = this.#pinnedPath;
    if (p === undefined) return;
    unlinkPin(p);
    this.#pinnedPath = undefined;
  }

  /** Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    fdFinalizer.unregister(this);
    closeFd(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
