#!/usr/bin/env bash
# Lints the netfence.v1 protos and regenerates proto/src/gen: fails when the
# committed generated code differs from what the .proto files produce.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
npx buf generate
if ! git diff --exit-code --stat -- proto/src/gen || [ -n "$(git status --porcelain -- proto/src/gen)" ]; then
  echo "proto/src/gen is out of date: run 'npm run proto:generate' and commit the result" >&2
  git status --porcelain -- proto/src/gen >&2
  exit 1
fi
echo "proto: lint clean, generated code up to date"
