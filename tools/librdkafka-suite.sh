#!/usr/bin/env bash
# librdkafka's own regression suite (its tests/ directory, v2.15.1) built from
# the source the npm package @confluentinc/kafka-javascript@1.10.1 ships under
# deps/librdkafka: registry packages only, nothing fetched by hand.
#
#   tools/librdkafka-suite.sh build     fetch and build into target/librdkafka
#   tools/librdkafka-suite.sh path      print the test-runner's directory
#
# tests/librdkafka_suite.rs runs the allowlist against a broker it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG="@confluentinc/kafka-javascript@1.10.1"
ROOT="$PWD/target/librdkafka"
SRC="$ROOT/package/deps/librdkafka"

case "${1:-}" in
build)
  if [ -x "$SRC/tests/test-runner" ]; then
    echo "librdkafka test-runner already built in $SRC/tests"
    exit 0
  fi
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  (cd "$ROOT" && npm pack --silent "$PKG" >/dev/null && tar xzf confluentinc-kafka-javascript-*.tgz)
  cd "$SRC"
  # No GSSAPI or curl (OIDC): neither is under test and their headers are
  # not on the machine; SSL, zlib, SCRAM come from the system.
  ./configure --disable-gssapi --disable-curl >"$ROOT/configure.log" 2>&1 || {
    tail -30 "$ROOT/configure.log"
    exit 1
  }
  make -j2 libs >"$ROOT/make.log" 2>&1 || {
    tail -30 "$ROOT/make.log"
    exit 1
  }
  make -j2 -C tests build >>"$ROOT/make.log" 2>&1 || {
    tail -30 "$ROOT/make.log"
    exit 1
  }
  echo "built $SRC/tests/test-runner"
  ;;
path)
  echo "$SRC/tests"
  ;;
*)
  echo "usage: $0 build|path" >&2
  exit 2
  ;;
esac
