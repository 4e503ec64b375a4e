#!/usr/bin/env python3
"""confluent-kafka (librdkafka) transactional producer, committing and
aborting in turns.

usage: ck_txn_produce.py BOOTSTRAP TOPIC TRANSACTIONAL_ID TXNS PER_TXN
Runs TXNS transactions of PER_TXN messages each (value "t<i>-<j>", to
partition j % 2); every batch is flushed to the broker before the end, so
the aborted ones are in the log too. Even transactions commit, odd ones
abort. Prints one JSON line per transaction: {"txn": i, "committed": bool};
exits 0, 1 on an error, 124 after 90 s.
"""

import json
import sys

from _util import deadline

deadline(90)

from confluent_kafka import Producer  # noqa: E402

bootstrap, topic, txn_id, txns, per_txn = sys.argv[1:]
p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 30000,
    }
)
p.init_transactions(30)
for i in range(int(txns)):
    p.begin_transaction()
    for j in range(int(per_txn)):
        p.produce(topic, value=f"t{i}-{j}".encode(), partition=j % 2)
    if p.flush(30) != 0:
        sys.exit("messages left unsent")
    commit = i % 2 == 0
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)
    print(json.dumps({"txn": i, "committed": commit}), flush=True)
