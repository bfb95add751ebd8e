// Builds the benchmark's own BPF programs (the reference and the map-layout programs) into a
// temp dir with the flags scripts/build-bpf.sh uses for the shipped objects. They are never
// shipped, so they are built on every run instead of committed.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const CFLAGS = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I/usr/include/x86_64-linux-gnu'];

/** Compiles bench/<name>.bpf.c to <outDir>/<name>.bpf.o (then llvm-strip -g, as the build does); returns the path. */
export function buildBenchObject(name: 'minimal-lpm' | 'layout_lpm', outDir: string): string {
  const out = join(outDir, `${name}.bpf.o`);
  try {
    execFileSync(process.env.CLANG ?? 'clang', [...CFLAGS, '-c', join(__dirname, `${name}.bpf.c`), '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync(process.env.LLVM_STRIP ?? 'llvm-strip', ['-g', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new Error(`building bench/${name}.bpf.c failed: ${err.stderr?.toString() ?? String(e)}`, { cause: e });
  }
  return out;
}
