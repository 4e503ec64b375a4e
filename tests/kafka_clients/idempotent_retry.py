#!/usr/bin/env python3
"""Idempotent producer that must survive dropped connections without duplicates.

Usage: idempotent_retry.py BOOTSTRAP TOPIC COUNT [PACE_MS]
  Produces COUNT messages with enable.idempotence=True to partition 0 of
  TOPIC (which must exist), values b"m<i>" for i in 0..COUNT, in order.
  PACE_MS (default 0): sleep this long after every 100 messages, so a
  harness has time to drop the connections mid-run (e.g. `ss -K`, a proxy).
Prints one line: "delivered=<n> failed=<n> offsets_unique=<bool>".
Exit code: 0 if every message was delivered exactly once as far as the
producer can tell (each delivery report carries a distinct offset),
1 if any delivery failed or two reports share an offset, 2 on bad usage.
The harness then reads the partition (shardlog CLI) and checks each value
appears exactly once: the broker's duplicate detection is what is tested.
"""
import sys

from confluent_kafka import Producer


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, topic, count = argv[1], argv[2], int(argv[3])
    pace_ms = int(argv[4]) if len(argv) == 5 else 0
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # acks=all, retries, max 5 in flight
        "linger.ms": 5,
        "batch.num.messages": 50,  # many batches: retries overlap in flight
        "message.timeout.ms": 60000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    })
    delivered, failed, offsets = 0, 0, set()

    def report(err, msg):
        nonlocal delivered, failed
        if err is not None:
            failed += 1
            print(f"delivery failed: {err}", file=sys.stderr)
        else:
            delivered += 1
            offsets.add(msg.offset())

    for i in range(count):
        while True:
            try:
                p.produce(topic, value=b"m%d" % i, partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if pace_ms and i % 100 == 99:
            p.poll(pace_ms / 1000.0)
    left = p.flush(90)
    unique = len(offsets) == delivered
    print(f"delivered={delivered} failed={failed + left} offsets_unique={unique}")
    return 0 if delivered == count and failed == 0 and left == 0 and unique else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
