#!/usr/bin/env python3
"""A long-lived SASL producer across its session's expiry: one message to
partition 0 of TOPIC every 100 ms for SECONDS, on one connection, with
confluent-kafka (librdkafka re-authenticates before the lifetime the
broker gave it ends, KIP-368).

usage: sasl_reauth.py BOOTSTRAP MECHANISM USER PASSWORD TOPIC SECONDS
Prints one JSON line {"produced": n, "delivered": n, "errors": [...]}
(errors: failed deliveries and the client's error callbacks); exits 124
after 60 s.
"""

import json
import sys
import time

from _util import deadline

deadline(60)

from confluent_kafka import Producer  # noqa: E402

bootstrap, mechanism, user, password, topic, seconds = sys.argv[1:7]
errors = []
p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "acks": "all",
        "linger.ms": 0,
        "error_cb": lambda e: errors.append(str(e)),
    }
)
delivered = []


def report(e, m):
    if e is None:
        delivered.append(m.value())
    else:
        errors.append(str(e))


produced = 0
until = time.monotonic() + float(seconds)
while time.monotonic() < until:
    p.produce(topic, f"reauth {produced}".encode(), partition=0, on_delivery=report)
    produced += 1
    p.poll(0.1)
p.flush(15)
in_order = delivered == [f"reauth {i}".encode() for i in range(len(delivered))]
print(
    json.dumps(
        {"produced": produced, "delivered": len(delivered), "in_order": in_order, "errors": errors}
    ),
    flush=True,
)
