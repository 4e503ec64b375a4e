#!/usr/bin/env python3
"""ACLs as confluent-kafka (librdkafka) meets them, authenticated with
SCRAM-SHA-256 as USER. One STEP per run; prints one JSON line.

usage: acl_check.py BOOTSTRAP USER PASSWORD STEP
steps:
  grant     create the test's topics and ACLs (as a super user); prints
            {"created": [errors], "described": n}
  acls      {"described": n} (DescribeAcls, any filter)
  revoke    delete alice's Write on "alice-" (prefixed); {"deleted": n}
  probe     what USER may do: produce to alice-a and bob-b, list topics,
            consume alice-a in group g-alice, join group g-bob, read
            alice-secret, create an ACL, describe the configs of alice-a,
            bob-b and a broker, describe groups g-alice and g-bob; each
            outcome's error name or "ok"
  offsets   every test topic's high watermark (as a super user)
Exits 124 after 90 s.
"""

import json
import sys
import time

from _util import deadline

deadline(90)

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

bootstrap, user, password, step = sys.argv[1:]
common = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-256",
    "sasl.username": user,
    "sasl.password": password,
}
TOPICS = ["alice-a", "alice-secret", "bob-b"]


def name(e):
    """An error's librdkafka name (TOPIC_AUTHORIZATION_FAILED, ...)."""
    if isinstance(e, KafkaException):
        e = e.args[0]
    return e.name() if isinstance(e, KafkaError) else str(e)


def alice(rt, res, pattern, op, perm):
    return AclBinding(rt, res, pattern, "User:alice", "*", op, perm)


GRANTS = [
    alice(ResourceType.TOPIC, "alice-", ResourcePatternType.PREFIXED, AclOperation.WRITE, AclPermissionType.ALLOW),
    alice(ResourceType.TOPIC, "alice-", ResourcePatternType.PREFIXED, AclOperation.READ, AclPermissionType.ALLOW),
    alice(ResourceType.TOPIC, "alice-secret", ResourcePatternType.LITERAL, AclOperation.READ, AclPermissionType.DENY),
    alice(ResourceType.GROUP, "g-alice", ResourcePatternType.LITERAL, AclOperation.READ, AclPermissionType.ALLOW),
    alice(
        ResourceType.TOPIC, "alice-a", ResourcePatternType.LITERAL, AclOperation.DESCRIBE_CONFIGS, AclPermissionType.ALLOW
    ),
]
ANY = AclBindingFilter(
    ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
)


def described(admin):
    return len(admin.describe_acls(ANY, request_timeout=10).result(timeout=15))


def produce(topic, n):
    """n messages to partition 0; the first delivery error's name or ok."""
    p = Producer({**common, "acks": "all", "message.timeout.ms": 10000})
    reports = []
    for i in range(n):
        p.produce(topic, f"{topic} {i}".encode(), partition=0, on_delivery=lambda e, m: reports.append(e))
    p.flush(15)
    errs = [name(e) for e in reports if e]
    if len(reports) < n:
        errs.append("no report")
    return errs[0] if errs else "ok"


def consume(topic, group, want):
    """Up to `want` messages of partition 0 from offset 0 in `group`,
    committed; ok with the count, or the first error's name."""
    c = Consumer({**common, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    got = 0
    err = None
    try:
        c.subscribe([topic])
        until = time.monotonic() + 20
        while got < want and time.monotonic() < until:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                err = name(m.error())
                break
            got += 1
        if err is None and got:
            c.commit(asynchronous=False)
    except KafkaException as e:
        err = name(e)
    finally:
        c.close()
    return err or f"ok {got}"


if step == "grant":
    admin = AdminClient(common)
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in TOPICS]).values():
        try:
            f.result(timeout=15)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    created = []
    for f in admin.create_acls(GRANTS, request_timeout=10).values():
        try:
            f.result(timeout=15)
            created.append("ok")
        except KafkaException as e:
            created.append(name(e))
    print(json.dumps({"created": created, "described": described(admin)}), flush=True)
elif step == "acls":
    print(json.dumps({"described": described(AdminClient(common))}), flush=True)
elif step == "revoke":
    admin = AdminClient(common)
    f = AclBindingFilter(
        ResourceType.TOPIC,
        "alice-",
        ResourcePatternType.PREFIXED,
        "User:alice",
        None,
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    gone = list(admin.delete_acls([f], request_timeout=10).values())[0].result(timeout=15)
    print(json.dumps({"deleted": len(gone)}), flush=True)
elif step == "probe":
    out = {}
    out["produce alice-a"] = produce("alice-a", 5)
    out["produce bob-b"] = produce("bob-b", 5)
    admin = AdminClient(common)
    md = admin.list_topics(timeout=10)
    out["topics"] = sorted(t for t in md.topics if not t.startswith("__"))
    out["consume alice-a g-alice"] = consume("alice-a", "g-alice", 5)
    out["consume alice-a g-bob"] = consume("alice-a", "g-bob", 1)
    out["consume alice-secret g-alice"] = consume("alice-secret", "g-alice", 1)
    try:
        list(admin.create_acls([GRANTS[0]], request_timeout=10).values())[0].result(timeout=15)
        out["create acl"] = "ok"
    except KafkaException as e:
        out["create acl"] = name(e)
    # Resource by resource: one denied resource does not fail the others.
    asked = [
        ConfigResource("topic", "alice-a"),
        ConfigResource("topic", "bob-b"),
        ConfigResource("broker", str(min(md.brokers))),
    ]
    for r, f in admin.describe_configs(asked, request_timeout=10).items():
        try:
            f.result(timeout=15)
            out[f"configs {r.name}"] = "ok"
        except KafkaException as e:
            out[f"configs {r.name}"] = name(e)
    for g, f in admin.describe_consumer_groups(["g-alice", "g-bob"], request_timeout=10).items():
        try:
            f.result(timeout=15)
            out[f"describe {g}"] = "ok"
        except KafkaException as e:
            out[f"describe {g}"] = name(e)
    print(json.dumps(out), flush=True)
elif step == "offsets":
    c = Consumer({**common, "group.id": "offsets-probe"})
    marks = {}
    for t in TOPICS:
        lo, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=10)
        marks[t] = hi
    c.close()
    print(json.dumps(marks), flush=True)
else:
    sys.exit(f"unknown step {step}")
