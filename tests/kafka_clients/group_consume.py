"""A confluent-kafka (librdkafka) consumer group: MEMBERS consumers in one
process subscribe to TOPIC as GROUP (eager range assignor) and read until
EXPECTED messages have been read in total, or TIMEOUT_S pass. Each message is
committed synchronously before it is printed, so a printed message is a
committed one.

usage: group_consume.py BOOTSTRAP TOPIC GROUP MEMBERS EXPECTED TIMEOUT_S

stdout, JSON lines:
  {"assigned": {member: [partitions]}}   on every assignment change
  {"ready": true}                        once every member holds partitions
  {"member", "partition", "offset", "value"}   per committed message
  {"uncertain": ..., "error": ...}       a commit that failed (its message
                                         may be read again, or, if the commit
                                         landed before the error, not at all)
  {"done": true, "read": N, "errors": [...]}
exit 0 when EXPECTED were read, 1 on timeout, 2 on a client error.
"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
members, expected, timeout_s = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
deadline = time.monotonic() + timeout_s
lock = threading.Lock()
read = 0
assigned = {}
ready = False
errors = []


out_lock = threading.Lock()


def say(obj):
    # One write per line, under a lock: threads must not interleave lines.
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def member(i):
    global read, ready
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"member-{i}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": "range",
        "reconnect.backoff.max.ms": 500,
    })

    def changed(parts, add):
        global ready
        with lock:
            mine = set(assigned.get(i, []))
            ps = {p.partition for p in parts}
            assigned[i] = sorted(mine | ps if add else mine - ps)
            say({"assigned": assigned})
            held = [p for m in assigned.values() for p in m]
            if (not ready and len(assigned) == members
                    and all(assigned.values()) and len(held) == len(set(held))):
                ready = True
                say({"ready": True})

    try:
        c.subscribe([topic],
                    on_assign=lambda _c, ps: changed(ps, True),
                    on_revoke=lambda _c, ps: changed(ps, False),
                    on_lost=lambda _c, ps: changed(ps, False))
        while time.monotonic() < deadline:
            with lock:
                if read >= expected:
                    break
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            try:
                c.commit(message=m, asynchronous=False)
            except KafkaException as e:
                say({"uncertain": [m.partition(), m.offset()], "error": str(e)})
                continue
            with lock:
                read += 1
                say({"member": i, "partition": m.partition(), "offset": m.offset(),
                     "value": m.value().decode()})
    except Exception as e:  # reported; the exit code says so
        errors.append(f"member {i}: {e!r}")
    finally:
        c.close()


threads = [threading.Thread(target=member, args=(i,)) for i in range(members)]
for t in threads:
    t.start()
for t in threads:
    t.join()
say({"done": True, "read": read, "errors": errors})
sys.exit(2 if errors else (0 if read >= expected else 1))
