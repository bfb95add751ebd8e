#!/usr/bin/env bash
# Installs the system packages Netfence builds and tests with (Debian; systemd for
# systemd-analyze, which the packaging tests run: it does not have to be PID 1), and
# mounts bpffs if needed. Safe to run again.
set -euo pipefail
pkgs=(clang llvm gcc libc6-dev libbpf-dev libbpf1 bpftool iproute2 iputils-ping netcat-openbsd dnsutils knot-dnsutils dnsperf iperf3 dnsmasq util-linux procps python3 openssl postgresql systemd)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# dnsmasq's own service must not grab port 53 on the host; tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now dnsmasq >/dev/null 2>&1 || true; fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
