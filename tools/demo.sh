#!/usr/bin/env bash
# Netfence's main job on its embedded default, as a demo a new user can watch:
# the daemon with the built-in control plane and a demo policy, in a lab of
# network namespaces with no route out of the machine:
#
#   nfdemo-wl (workload) --veth-- nfdemo-host (netfenced runs here) --veth-- nfdemo-net ("internet")
#   10.200.1.2            10.200.1.1 | 10.200.2.1                       10.200.2.2 + 203.0.113.0/24, 198.51.100.53
#
# The filter sits on the host end of the workload's veth (TC ingress). Every
# step prints what happened. Everything is removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FAILS=0

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '  \033[32mas expected:\033[0m %s\n' "$*"; }
bad() {
  printf '  \033[31mUNEXPECTED:\033[0m %s\n' "$*"
  FAILS=$((FAILS + 1))
}

if [ "$(id -u)" != 0 ]; then
  echo "The demo needs root (network namespaces and eBPF). Run: sudo bash tools/demo.sh" >&2
  exit 1
fi

bold "Setting up what is missing (system packages, npm ci, build)"
bash tools/setup.sh
[ -d node_modules/nx ] || npm ci --no-audit --no-fund
if [ "${NFDEMO_SKIP_BUILD:-}" != 1 ]; then
  NX_DAEMON=false npx nx run-many -t build --outputStyle=static >/tmp/nfdemo-build.log 2>&1 || {
    cat /tmp/nfdemo-build.log
    exit 1
  }
fi
echo "  built"

# Refuse to build the lab if one of its ranges overlaps a route of this machine.
node -e 'require("./tools/lab/dist/index.js").assertLabRangesSafe()'

TMP=$(mktemp -d /tmp/nfdemo.XXXXXX)
NS_WL=nfdemo-wl
NS_HOST=nfdemo-host
NS_NET=nfdemo-net
PIDS=()
# Runs a command in a lab namespace (network only: bpffs and cgroup mounts stay).
# Background processes call nsenter directly, so $! is the process itself.
in_ns() {
  local ns=$1
  shift
  nsenter --net=/run/netns/"$ns" -- "$@"
}
NETFENCED=(node "$ROOT/packages/cli/dist/main.js" --socket "$TMP/netfence.sock")

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in $NS_WL $NS_HOST $NS_NET; do ip netns del "$ns" 2>/dev/null; done
  rm -rf /sys/fs/bpf/nfdemo "$TMP"
  [ -n "${CG:-}" ] && [ -d "$CG" ] && rmdir "$CG" 2>/dev/null
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup_stale() { for ns in $NS_WL $NS_HOST $NS_NET; do ip netns del "$ns" 2>/dev/null || true; done; }
cleanup_stale

bold "Building the lab (namespaces, veths, a fake internet)"
for ns in $NS_WL $NS_HOST $NS_NET; do
  ip netns add "$ns"
  in_ns "$ns" ip link set lo up
done
ip link add nfdemo-h1 netns $NS_HOST type veth peer name nfdemo-w1 netns $NS_WL
ip link add nfdemo-h2 netns $NS_HOST type veth peer name nfdemo-n2 netns $NS_NET
in_ns $NS_WL ip addr add 10.200.1.2/24 dev nfdemo-w1
in_ns $NS_HOST ip addr add 10.200.1.1/24 dev nfdemo-h1
in_ns $NS_HOST ip addr add 10.200.2.1/24 dev nfdemo-h2
in_ns $NS_NET ip addr add 10.200.2.2/24 dev nfdemo-n2
for a in 203.0.113.10 203.0.113.11 203.0.113.20 203.0.113.30 198.51.100.53; do in_ns $NS_NET ip addr add $a/32 dev lo; done
in_ns $NS_WL ip link set nfdemo-w1 up
in_ns $NS_HOST ip link set nfdemo-h1 up
in_ns $NS_HOST ip link set nfdemo-h2 up
in_ns $NS_NET ip link set nfdemo-n2 up
for r in 203.0.113.0/24 198.51.100.0/24 10.200.2.0/24; do in_ns $NS_WL ip route add $r via 10.200.1.1; done
for r in 203.0.113.0/24 198.51.100.0/24; do in_ns $NS_HOST ip route add $r via 10.200.2.2; done
in_ns $NS_NET ip route add 10.200.1.0/24 via 10.200.2.1
in_ns $NS_HOST sysctl -qw net.ipv4.ip_forward=1
echo "  workload 10.200.1.2 -> host 10.200.1.1 -> internet 203.0.113.0/24 (no default route anywhere)"

