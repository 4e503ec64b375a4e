#!/usr/bin/env python3
"""kafka-python producer.

usage: kp_produce.py BOOTSTRAP TOPIC [SETTING=VALUE ...]
Reads messages (see _util.py) as JSON lines on stdin and produces them in
order; SETTINGs are KafkaProducer arguments (compression_type=lz4, acks=1,
linger_ms=5; numbers are converted). Prints one line {"p", "o"} per message
in input order; exits 0 only if every message was delivered, 124 after 60 s.
"""

import json
import sys

from _util import deadline, settings, unhex

deadline(60)

from kafka import KafkaProducer  # noqa: E402

bootstrap, topic, *rest = sys.argv[1:]
conf = {"acks": "all", "linger_ms": 20, "enable_idempotence": False}
for k, v in settings(rest).items():
    conf[k] = int(v) if v.lstrip("-").isdigit() else v
producer = KafkaProducer(bootstrap_servers=bootstrap, **conf)
futures = []
for line in sys.stdin:
    m = json.loads(line)
    futures.append(
        producer.send(
            topic,
            value=unhex(m.get("v")),
            key=unhex(m.get("k")),
            headers=[(k, unhex(v)) for k, v in m.get("h") or []],
            partition=m.get("p"),
            timestamp_ms=m.get("ts"),
        )
    )
producer.flush(30)
for f in futures:
    md = f.get(timeout=30)
    print(json.dumps({"p": md.partition, "o": md.offset}))
sys.stdout.flush()
producer.close(10)
