#!/usr/bin/env bash
# Apache Kafka 4.4, single-node KRaft (broker and controller in one JVM), as
# the same-box peer for benchmarks: assembled from Maven Central only
# (org.apache.kafka:kafka_2.13 and kafka-tools, pinned in
# tools/kafka-peer/pom.xml), on loopback, with every setting written down
# in the properties file it generates.
#
#   tools/kafka-peer.sh fetch                 the jars, into target/kafka-peer/libs
#   tools/kafka-peer.sh start [--fsync-each] [--tls CERT KEY]
#                                             format a fresh log dir and start;
#                                             --fsync-each: log.flush.interval.messages=1
#                                             (an fsync per append, the comparison
#                                             with shardlog --fsync always);
#                                             --tls: the listener speaks SSL with this
#                                             PEM certificate and PKCS#8 key (KIP-651's
#                                             PEM keystore; the certificate is also the
#                                             truststore, so self-signed works), as
#                                             shardlog's --kafka-tls on
#   tools/kafka-peer.sh stop                  stop it by its pid (SIGTERM, then SIGKILL)
#   tools/kafka-peer.sh producer-perf ARGS    Kafka's kafka-producer-perf-test
#   tools/kafka-peer.sh consumer-perf ARGS    Kafka's kafka-consumer-perf-test
#   tools/kafka-peer.sh topics ARGS           Kafka's kafka-topics
#   tools/kafka-peer.sh pid                   print the broker's pid (for CPU readings)
#
# Environment: KAFKA_PEER_PORT (9192), KAFKA_PEER_CONTROLLER_PORT (9193),
# KAFKA_PEER_HEAP (1G), KAFKA_PEER_DIR (target/kafka-peer).
# The perf tools run against any Kafka-compatible broker: point them at
# shardlog's Kafka listener with --bootstrap-server as well.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${KAFKA_PEER_DIR:-$PWD/target/kafka-peer}"
LIBS="$DIR/libs"
PORT="${KAFKA_PEER_PORT:-9192}"
CPORT="${KAFKA_PEER_CONTROLLER_PORT:-9193}"
HEAP="${KAFKA_PEER_HEAP:-1G}"
PIDFILE="$DIR/kafka.pid"

java_run() {
  # Kafka's own launcher settings (kafka-run-class.sh): G1, a fixed heap.
  java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

tool_run() {
  java -Xmx512M -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$LIBS/*" "$@"
}

case "${1:-}" in
fetch)
  if [ -f "$LIBS/.complete" ]; then
    echo "Kafka 4.4 jars already in $LIBS"
    exit 0
  fi
  mkdir -p "$LIBS"
  mvn -B -q -Dmaven.repo.local="$PWD/target/m2" -f tools/kafka-peer/pom.xml \
    dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
  echo "Kafka 4.4 jars in $LIBS ($(ls "$LIBS" | wc -l) files)"
  ;;
start)
  [ -f "$LIBS/.complete" ] || { echo "run: $0 fetch" >&2; exit 1; }
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "Kafka already running (pid $(cat "$PIDFILE"))" >&2
    exit 1
  fi
  shift
  flush=""
  proto=PLAINTEXT
  tls=""
  while [ $# -gt 0 ]; do
    case "$1" in
    --fsync-each) flush="log.flush.interval.messages=1"; shift ;;
    --tls)
      [ $# -ge 3 ] || { echo "--tls CERT KEY" >&2; exit 2; }
      proto=SSL
      mkdir -p "$DIR"
      # One PEM file with the key and its chain: Kafka's PEM keystore.
      cat "$3" "$2" >"$DIR/keystore.pem"
      tls="ssl.keystore.type=PEM
ssl.keystore.location=$DIR/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$(realpath "$2")"
      shift 3
      ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  rm -rf "$DIR/data" && mkdir -p "$DIR/data"
  cat >"$DIR/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $DIR/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
EOF
  cat >"$DIR/server.properties" <<EOF
# Single-node KRaft: this process is the broker and the only controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=$proto://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=$proto://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$proto:$proto
inter.broker.listener.name=$proto
$tls
log.dirs=$DIR/data
# One copy of everything (one node), as shardlog keeps.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
num.partitions=1
# Kafka's defaults otherwise: flushing left to the OS page cache (no
# log.flush.* settings) unless --fsync-each; 1 GiB segments; 3 network
# and 8 I/O threads.
$flush
EOF
  java_run kafka.tools.StorageTool format --standalone \
    -t "$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)" \
    -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 || {
    cat "$DIR/format.log" >&2
    exit 1
  }
  nohup bash -c "exec java -Xms$HEAP -Xmx$HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=$DIR/log4j2.properties \
    -cp '$LIBS/*' kafka.Kafka $DIR/server.properties" >"$DIR/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  # Up when the listener accepts (bounded: 60 s).
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      echo "Kafka 4.4 up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"); settings in $DIR/server.properties)"
      exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "Kafka exited; see $DIR/stdout.log and $DIR/server.log" >&2
      tail -20 "$DIR/stdout.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  echo "Kafka did not listen within 60 s; stopping it" >&2
  "$0" stop
  exit 1
  ;;
stop)
  [ -f "$PIDFILE" ] || { echo "not running"; exit 0; }
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid"
    fi
  fi
  rm -f "$PIDFILE"
  echo "Kafka stopped"
  ;;
pid)
  cat "$PIDFILE"
  ;;
producer-perf)
  shift
  tool_run org.apache.kafka.tools.ProducerPerformance "$@"
  ;;
consumer-perf)
  shift
  tool_run org.apache.kafka.tools.ConsumerPerformance "$@"
  ;;
topics)
  shift
  tool_run org.apache.kafka.tools.TopicCommand "$@"
  ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
  exit 2
  ;;
esac
