#!/usr/bin/env python3
"""A producer going flat out for WARMUP + SECONDS with client.id CLIENT_ID
(confluent-kafka, acks=1, 10 KiB values to partition 0 of TOPIC): prints
{"bytes": value bytes acknowledged in the last SECONDS, "seconds": their
span, "throttle_ms_max": the largest throttle_time_ms the broker
answered}. The warm-up leaves out the first burst a quota's window
admits (Kafka averages over 11 one-second samples: a fresh client may
send up to ~11 s of its quota at once).

usage: quota_produce.py BOOTSTRAP TOPIC CLIENT_ID SECONDS WARMUP
Exits 124 after WARMUP + SECONDS + 60 s.
"""

import json
import sys
import time

from _util import deadline

bootstrap, topic, client_id, seconds, warmup = sys.argv[1:]
seconds, warmup = float(seconds), float(warmup)
deadline(warmup + seconds + 60)

from confluent_kafka import Producer

throttles = [0]


def on_throttle(event):
    # librdkafka reports each broker answer's throttle_time_ms.
    throttles.append(int(event.throttle_time * 1000))


acked = [0]


def on_delivery(err, msg):
    if err is None:
        acked[0] += len(msg.value())


p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "acks": "1",
        "linger.ms": 2,
        # Small batches: the measurement's edge is one batch, not a MiB.
        "batch.size": 65536,
        "queue.buffering.max.kbytes": 4096,
        "throttle_cb": on_throttle,
    }
)
value = b"q" * 10240
start = time.monotonic()
measured_from = start + warmup
end = measured_from + seconds
at_warmup = None
while time.monotonic() < end:
    if at_warmup is None and time.monotonic() >= measured_from:
        p.poll(0)
        at_warmup = (acked[0], time.monotonic())
    try:
        p.produce(topic, value, partition=0, on_delivery=on_delivery)
    except BufferError:
        p.poll(0.01)
        continue
    p.poll(0)
# Only what was acknowledged within the period counts: the rest is
# abandoned (purged), not waited for.
p.poll(0)
elapsed = time.monotonic() - at_warmup[1]
counted = acked[0] - at_warmup[0]
p.purge()
p.flush(10)
print(
    json.dumps({"bytes": counted, "seconds": elapsed, "throttle_ms_max": max(throttles)}),
    flush=True,
)
