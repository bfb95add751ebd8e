#!/usr/bin/env bash
# Builds the eBPF objects of @netfence/bpf-programs with pinned flags.
#   scripts/build-bpf.sh [OUT_DIR]   (default: <package>/bpf)
# vmlinux.h is generated from the running kernel's BTF into a build dir
# (never committed: ~3 MB). Needs clang (14+) and bpftool.
set -euo pipefail

PKG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$(realpath -m "${1:-$PKG_DIR/bpf}")"
BUILD_DIR="$(realpath -m "${NETFENCE_BPF_BUILD_DIR:-$PKG_DIR/build}")"
BTF="${NETFENCE_VMLINUX_BTF:-/sys/kernel/btf/vmlinux}"
CLANG="${CLANG:-clang}"

CFLAGS=(-O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu)

mkdir -p "$OUT_DIR" "$BUILD_DIR"
if [[ ! -s "$BUILD_DIR/vmlinux.h" || "$BTF" -nt "$BUILD_DIR/vmlinux.h" ]]; then
  bpftool btf dump file "$BTF" format c > "$BUILD_DIR/vmlinux.h.tmp"
  mv "$BUILD_DIR/vmlinux.h.tmp" "$BUILD_DIR/vmlinux.h"
fi

# BTF line info records each source file's name and the text of its lines.
# Compiling from the package dir with relative names and the dir mapped to
# "." keeps the checkout's location out of the bytes: a clone anywhere
# builds the same objects (and clang still finds the files for line text).
cd "$PKG_DIR"
for name in tc_filter xdp_filter cgroup_filter sever bench_trivial; do
  "$CLANG" "${CFLAGS[@]}" -ffile-prefix-map="$PKG_DIR"=. -I"$BUILD_DIR" -Isrc \
    -c "src/$name.bpf.c" -o "$OUT_DIR/$name.bpf.o.tmp"
  # DWARF off (BTF and CO-RE relocations stay): 140 KB instead of 800 KB
  "${LLVM_STRIP:-llvm-strip}" -g "$OUT_DIR/$name.bpf.o.tmp"
  mv "$OUT_DIR/$name.bpf.o.tmp" "$OUT_DIR/$name.bpf.o"
done

# Test/benchmark variant of the cgroup object that reads slot 1 instead of its cgroup storage
# (BPF_PROG_TEST_RUN zeroes that storage on every run). Kept in the build dir: never shipped.
"$CLANG" "${CFLAGS[@]}" -DNF_FIXED_SLOT=1 -ffile-prefix-map="$PKG_DIR"=. -I"$BUILD_DIR" -Isrc \
  -c src/cgroup_filter.bpf.c -o "$BUILD_DIR/cgroup_filter_fixed_slot.bpf.o"
"${LLVM_STRIP:-llvm-strip}" -g "$BUILD_DIR/cgroup_filter_fixed_slot.bpf.o"
