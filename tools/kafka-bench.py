#!/usr/bin/env python3
"""Throughput of a librdkafka (confluent-kafka) producer or consumer against
a Kafka listener, for BENCHMARKS.md beside shardlog-bench on the native
protocol.

usage:
  kafka-bench.py produce BOOTSTRAP TOPIC --count N --size BYTES [--acks all|1]
                 [--linger-ms 5] [--batch-bytes 1048576] [--broker-pid PID]
  kafka-bench.py consume BOOTSTRAP TOPIC --count N --size BYTES --partitions P
                 [--broker-pid PID]
  (either: --set KEY=VALUE, repeatable, for any other librdkafka setting)

Prints one JSON object: messages, MiB/s, msgs/s, seconds, and the CPU
seconds of this process (python + librdkafka threads) and, with
--broker-pid, of the broker over the same interval (from /proc), so the
bottleneck can be told: a side near 1.0 core per thread it uses is bound.

The producer sends keyless messages of one value (librdkafka's sticky
partitioner spreads batches over the partitions), acks as given,
idempotence off; time runs from the first produce() to the end of flush().
The consumer assigns partitions 0..P-1 from the beginning (manual
assignment, no group) and stops after N messages; time runs from assign()
to the Nth message. Both stop after --timeout-s (default 600) with exit 124.
"""

import argparse
import json
import os
import resource
import sys
import threading
import time


def watchdog(seconds):
    def expire():
        sys.stderr.write(f"kafka-bench: timed out after {seconds}s\n")
        os._exit(124)

    t = threading.Timer(seconds, expire)
    t.daemon = True
    t.start()


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_pid(pid):
    """User + system CPU seconds of process `pid` (all its threads)."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def extra(a):
    return dict(kv.split("=", 1) for kv in a.set)


def report(role, a, n, seconds, cpu0, broker0):
    out = {
        "role": role,
        "acks": getattr(a, "acks", None),
        "messages": n,
        "message_bytes": a.size,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(n / seconds),
        "mib_per_s": round(n * a.size / seconds / (1 << 20), 1),
        "client_cpu_s": round(cpu_self() - cpu0, 2),
    }
    if a.broker_pid is not None:
        out["broker_cpu_s"] = round(cpu_pid(a.broker_pid) - broker0, 2)
    print(json.dumps(out))


def produce(a):
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "enable.idempotence": False,
            "acks": a.acks,
            "linger.ms": a.linger_ms,
            "batch.size": a.batch_bytes,
            "message.max.bytes": max(a.batch_bytes + 4096, 1000000),
            "queue.buffering.max.messages": 1000000,
            "queue.buffering.max.kbytes": 1 << 20,
            "compression.type": "none",
            **extra(a),
        }
    )
    # Connect and learn the metadata before the clock starts.
    p.list_topics(a.topic, timeout=30)
    value = os.urandom(a.size)
    errors = []

    def delivered(err, _msg):
        if err is not None and len(errors) < 10:
            errors.append(str(err))

    cpu0, broker0 = cpu_self(), cpu_pid(a.broker_pid)
    start = time.perf_counter()
    produce_ = p.produce
    for _ in range(a.count):
        while True:
            try:
                produce_(a.topic, value, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.001)
    left = p.flush(a.timeout_s)
    seconds = time.perf_counter() - start
    if left or errors:
        sys.exit(f"not delivered: {left} left, errors {errors}")
    report("produce", a, a.count, seconds, cpu0, broker0)


def consume(a):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": "kafka-bench-manual",  # librdkafka demands one; unused
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 4194304,
            "queued.max.messages.kbytes": 262144,
            **extra(a),
        }
    )
    c.list_topics(a.topic, timeout=30)
    cpu0, broker0 = cpu_self(), cpu_pid(a.broker_pid)
    start = time.perf_counter()
    c.assign([TopicPartition(a.topic, i, OFFSET_BEGINNING) for i in range(a.partitions)])
    n = 0
    while n < a.count:
        msgs = c.consume(10000, 1.0)
        for m in msgs:
            if m.error():
                sys.exit(f"consumer error: {m.error()}")
        n += len(msgs)
    seconds = time.perf_counter() - start
    report("consume", a, n, seconds, cpu0, broker0)
    c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=["produce", "consume"])
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--acks", default="all", choices=["all", "1", "0"])
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-bytes", type=int, default=1 << 20)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--timeout-s", type=int, default=600)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting over the ones above; repeatable",
    )
    a = ap.parse_args()
    watchdog(a.timeout_s)
    (produce if a.role == "produce" else consume)(a)


if __name__ == "__main__":
    main()
