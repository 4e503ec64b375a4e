#!/usr/bin/env python3
"""confluent-kafka (librdkafka) consumer, manual assignment (no group).

usage: ck_consume.py BOOTSTRAP TOPIC PARTITIONS COUNT [SETTING=VALUE ...]
Reads partitions 0..PARTITIONS-1 from the beginning until COUNT messages
arrived, printing each as a JSON line (see _util.py); exits 0 then, 1 on a
consumer error, 124 after 60 s.
"""

import sys

from _util import deadline, emit, settings

deadline(60)

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402

bootstrap, topic, partitions, count, *rest = sys.argv[1:]
conf = {
    "bootstrap.servers": bootstrap,
    # librdkafka insists on a group.id even for assign(); nothing joins it.
    "group.id": "unused-manual-assignment",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
conf.update(settings(rest))
consumer = Consumer(conf)
consumer.assign(
    [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(int(partitions))]
)
got = 0
while got < int(count):
    msg = consumer.poll(0.5)
    if msg is None:
        continue
    if msg.error():
        sys.stdout.flush()
        sys.exit(f"consumer error: {msg.error()}")
    _, ts = msg.timestamp()
    emit(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), ts)
    got += 1
sys.stdout.flush()
consumer.close()
