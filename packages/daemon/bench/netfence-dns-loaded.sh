#!/bin/bash
# netfence-dns-loaded.sh - the shared peer benchmark's netfenced DUT (../shared/bench/netfence-dns.sh),
# loaded: 200 attachments, and 10,000 addresses already learned by the measured one.
#
#   usage (from the project root, built):  packages/daemon/bench/netfence-dns-loaded.sh [ROUNDS]
#
# Like netfence-dns.sh's "nfd": netfenced with its embedded control plane, the measured cgroup
# attachment (empty cgroup nfperf-dns) in allowlist mode with "*.bench.test" allowed, forwarding to
# dns.sh's upstream (127.0.0.77:25301), each answer written into the pinned allow map before release.
# Before measuring: 199 more cgroup attachments (nfperf-dns-1..199, each with its own DNS server),
# then the daemon is stopped (pins stay), 10,000 learned addresses (p0..p9999.bench.test ->
# 10.78.x.y, expiring in 2 h) are added to the measured attachment's saved record, and the daemon
# is started again: it restores them into the kernel map through its restart path. Then dns.sh
# runs with this DUT ("nfd_loaded") beside its dnsmasq targets, in one rotation; with PLAIN=1
# (default) also beside a second netfenced set up as netfence-dns.sh's "nfd" (one attachment,
# nothing learned beforehand; its own data_dir, pins and ports), so both share the rotation.
# Everything it starts is stopped at exit (a graceful stop with detach_on_exit removes the filters).
set -uo pipefail
HERE=$(dirname "$(readlink -f "$0")")
ROOT=$(pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
CLI=$ROOT/packages/cli/dist/main.js
[ -f "$CLI" ] || { echo "run from a built project checkout" >&2; exit 1; }
[ -x "$BENCH/dns.sh" ] || { echo "no $BENCH/dns.sh (set BENCH=)" >&2; exit 1; }
EXTRA=${EXTRA:-199}; PRELEARNED=${PRELEARNED:-10000}; PLAIN=${PLAIN:-1}
W=$(mktemp -d /tmp/nfperf.XXXX); DPID=; PPID_=
CGROOT=$(awk '$3=="cgroup2"{print $2; exit}' /proc/self/mounts); CG=$CGROOT/nfperf-dns
nf() { node "$CLI" --socket "$W/nf.sock" "$@"; }
start_daemon() { # config
	node "$CLI" start --config "$1" >>"$W/nfd.log" 2>&1 & DPID=$!
	for i in $(seq 150); do nf status >/dev/null 2>&1 && return 0; sleep 0.2; done
	echo "netfenced did not start" >&2; cat "$W/nfd.log" >&2; exit 1
}
stop_daemon() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=; }
cleanup() {
	stop_daemon # detach_on_exit: true in the final config
	[ -n "$PPID_" ] && kill "$PPID_" 2>/dev/null && wait "$PPID_" 2>/dev/null
	sleep 0.5
	rmdir "$CG" "$CG"-* "$CGROOT/nfperf-plain" 2>/dev/null; rm -rf /sys/fs/bpf/nfperf /sys/fs/bpf/nfperf-plain "$W"
}
trap cleanup EXIT
mkdir -p "$CG"; for i in $(seq "$EXTRA"); do mkdir -p "$CG-$i"; done
cat >"$W/policy.yaml" <<'YAML'
version: 1
policies:
  - name: bench
    match: { tenant: bench }
    mode: allowlist
    dns: { mode: allowlist }
    rules:
      - ALLOW *.bench.test
YAML
config() { # detach_on_exit [name port_min port_max]
	cat <<YAML
socket: $W/${2:-nf}.sock
data_dir: $W/${2:-data}
log_level: warn
bpffs_root: /sys/fs/bpf/nfperf${2:+-$2}
policy_file: $W/policy.yaml
detach_on_exit: $1
dns:
  listen_addr: 127.0.0.1
  port_min: ${3:-25310}
  port_max: ${4:-25599}
  upstream: [127.0.0.77:25301]
YAML
}
config false >"$W/config-load.yaml"; config true >"$W/config.yaml"
start_daemon "$W/config-load.yaml"
out=$(nf attach --cgroup "$CG" --metadata tenant=bench --json) || { echo "attach failed: $out" >&2; exit 1; }
ATT=$(jq -r .id <<<"$out"); DNS=$(jq -r '.dnsAddress // .dns_address' <<<"$out")
t0=$SECONDS
seq "$EXTRA" | xargs -P 4 -I{} node "$CLI" --socket "$W/nf.sock" attach --cgroup "$CG-{}" --metadata tenant=bench --json >/dev/null || { echo "extra attaches failed" >&2; exit 1; }
echo "# nfd_loaded: $((EXTRA + 1)) attachments in $((SECONDS - t0)) s; measured $ATT dns $DNS" >&2
stop_daemon
node -e '
const fs = require("fs"); const [file, n] = [process.argv[1], +process.argv[2]];
const r = JSON.parse(fs.readFileSync(file, "utf8")); const exp = Date.now() + 2 * 3600e3;
for (let i = 0; i < n; i++) r.policy.learned.push({ address: `10.78.${i >> 8}.${i & 255}/32`, name: `p${i}.bench.test`, expiresAt: exp });
fs.writeFileSync(file, JSON.stringify(r));' "$W/data/attachments/$ATT.json" "$PRELEARNED" || exit 1
start_daemon "$W/config.yaml"
m=$(find /sys/fs/bpf/nfperf -path "*$ATT*" -name rules_v4 | head -1)
echo "# nfd_loaded: rules_v4 entries of the measured attachment after the restart: $(bpftool -j map dump pinned "$m" | jq length); saved attachment records: $(ls "$W/data/attachments" | grep -c "json$")" >&2
DUTS=(--dut "nfd_loaded=$DNS")
if [ "$PLAIN" = 1 ]; then
	config true plain 25610 25619 >"$W/config-plain.yaml"; mkdir -p "$CGROOT/nfperf-plain"
	node "$CLI" start --config "$W/config-plain.yaml" >>"$W/plain.log" 2>&1 & PPID_=$!
	for i in $(seq 150); do node "$CLI" --socket "$W/plain.sock" status >/dev/null 2>&1 && break; sleep 0.2; done
	pout=$(node "$CLI" --socket "$W/plain.sock" attach --cgroup "$CGROOT/nfperf-plain" --metadata tenant=bench --json) || { echo "plain attach failed: $pout" >&2; exit 1; }
	DUTS+=(--dut "nfd=$(jq -r '.dnsAddress // .dns_address' <<<"$pout")")
fi
"$BENCH/dns.sh" "${DUTS[@]}" "${1:-3}"
echo "# nfd_loaded: entries in its pinned rules_v4 trie after the run: $(bpftool -j map dump pinned "$m" | jq length)"
