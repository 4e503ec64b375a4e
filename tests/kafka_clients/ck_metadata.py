#!/usr/bin/env python3
"""confluent-kafka (librdkafka) Metadata, as the client sees it.

usage: ck_metadata.py BOOTSTRAP TOPIC
Prints one JSON line {"brokers": [[id, host, port], ...], "leaders":
[[partition, leader id], ...]}, both sorted; exits 124 after 60 s.
"""

import json
import sys

from _util import deadline

deadline(60)

from confluent_kafka.admin import AdminClient  # noqa: E402

bootstrap, topic = sys.argv[1:]
md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
t = md.topics[topic]
if t.error is not None:
    sys.exit(f"topic {topic}: {t.error}")
print(
    json.dumps(
        {
            "brokers": sorted([b.id, b.host, b.port] for b in md.brokers.values()),
            "leaders": sorted([p.id, p.leader] for p in t.partitions.values()),
        }
    )
)
