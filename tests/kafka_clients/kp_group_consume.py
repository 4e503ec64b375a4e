"""A kafka-python consumer group: MEMBERS consumers (threads) subscribe to
TOPIC as GROUP and read until EXPECTED messages were read in total, or
TIMEOUT_S pass; each message is committed synchronously before it is printed.
Run one member per process (MEMBERS=1, EXPECTED=-1: until TIMEOUT_S or
stdin closes) for groups spread over processes: kafka-python's consumers
share little with each other, but one process's threads share its GIL, and
under CPU starvation two members in one process were seen to hang.

usage: kp_group_consume.py BOOTSTRAP TOPIC GROUP MEMBERS EXPECTED TIMEOUT_S

stdout, JSON lines: {"assigned": {member: [partitions]}} on every change,
{"ready": true} once every member holds partitions, one
{"member", "partition", "offset", "value"} per committed message, then
{"done": true, "read": N, "errors": [...]}.
exit 0 when EXPECTED were read (or EXPECTED is -1), 1 on timeout, 2 on a
client error.
"""
import faulthandler
import json
import logging
import sys
import threading
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata
from kafka.coordinator.assignors.range import RangePartitionAssignor

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
members, expected, timeout_s = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
deadline = time.monotonic() + timeout_s
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
# Every thread's stack on stderr if the run is still going near its end.
faulthandler.dump_traceback_later(min(45, timeout_s * 0.8), exit=False)
lock = threading.Lock()
out_lock = threading.Lock()
state = {"read": 0, "ready": False}
assigned = {}
errors = []


def say(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Listener(ConsumerRebalanceListener):
    def __init__(self, i):
        self.i = i

    def changed(self, parts, add):
        with lock:
            mine = set(assigned.get(self.i, []))
            ps = {p.partition for p in parts}
            assigned[self.i] = sorted(mine | ps if add else mine - ps)
            say({"assigned": assigned})
            held = [p for m in assigned.values() for p in m]
            if (not state["ready"] and len(assigned) == members
                    and all(assigned.values()) and len(held) == len(set(held))):
                state["ready"] = True
                say({"ready": True})

    def on_partitions_revoked(self, revoked):
        self.changed(revoked, False)

    def on_partitions_assigned(self, assigned_parts):
        self.changed(assigned_parts, True)


def member(i):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                      client_id=f"kp-member-{i}", enable_auto_commit=False,
                      auto_offset_reset="earliest",
                      # Generous: on CI's two busy cores a member's heartbeat
                      # thread was once starved past a 6 s session and the
                      # member expired. Members leave explicitly at the end,
                      # so nothing here waits out the session.
                      session_timeout_ms=30000, heartbeat_interval_ms=1000,
                      partition_assignment_strategy=[RangePartitionAssignor])
    try:
        # Know the topic's partitions before joining: a leader without them
        # assigns nothing and rejoins once metadata arrives. That path works,
        # but under heavy CPU starvation a kafka-python 3.0.12 member was
        # seen (about 1 run in 15, with 3 CPU hogs on 2 cores) to stop
        # talking to the coordinator after it, every request answered.
        while not c.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.05)
        c.subscribe([topic], listener=Listener(i))
        while time.monotonic() < deadline:
            with lock:
                if 0 <= expected <= state["read"] or stop.is_set():
                    break
            for tp, msgs in c.poll(timeout_ms=100).items():
                for m in msgs:
                    c.commit({tp: OffsetAndMetadata(m.offset + 1, None, -1)})
                    with lock:
                        state["read"] += 1
                        say({"member": i, "partition": m.partition,
                             "offset": m.offset, "value": m.value.decode()})
    except Exception as e:  # reported; the exit code says so
        errors.append(f"member {i}: {e!r}")
    finally:
        c.close()


stop = threading.Event()
if expected < 0:
    # Stops when the test closes stdin (or at the deadline).
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
threads = [threading.Thread(target=member, args=(i,)) for i in range(members)]
for t in threads:
    t.start()
for t in threads:
    t.join()
say({"done": True, "read": state["read"], "errors": errors})
sys.exit(2 if errors else (0 if state["read"] >= expected else 1))
