// Per-packet cost of programs through BPF_PROG_TEST_RUN, in interleaved rounds: each round runs
// every program once (`repeat` runs of the same frame; the kernel reports the mean), starting at
// a different program each round, so machine noise lands on all of them alike; the figure of a
// program is the median of its rounds.
import type { BpfProgram } from '@netfence/bpf-loader';

export interface Timed {
  readonly key: string;
  readonly prog: BpfProgram;
  /** Whether a return value is the program's "allowed" path. */
  readonly allowed: (retval: number) => boolean;
  /** Floor programs allow everything: no "not allowed" check. */
  readonly allowsAll?: boolean;
}

/**
 * Before timing: every program takes its allowed path on `frame` and (unless it allows all) its
 * not-allowed path on `refused`, so the timed runs really go through the look-up and its hit.
 */
export function checkVerdicts(progs: readonly Timed[], frame: Buffer, refused: Buffer): void {
  for (const p of progs) {
    const ok = p.prog.testRun({ data: frame }).retval;
    if (!p.allowed(ok)) throw new Error(`${p.key} (${p.prog.name}) did not take its allowed path on the benchmark frame (retval ${ok})`);
    if (p.allowsAll) continue;
    const no = p.prog.testRun({ data: refused }).retval;
    if (p.allowed(no)) throw new Error(`${p.key} (${p.prog.name}) let a packet to a not-allowed address through (retval ${no}): it is not looking the address up`);
  }
}

/** The median of a non-empty list (NaN for an empty one). */
export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/**
 * ns per packet of each program in each of `rounds` interleaved rounds of `repeat` runs (index =
 * round); checks every run's verdict. `between` runs between rounds (the caller's interruption check).
 */
export async function timeInterleaved(progs: readonly Timed[], frame: Buffer, rounds: number, repeat: number, between: () => Promise<void>): Promise<Map<string, number[]>> {
  const samples = new Map<string, number[]>(progs.map((p) => [p.key, []]));
  for (let r = 0; r < rounds; r++) {
    await between();
    for (let i = 0; i < progs.length; i++) {
      const p = progs[(i + r) % progs.length] as Timed;
      const res = p.prog.testRun({ data: frame, repeat });
      if (!p.allowed(res.retval)) throw new Error(`${p.key} (${p.prog.name}) changed its verdict during timing (retval ${res.retval})`);
      samples.get(p.key)?.push(res.durationNs);
    }
  }
  return samples;
}
