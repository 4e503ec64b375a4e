#!/usr/bin/env bash
# Fails when src/protocol/generated differs from what tools/gen-schema.sh
# produces from schema/*.fbs (run by .ci/run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/tools/gen-schema.sh" "$tmp"
if ! diff -r --exclude=mod.rs "$tmp" "$root/src/protocol/generated"; then
  echo "src/protocol/generated is stale: run tools/gen-schema.sh and commit the result" >&2
  exit 1
fi
