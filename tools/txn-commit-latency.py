#!/usr/bin/env python3
"""Transaction commit latency against idempotent produce, with confluent-kafka
(librdkafka), against any Kafka-compatible broker.

usage: tools/txn-commit-latency.py BOOTSTRAP TOPIC [TXNS] [PER_TXN] [VALUE_BYTES]

Runs TXNS rounds of PER_TXN messages to TOPIC (partition 0) twice: once
with an idempotent producer (produce PER_TXN, flush: the time to get them
acknowledged), once transactional (begin, produce PER_TXN, commit: the time
from the first produce to the end of commit_transaction, which includes the
flush, EndTxn and the markers). Prints one JSON line per mode with the
latency percentiles in ms and the messages per second. Every call has a
deadline; exits 1 on any client error.
"""

import json
import sys
import time

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
txns = int(sys.argv[3]) if len(sys.argv) > 3 else 200
per = int(sys.argv[4]) if len(sys.argv) > 4 else 10
value = b"x" * (int(sys.argv[5]) if len(sys.argv) > 5 else 1024)
common = {"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"}


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000, 3)


def report(mode, lat, elapsed):
    print(json.dumps({
        "mode": mode, "txns": txns, "per_txn": per, "value_bytes": len(value),
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": pct(lat, 100),
        "msgs_per_s": round(txns * per / elapsed),
    }), flush=True)


p = Producer({**common, "enable.idempotence": True})
lat = []
start = time.monotonic()
for _ in range(txns):
    t = time.monotonic()
    for _ in range(per):
        p.produce(topic, value, partition=0)
    if p.flush(30) != 0:
        sys.exit("idempotent: messages left unsent")
    lat.append(time.monotonic() - t)
report("idempotent", lat, time.monotonic() - start)

p = Producer({**common, "transactional.id": f"latency-{time.time_ns()}"})
p.init_transactions(30)
lat = []
start = time.monotonic()
for _ in range(txns):
    t = time.monotonic()
    p.begin_transaction()
    for _ in range(per):
        p.produce(topic, value, partition=0)
    p.commit_transaction(30)
    lat.append(time.monotonic() - t)
report("transactional", lat, time.monotonic() - start)
