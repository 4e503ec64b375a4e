#!/usr/bin/env python3
"""kafka-python consumer, manual assignment (group_id=None).

usage: kp_consume.py BOOTSTRAP TOPIC PARTITIONS COUNT
Reads partitions 0..PARTITIONS-1 from the beginning until COUNT messages
arrived, printing each as a JSON line (see _util.py); exits 0 then, 124
after 60 s.
"""

import sys

from _util import deadline, emit

deadline(60)

from kafka import KafkaConsumer, TopicPartition  # noqa: E402

bootstrap, topic, partitions, count = sys.argv[1:]
consumer = KafkaConsumer(
    bootstrap_servers=bootstrap,
    group_id=None,
    enable_auto_commit=False,
    auto_offset_reset="earliest",
)
tps = [TopicPartition(topic, p) for p in range(int(partitions))]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
got = 0
while got < int(count):
    for tp, msgs in consumer.poll(timeout_ms=500).items():
        for m in msgs:
            emit(m.partition, m.offset, m.key, m.value, m.headers, m.timestamp)
            got += 1
sys.stdout.flush()
consumer.close()
