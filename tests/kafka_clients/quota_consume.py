#!/usr/bin/env python3
"""A consumer reading partition 0 of TOPIC from the start as fast as it
can for WARMUP + SECONDS with client.id CLIENT_ID (confluent-kafka):
prints {"bytes": value bytes received in the last SECONDS, "seconds":
their span, "throttle_ms_max": the largest throttle_time_ms answered}.

usage: quota_consume.py BOOTSTRAP TOPIC CLIENT_ID SECONDS WARMUP
Exits 124 after WARMUP + SECONDS + 60 s.
"""

import json
import sys
import time

from _util import deadline

bootstrap, topic, client_id, seconds, warmup = sys.argv[1:]
seconds, warmup = float(seconds), float(warmup)
deadline(warmup + seconds + 60)

from confluent_kafka import Consumer, TopicPartition

throttles = [0]


def on_throttle(event):
    throttles.append(int(event.throttle_time * 1000))


c = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "group.id": f"quota-{client_id}",
        "enable.auto.commit": False,
        "throttle_cb": on_throttle,
        # Quarter-MiB answers: the measurement's edge is one answer, not
        # a MiB (a tenth of the quota's 10 s).
        "max.partition.fetch.bytes": 262144,
    }
)
c.assign([TopicPartition(topic, 0, 0)])
got = 0
start = time.monotonic()
measured_from = start + warmup
end = measured_from + seconds
at_warmup = None
while time.monotonic() < end:
    if at_warmup is None and time.monotonic() >= measured_from:
        at_warmup = (got, time.monotonic())
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    got += len(m.value())
elapsed = time.monotonic() - at_warmup[1]
print(
    json.dumps({"bytes": got - at_warmup[0], "seconds": elapsed, "throttle_ms_max": max(throttles)}),
    flush=True,
)
c.close()
