/** Hands out DNS ports from [min, max], never one already in use by an attachment. */
export interface PortPool {
  /** Candidates in order, starting after the last one handed out. */
  candidates(): number[];
  reserve(port: number): void;
  release(port: number): void;
}

export function createPortPool(min: number, max: number): PortPool {
  const used = new Set<number>();
  let next = min;
  return {
    candidates() {
      const out: number[] = [];
      for (let i = 0; i <= max - min; i++) {
        const p = min + ((next - min + i) % (max - min + 1));
        if (!used.has(p)) out.push(p);
      }
      return out;
    },
    reserve(port) {
      used.add(port);
      next = port + 1 > max ? min : port + 1;
    },
    release(port) {
      used.delete(port);
    },
  };
}
