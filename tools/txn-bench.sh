#!/usr/bin/env bash
# Transactions' cost, one sitting, with Kafka's own perf tools (from
# tools/kafka-peer.sh: Maven Central) and confluent-kafka, against any
# Kafka-compatible broker at BOOTSTRAP:
#   - kafka-producer-perf-test, idempotent (its defaults) against
#     transactional with a commit every 100 ms and every 1000 ms;
#   - kafka-consumer-perf-test read_uncommitted against read_committed over
#     the 100 ms transactional topic;
#   - commit latency against an idempotent flush (tools/txn-commit-latency.py).
# With BROKER_PID set, the broker's CPU seconds over each step are printed
# (utime + stime from /proc).
#
#   tools/txn-bench.sh BOOTSTRAP [RECORDS] [RECORD_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
BOOT="$1"
N="${2:-1000000}"
SIZE="${3:-1024}"
RUN="$(date +%s)"
HZ="$(getconf CLK_TCK)"

cpu() {
  if [ -n "${BROKER_PID:-}" ]; then
    awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$BROKER_PID/stat"
  else
    echo 0
  fi
}

step() {
  local name="$1"
  shift
  local before after
  before="$(cpu)"
  echo "== $name"
  timeout 600 "$@" 2>&1 | grep -v "^SLF4J\|WARN\|^\[" | tail -3
  after="$(cpu)"
  [ -z "${BROKER_PID:-}" ] || echo "   broker CPU-s: $(echo "$after - $before" | bc)"
}

PROPS=(bootstrap.servers="$BOOT" acks=all batch.size=262144 linger.ms=5)
step "produce, idempotent" tools/kafka-peer.sh producer-perf --topic "txb-idem-$RUN" \
  --num-records "$N" --record-size "$SIZE" --throughput -1 --producer-props "${PROPS[@]}"
step "produce, transactional, commit every 100 ms" tools/kafka-peer.sh producer-perf \
  --topic "txb-100-$RUN" --num-records "$N" --record-size "$SIZE" --throughput -1 \
  --transactional-id "txb-100-$RUN" --transaction-duration-ms 100 --producer-props "${PROPS[@]}"
step "produce, transactional, commit every 1000 ms" tools/kafka-peer.sh producer-perf \
  --topic "txb-1000-$RUN" --num-records "$N" --record-size "$SIZE" --throughput -1 \
  --transactional-id "txb-1000-$RUN" --transaction-duration-ms 1000 --producer-props "${PROPS[@]}"
for iso in read_uncommitted read_committed; do
  step "consume, $iso (the 100 ms topic)" tools/kafka-peer.sh consumer-perf \
    --bootstrap-server "$BOOT" --topic "txb-100-$RUN" --num-records "$N" --timeout 60000 \
    --group "txb-$iso-$RUN" --command-property isolation.level="$iso"
done
step "commit latency (200 x 10 x 1 KiB, partition 0)" \
  python3 tools/txn-commit-latency.py "$BOOT" "txb-lat-$RUN" 200 10 "$SIZE"
