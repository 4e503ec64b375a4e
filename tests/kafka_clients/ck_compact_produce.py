#!/usr/bin/env python3
"""confluent-kafka (librdkafka) producer of keyed updates, idempotent.

usage: ck_compact_produce.py BOOTSTRAP TOPIC KEYS UPDATES
Update i sets key "key-<i % KEYS>" to "k<i % KEYS>-u<i>" (4 and 7 digits,
zero-padded), in order, so the last KEYS updates hold every key's final
value. Prints {"delivered": N} and exits 0 only if every update was
delivered; 124 after 60 s.
"""

import json
import sys

from _util import deadline

deadline(60)

from confluent_kafka import Producer  # noqa: E402

bootstrap, topic, keys, updates = sys.argv[1:]
keys, updates = int(keys), int(updates)
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1 << 20,
        "compression.type": "lz4",
        "message.timeout.ms": 30000,
    }
)
errors = []
delivered = 0


def on_delivery(err, msg):
    global delivered
    if err is not None:
        errors.append(f"partition {msg.partition()}: {err}")
    else:
        delivered += 1


for i in range(updates):
    k = i % keys
    while True:
        try:
            producer.produce(
                topic,
                key=b"key-%04d" % k,
                value=b"k%04d-u%07d" % (k, i),
                on_delivery=on_delivery,
            )
            break
        except BufferError:
            producer.poll(0.05)
    if i % 1000 == 0:
        producer.poll(0)
left = producer.flush(30)
print(json.dumps({"delivered": delivered}))
sys.stdout.flush()
if errors or left:
    sys.exit(f"not delivered: {left} left, errors: {errors[:5]}")
