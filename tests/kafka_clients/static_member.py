"""One confluent-kafka (librdkafka) consumer with static membership
(`group.instance.id`, KIP-345) that prints its rebalance events and runs
until stdin closes or TIMEOUT_S pass.

usage: static_member.py BOOTSTRAP TOPIC GROUP INSTANCE TIMEOUT_S

stdout, JSON lines: {"assigned": {"0": [partitions held]}} after every
assignment change, and {"revoked": [partitions]} whenever partitions are
taken away (a rebalance reached this member).
exit 0 at the end, 2 on a client error.
"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException

bootstrap, topic, group, instance = sys.argv[1:5]
deadline = time.monotonic() + float(sys.argv[5])
held = set()
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def on_assign(_c, parts):
    held.update(p.partition for p in parts)
    say({"assigned": {"0": sorted(held)}})


def on_revoke(_c, parts):
    gone = sorted(p.partition for p in parts)
    held.difference_update(gone)
    say({"revoked": gone})
    say({"assigned": {"0": sorted(held)}})


c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "group.instance.id": instance,
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 300,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "range",
})
try:
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while time.monotonic() < deadline and not stop.is_set():
        m = c.poll(0.1)
        if m is not None and m.error():
            raise KafkaException(m.error())
except Exception as e:  # reported; the exit code says so
    print(f"client error: {e!r}", file=sys.stderr)
    sys.exit(2)
finally:
    # A static member does not leave the group on close (KIP-345).
    c.close()
