#!/usr/bin/env bash
# Builds librdkafka's examples/rdkafka_performance (a produce/consume load
# generator) from the librdkafka sources bundled in the npm package
# @confluentinc/kafka-javascript (deps/librdkafka), statically linked, with
# only what a stock Debian bookworm has (no SSL/SASL/zstd/curl; builtin lz4;
# zlib only when its headers are installed).
#
# usage: tools/rdkafka-perf.sh [OUT_DIR]   (default: target/rdkafka-perf)
# env:   JOBS (make -j, default 2)
#
# Idempotent: if the binary already exists nothing is rebuilt. The last line
# printed is the binary's path, so: bin=$(tools/rdkafka-perf.sh | tail -n1)
#
# Version pin: 1.0.0 (librdkafka 2.6.1) is the newest release whose npm
# tarball still ships deps/librdkafka/examples/; from 1.2.0 on (checked up to
# 1.10.1, librdkafka 2.15.1) the package drops examples/ and holds only src/.
set -euo pipefail

version=1.0.0
# dist.integrity of that version on registry.npmjs.org (sha512, base64)
integrity=sha512-rMcoeTnQ3YtyFaJ5CsHZvwRC7SCleIk6fZ5sNh5cDbZa2ocuukyO5J5pIhyrUW1FwHm/sauLuXPgwS8xrfiBDQ==

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/rdkafka-perf}
jobs=${JOBS:-2}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rdk=$out/package/deps/librdkafka
bin=$rdk/examples/rdkafka_performance

if [[ -x $bin ]]; then
  echo "already built: $bin" >&2
  echo "$bin"
  exit 0
fi

tgz=$out/confluentinc-kafka-javascript-$version.tgz
if [[ ! -f $tgz ]]; then
  # npm pack only downloads the tarball: no dependency install, no node-gyp.
  (cd "$out" && npm pack --ignore-scripts --silent "@confluentinc/kafka-javascript@$version" >/dev/null)
fi
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [[ $got != "$integrity" ]]; then
  echo "integrity mismatch for $tgz: $got" >&2
  exit 1
fi

rm -rf "$out/package"
tar -xzf "$tgz" -C "$out"
for f in configure src/rdkafka.h examples/rdkafka_performance.c examples/Makefile; do
  [[ -e $rdk/$f ]] || { echo "missing deps/librdkafka/$f in the npm package" >&2; exit 1; }
done

opts=(--no-download --disable-ssl --disable-gssapi --disable-sasl
      --disable-zstd --disable-curl --disable-lz4-ext --disable-syslog)
# zlib (gzip codec) only if its headers are there (Debian: zlib1g-dev).
if ! echo '#include <zlib.h>' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
  opts+=(--disable-zlib)
fi

cd "$rdk"
echo "configure ${opts[*]}" >&2
nice -n 19 ./configure "${opts[@]}" >"$out/configure.log" 2>&1 \
  || { tail -n 40 "$out/configure.log" >&2; exit 1; }
nice -n 19 make -j"$jobs" -C src librdkafka.a >"$out/make-lib.log" 2>&1 \
  || { tail -n 40 "$out/make-lib.log" >&2; exit 1; }
nice -n 19 make -j1 -C examples rdkafka_performance >"$out/make-perf.log" 2>&1 \
  || { tail -n 40 "$out/make-perf.log" >&2; exit 1; }

[[ -x $bin ]] || { echo "build finished but $bin is missing" >&2; exit 1; }
echo "$bin"
