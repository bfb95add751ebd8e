#!/usr/bin/env bash
# The whole test suite: protos (lint + regenerate, fail on drift), then build,
# type-check and test every package through nx (kernel tests included), then
# pack every package and check its exports. Ends with one summary line
# "N passed, N failed" summed over every jest run.
set -uo pipefail
cd "$(dirname "$0")/.."
export NX_DAEMON=false
log=$(mktemp /tmp/nf-test.XXXXXX)
trap 'rm -f "$log"' EXIT

bash tools/check-proto.sh || exit 1
node tools/check-arrows.js || exit 1
npx nx run-many -t build typecheck test --parallel=1 --outputStyle=stream 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then
  bash tools/check-packages.sh || rc=1
fi

# Sum the per-package jest summaries ("Tests: 3 failed, 1 skipped, 40 passed, 44 total").
read -r passed failed skipped < <(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E 'Tests: +[0-9]' | awk '
  { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
  END { print p+0, f+0, s+0 }')
[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1 # a build, type-check or pack failure counts too
echo
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$rc"
