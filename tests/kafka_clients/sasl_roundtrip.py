#!/usr/bin/env python3
"""A SASL client's round trip: produce COUNT messages to partition 0 of
TOPIC, then read them back, authenticated with MECHANISM as USER.

usage: sasl_roundtrip.py ck|kp BOOTSTRAP MECHANISM USER PASSWORD TOPIC COUNT [CAFILE]
ck: confluent-kafka (librdkafka), kp: kafka-python; security.protocol
SASL_PLAINTEXT, or SASL_SSL trusting CAFILE's CAs when it is given.
Prints one JSON line {"produced": n, "read": [values]}; exits 3 with
{"auth_error": "..."} when the broker refuses the credentials (the client
says so), 4 with {"tls_error": "..."} when the TLS handshake fails (ck),
124 after 60 s.
"""

import json
import os
import sys
import time

from _util import deadline

deadline(60)

lib, bootstrap, mechanism, user, password, topic, count = sys.argv[1:8]
cafile = sys.argv[8] if len(sys.argv) > 8 else None
count = int(count)
values = [f"sasl {mechanism} {i}".encode() for i in range(count)]


def auth_failed(e, key="auth_error", code=3):
    print(json.dumps({key: str(e)}), flush=True)
    sys.stderr.flush()
    # At once: a client still retrying in its threads can crash the
    # interpreter's teardown (librdkafka's), hiding the exit status.
    os._exit(code)


if lib == "ck":
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

    common = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL" if cafile else "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if cafile:
        common["ssl.ca.location"] = cafile
    errors = []

    def on_error(e):
        errors.append(e)

    p = Producer({**common, "acks": "all", "error_cb": on_error})
    delivered = []
    for v in values:
        p.produce(topic, v, partition=0, on_delivery=lambda e, m: delivered.append(e))
    # Served until every delivery report is in, or the broker refused the
    # credentials (librdkafka reports that at once and keeps retrying).
    until = time.monotonic() + 15
    while len(delivered) < count and time.monotonic() < until:
        p.poll(0.05)
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if auth:
            auth_failed(auth[0])
        tls = [e for e in errors if e.code() == KafkaError._SSL]
        if tls:
            auth_failed(tls[0], "tls_error", 4)
    left = p.flush(1)
    if left or any(delivered):
        sys.exit(f"produce failed: {left} left, {[e for e in delivered if e]}, {errors}")
    c = Consumer({**common, "group.id": f"sasl-{user}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    while len(got) < count:
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            raise KafkaException(m.error())
        got.append(m.value().decode())
    c.close()
    print(json.dumps({"produced": len(values), "read": got}), flush=True)
elif lib == "kp":
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError, SaslAuthenticationFailedError

    common = {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_SSL" if cafile else "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }
    if cafile:
        common["ssl_cafile"] = cafile
    # kafka-python reports refused credentials while it connects: at the
    # first metadata fetch (the constructor) or the first send.
    try:
        p = KafkaProducer(**common, acks="all", max_block_ms=15000)
        for v in values:
            p.send(topic, v, partition=0).get(timeout=15)
    except SaslAuthenticationFailedError as e:
        auth_failed(e)
    except KafkaError as e:
        if "auth" in f"{type(e).__name__} {e}".lower():
            auth_failed(e)
        raise
    p.close()
    c = KafkaConsumer(**common, enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == count:
            break
    c.close()
    print(json.dumps({"produced": len(values), "read": got}), flush=True)
else:
    sys.exit(f"unknown client {lib!r}")
