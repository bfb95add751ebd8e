#!/usr/bin/env bash
# Packs every publishable package (npm pack), unpacks the tarballs into a
# scratch node_modules and checks that each `exports` entry resolves and loads
# on this Node, from the packed files only. Run after `nx run-many -t build`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scratch=$(mktemp -d /tmp/nf-pack.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/node_modules/@netfence"
pkgs=(proto $(ls -d packages/*/ | sed 's#/$##'))
for dir in "${pkgs[@]}"; do
  [ -f "$dir/package.json" ] || continue
  if [ "$(node -p "require('./$dir/package.json').private === true")" = true ]; then continue; fi
  name=$(node -p "require('./$dir/package.json').name")
  (cd "$dir" && npm pack --silent --pack-destination "$scratch" >/dev/null)
  tgz=$(ls -t "$scratch"/*.tgz | head -1)
  dest="$scratch/node_modules/$name"
  mkdir -p "$dest" && tar -xzf "$tgz" -C "$dest" --strip-components=1 && rm "$tgz"
done
for dir in "${pkgs[@]}"; do
  [ -f "$dir/package.json" ] || continue
  if [ "$(node -p "require('./$dir/package.json').private === true")" = true ]; then continue; fi
  name=$(node -p "require('./$dir/package.json').name")
  (cd "$scratch" && NODE_PATH="$root/node_modules" node -e '
    const name = process.argv[1];
    const pkg = require(name + "/package.json");
    if (!pkg.engines || !pkg.engines.node) throw new Error(name + ": no engines.node");
    for (const [sub, target] of Object.entries(pkg.exports)) {
      if (sub === "./package.json") continue;
      const spec = sub === "." ? name : name + sub.slice(1);
      const t = typeof target === "string" ? { default: target } : target;
      if (t.types) require("fs").accessSync(require("path").join("node_modules", name, t.types));
      const mod = require(spec);
      if (Object.keys(mod).length === 0) throw new Error(spec + " exports nothing");
    }
    for (const bin of Object.values(typeof pkg.bin === "string" ? { x: pkg.bin } : pkg.bin || {})) require("fs").accessSync(require("path").join("node_modules", name, bin));
    console.log("ok  " + name + " (" + Object.keys(pkg.exports).length + " exports)");
  ' "$name")
done
