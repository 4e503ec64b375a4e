#!/usr/bin/env python3
"""confluent-kafka (librdkafka) consume-transform-produce in transactions.

usage: ck_txn_ctp.py BOOTSTRAP IN OUT GROUP TRANSACTIONAL_ID COUNT [PAUSE_S]
Reads IN partition 0 (read_committed, manual assignment) from the group's
committed offset; each batch of up to 4 records is written to OUT as
"out-<value>" with the consumer's position committed in the same
transaction (send_offsets_to_transaction). Every third transaction is
aborted instead, and the consumer rewinds to the group's committed offset,
so those records are processed again in a later transaction. Ends once the
group's committed position reaches COUNT (a run that follows a killed one
goes on from there); PAUSE_S: a pause inside each transaction, so that a
kill finds one open. Prints {"txns": n, "aborted": m}; exits 0, 1 on an
error, 124 after 90 s.
"""
import time

import json
import sys

from _util import deadline

deadline(90)

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

bootstrap, topic_in, topic_out, group, txn_id, count = sys.argv[1:7]
count = int(count)
pause = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
)
tp = TopicPartition(topic_in, 0)


def rewind():
    c = consumer.committed([TopicPartition(topic_in, 0)], timeout=10)[0]
    consumer.seek(TopicPartition(topic_in, 0, c.offset if c.offset >= 0 else 0))


# init_transactions first: it fences a killed predecessor and aborts its
# open transaction, whose pending offset commit would otherwise keep the
# group's offsets unstable (KIP-447: committed() waits, here until its
# timeout) for the whole transaction timeout.
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
producer.init_transactions(30)
start = consumer.committed([TopicPartition(topic_in, 0)], timeout=10)[0].offset
consumer.assign([TopicPartition(topic_in, 0, start if start >= 0 else 0)])
done, txns, aborted = max(start, 0), 0, 0
while done < count:
    msgs = consumer.consume(num_messages=4, timeout=1)
    msgs = [m for m in msgs if not m.error()]
    if not msgs:
        continue
    producer.begin_transaction()
    for m in msgs:
        producer.produce(topic_out, value=b"out-" + m.value(), partition=0)
    if pause:
        time.sleep(pause)
    if producer.flush(30) != 0:
        sys.exit("messages left unsent")
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()),
        consumer.consumer_group_metadata(),
        30,
    )
    txns += 1
    if txns % 3 == 0:
        producer.abort_transaction(30)
        aborted += 1
        rewind()
    else:
        producer.commit_transaction(30)
        done += len(msgs)
print(json.dumps({"txns": txns, "aborted": aborted}), flush=True)
consumer.close()
