#!/usr/bin/env python3
"""confluent-kafka (librdkafka) producer.

usage: ck_produce.py BOOTSTRAP TOPIC [SETTING=VALUE ...]
Reads messages (see _util.py) as JSON lines on stdin and produces them in
order; SETTINGs are librdkafka's (compression.type=lz4, acks=1, ...). Prints
one line {"p", "o"} per delivered message, in delivery order; exits 0 only
if every message was delivered, 124 after 60 s.
"""

import json
import sys

from _util import deadline, settings, unhex

deadline(60)

from confluent_kafka import Producer  # noqa: E402

bootstrap, topic, *rest = sys.argv[1:]
conf = {
    "bootstrap.servers": bootstrap,
    # Explicit: the broker has no InitProducerId yet.
    "enable.idempotence": False,
    "acks": "all",
    "linger.ms": 20,
    "message.timeout.ms": 30000,
}
conf.update(settings(rest))
producer = Producer(conf)
errors = []


def delivered(err, msg):
    if err is not None:
        errors.append(f"partition {msg.partition()}: {err}")
    else:
        print(json.dumps({"p": msg.partition(), "o": msg.offset()}))


for line in sys.stdin:
    m = json.loads(line)
    extra = {}
    if m.get("p") is not None:
        extra["partition"] = m["p"]
    if m.get("ts") is not None:
        extra["timestamp"] = m["ts"]
    if m.get("h"):
        extra["headers"] = [(k, unhex(v)) for k, v in m["h"]]
    producer.produce(
        topic,
        value=unhex(m.get("v")),
        key=unhex(m.get("k")),
        on_delivery=delivered,
        **extra,
    )
    producer.poll(0)
left = producer.flush(30)
sys.stdout.flush()
if errors or left:
    sys.exit(f"not delivered: {left} left, errors: {errors[:5]}")