# The fake internet: an authoritative DNS server, a rogue resolver, web servers.
nsenter --net=/run/netns/$NS_NET -- dnsmasq --no-daemon --user=root --no-resolv --no-hosts --bind-interfaces --listen-address=10.200.2.2 --port=53 \
  --address=/pypi.org/203.0.113.10 --address=/files.pythonhosted.org/203.0.113.11 --address=/evil.example/203.0.113.20 \
  --log-queries --log-facility="$TMP/upstream-queries.log" 2>/dev/null &
PIDS+=($!)
nsenter --net=/run/netns/$NS_NET -- dnsmasq --no-daemon --user=root --no-resolv --no-hosts --bind-interfaces --listen-address=198.51.100.53 --port=53 \
  --address=/#/203.0.113.20 --log-facility=/dev/null 2>/dev/null &
PIDS+=($!)
for pair in 203.0.113.10:pypi 203.0.113.11:pythonhosted 203.0.113.20:evil 203.0.113.30:static-partner; do
  nsenter --net=/run/netns/$NS_NET -- node tools/demo/http-server.js "${pair%%:*}" "${pair##*:}" &
  PIDS+=($!)
done
echo "  DNS 10.200.2.2 (pypi.org, files.pythonhosted.org, evil.example), rogue resolver 198.51.100.53, web servers"

bold "Starting netfenced with the embedded control plane (policy: tools/demo/policy.yaml)"
cp tools/demo/policy.yaml "$TMP/policy.yaml"
sed 's/^/  | /' "$TMP/policy.yaml"
cat >"$TMP/netfence.yaml" <<EOF
socket: $TMP/netfence.sock
data_dir: $TMP/data
bpffs_root: /sys/fs/bpf/nfdemo
policy_file: $TMP/policy.yaml
detach_on_exit: true
log_level: info
dns:
  listen_addr: 10.200.1.1
  upstream: ["10.200.2.2:53"]
EOF
nsenter --net=/run/netns/$NS_HOST -- node packages/cli/dist/main.js start --config "$TMP/netfence.yaml" 2>"$TMP/daemon.log" &
DAEMON_PID=$!
PIDS+=($DAEMON_PID)
for _ in $(seq 1 100); do
  [ -S "$TMP/netfence.sock" ] && break
  sleep 0.1
done
"${NETFENCED[@]}" status || {
  cat "$TMP/daemon.log"
  exit 1
}

