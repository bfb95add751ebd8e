import { koffi } from './koffi';
import { MapType, mapTypeName } from './constants';
import { BpfError } from './errors';
import { getLibbpf, lastErrno } from './libbpf';
import type { BpfMap, RingBufferConsumer, RingBufferOptions } from './types';

const live = new Set<RingBufferImpl>();

class RingBufferImpl implements RingBufferConsumer {
  #rb: unknown;
  #cb: unknown;
  #timer: NodeJS.Timeout | undefined;
  #count = 0;
  #error: unknown;

  constructor(
    map: BpfMap,
    private readonly onRecord: (record: Buffer) => void,
    private readonly opts: RingBufferOptions,
  ) {
    const lib = getLibbpf();
    // koffi.register: libbpf keeps this pointer until ring_buffer__free.
    this.#cb = koffi.register((_ctx: unknown, data: unknown, size: number | bigint): number => {
      try {
        const record = Buffer.from(koffi.view(data, Number(size))); // a copy, safe after return
        this.#count++;
        this.onRecord(record);
        return 0;
      } catch (e) {
        this.#error = e;
        return -1; // stop this consume call; reported after it returns
      }
    }, koffi.pointer(lib.sampleFnType));
    const rb: unknown = lib.ring_buffer__new(map.fd, this.#cb, null, null);
    if (rb === null) {
      const errno = lastErrno();
      koffi.unregister(this.#cb as bigint);
      throw BpfError.fromErrno(errno, `ring_buffer__new(${map.name})`);
    }
    this.#rb = rb;
    live.add(this);
    const interval = opts.intervalMs ?? 25;
    this.#timer = setInterval(() => {
      try {
        this.consume();
      } catch (e) {
        this.opts.onError?.(e);
      }
    }, interval);
    this.#timer.unref();
  }

  get closed(): boolean {
    return this.#rb === undefined;
  }

  consume(): number {
    if (this.#rb === undefined) throw new BpfError('BPF_ERR_CLOSED', 'ring buffer consumer is closed');
    this.#count = 0;
    this.#error = undefined;
    const r = getLibbpf().ring_buffer__consume(this.#rb) as number;
    const n = this.#count;
    if (this.#error !== undefined) {
      const e = this.#error;
      this.#error = undefined;
      throw e;
    }
    if (r < 0) throw BpfError.fromErrno(r, 'ring_buffer__consume');
    return n;
  }

  close(): void {
    if (this.#rb === undefined) return;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    getLibbpf().ring_buffer__free(this.#rb);
    this.#rb = undefined;
    koffi.unregister(this.#cb as bigint);
    live.delete(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Consumes a RINGBUF map: every record is copied into a Buffer and passed to `onRecord` on the
 * main thread, from ring_buffer__consume on an unref'd `intervalMs` timer (never a blocking
 * poll). A throwing callback stops that round; the error goes to `opts.onError` (timer) or is
 * thrown from consume(). The caller owns the consumer (close() it); the map is not closed.
 */
export function createRingBufferConsumer(map: BpfMap, onRecord: (record: Buffer) => void, opts: RingBufferOptions = {}): RingBufferConsumer {
  if (map.closed) throw new BpfError('BPF_ERR_CLOSED', `map '${map.name}' is closed`);
  if (map.type !== MapType.RINGBUF) throw new BpfError('BPF_ERR_TYPE_MISMATCH', `map '${map.name}' is ${mapTypeName(map.type)}, not RINGBUF`);
  return new RingBufferImpl(map, onRecord, opts);
}
