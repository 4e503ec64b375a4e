#!/usr/bin/env bash
# kafka-python's own integration tests (test/integration in its PyPI sdist,
# 3.0.12, the version installed for the client tests) and the two pytest
# plugins its pytest settings load: registry packages only.
#
#   tools/kafka-python-suite.sh fetch   unpack into target/kafka-python
#   tools/kafka-python-suite.sh path    print the sdist's directory
#
# tests/kafka_python_suite.rs runs them against a broker it starts (the
# suite's KAFKA_URI mode: an external broker instead of one it launches).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.0.12
ROOT="$PWD/target/kafka-python"
SRC="$ROOT/kafka_python-$VERSION"

case "${1:-}" in
fetch)
  python3 -m pip install --quiet --disable-pip-version-check \
    pytest==9.2.0 pytest-timeout==2.4.0 pytest-mock==3.16.0
  if [ -d "$SRC/test/integration" ]; then
    echo "kafka-python $VERSION tests already in $SRC"
    exit 0
  fi
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: "kafka-python==$VERSION" -d "$ROOT"
  tar xzf "$ROOT/kafka_python-$VERSION.tar.gz" -C "$ROOT"
  # The sdist leaves out test/__init__.py and test/service.py, which the
  # integration fixtures import: an empty package marker, and shardlog's
  # stand-in for the external-broker half of service.py.
  touch "$SRC/test/__init__.py"
  cp tools/kafka-python/service.py "$SRC/test/service.py"
  echo "unpacked $SRC"
  ;;
path)
  echo "$SRC"
  ;;
*)
  echo "usage: $0 fetch|path" >&2
  exit 2
  ;;
esac