bold "Attaching the filter to the workload's veth (host end: TC ingress)"
ATTACH=$("${NETFENCED[@]}" attach --interface nfdemo-h1 --metadata tenant=demo --json)
echo "  $ATTACH"
DNS_ADDR=$(node -p "JSON.parse(process.argv[1]).dnsAddress" "$ATTACH")
DNS_HOST=${DNS_ADDR%:*}
DNS_PORT=${DNS_ADDR##*:}
echo "  the workload's resolver is $DNS_ADDR"

dig_wl() { in_ns $NS_WL dig +time=1 +tries=1 "$@" 2>&1 || true; }
http_get() { printf 'GET / HTTP/1.0\r\n\r\n' | in_ns $NS_WL nc -w 2 "$1" 80 2>/dev/null | tail -1 || true; }

bold "1. The workload resolves an allowed name and reaches it"
ANS=$(dig_wl @"$DNS_HOST" -p "$DNS_PORT" pypi.org A +short)
echo "  dig pypi.org -> ${ANS:-nothing}"
[ "$ANS" = 203.0.113.10 ] && ok "pypi.org resolved through the filter" || bad "pypi.org did not resolve"
BODY=$(http_get 203.0.113.10)
echo "  GET http://pypi.org/ -> ${BODY:-no answer}"
[ "$BODY" = "hello from pypi" ] && ok "the answer's address was allowed before the answer was released" || bad "pypi.org unreachable"

bold "2. A blocked name is refused and never reaches the upstream"
for name in evil.example ads.pypi.org; do
  ST=$(dig_wl @"$DNS_HOST" -p "$DNS_PORT" "$name" A | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
  echo "  dig $name -> ${ST:-no answer}"
  [ "$ST" = REFUSED ] && ok "$name refused" || bad "$name got ${ST:-no answer}"
done
if grep -q "evil.example" "$TMP/upstream-queries.log" 2>/dev/null; then bad "the upstream saw evil.example"; else ok "the upstream's query log has no evil.example"; fi

bold "3. The workload cannot reach a blocked IP directly"
BODY=$(http_get 203.0.113.20)
echo "  GET http://203.0.113.20/ -> ${BODY:-no answer (dropped)}"
[ -z "$BODY" ] && ok "dropped before it left the host" || bad "reached 203.0.113.20"

bold "4. The workload cannot use another resolver"
for r in 198.51.100.53 10.200.2.2; do
  OUT=$(dig_wl @"$r" pypi.org A +short | grep -v '^;' | grep -v '^$' || true)
  echo "  dig @$r pypi.org -> ${OUT:-no answer (timed out)}"
  if [ -z "$OUT" ]; then ok "DNS to $r dropped"; else bad "resolver $r answered"; fi
done

bold "5. An open connection is cut when its rule is removed live"
echo "  the workload streams from 203.0.113.30 (allowed by 'ALLOW 203.0.113.30/32'); after 3 s the rule leaves the policy file"
nsenter --net=/run/netns/$NS_WL -- node tools/demo/stream-client.js 203.0.113.30 10 &
CLIENT=$!
sleep 3
sed -i '/ALLOW 203.0.113.30\/32/d' "$TMP/policy.yaml"
echo "  -- policy file edited: 'ALLOW 203.0.113.30/32' removed --"
if wait $CLIENT; then bad "the connection survived the rule's removal"; else ok "the connection stopped once the control plane pushed RemoveCIDR"; fi

bold "6. A cgroup workload's DNS is redirected to its filter, whatever resolver it asks"
CG_ROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
CG="$CG_ROOT/nfdemo-job"
mkdir -p "$CG"
CG_ATTACH=$("${NETFENCED[@]}" attach --cgroup "$CG" --metadata tenant=demo --json)
echo "  a process in $CG (cgroup attachment $(node -p "JSON.parse(process.argv[1]).id" "$CG_ATTACH")) asks the rogue resolver 198.51.100.53 directly:"
in_cg() { sh -c 'echo $$ > "$0/cgroup.procs" && exec nsenter --net=/run/netns/'"$NS_HOST"' -- "$@"' "$CG" "$@"; }
ANS=$(in_cg dig +time=2 +tries=1 @198.51.100.53 pypi.org A +short 2>&1 | grep -v '^;' || true)
echo "  dig @198.51.100.53 pypi.org -> ${ANS:-no answer}"
[ "$ANS" = 203.0.113.10 ] && ok "answered by its filter with the real address (the rogue resolver says 203.0.113.20 to everything)" || bad "got ${ANS:-no answer}"
ST=$(in_cg dig +time=2 +tries=1 @198.51.100.53 evil.example A 2>&1 | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
echo "  dig @198.51.100.53 evil.example -> ${ST:-no answer}"
[ "$ST" = REFUSED ] && ok "refused by its filter, not answered by the rogue resolver" || bad "got ${ST:-no answer}"

bold "What netfenced saw"
"${NETFENCED[@]}" list
echo "  drops logged by the daemon (last 5):"
grep '"event":"drop"' "$TMP/daemon.log" | tail -5 | node -e '
  const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(Boolean);
  for (const l of lines) { const j = JSON.parse(l); console.log(`    ${j.msg}: ${j.dst}:${j.port} proto ${j.proto} (${j.reason})`); }'

bold "Stopping netfenced (detach_on_exit: filters removed)"
kill -TERM $DAEMON_PID
wait $DAEMON_PID || true
if [ "$FAILS" -eq 0 ]; then
  printf '\n\033[32mDemo complete: every step behaved as expected.\033[0m\n'
else
  printf '\n\033[31mDemo finished with %d unexpected result(s); daemon log:\033[0m\n' "$FAILS"
  tail -40 "$TMP/daemon.log"
  exit 1
fi
