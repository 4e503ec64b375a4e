"""Shared by the Kafka client test scripts: a hard deadline, and messages as
JSON lines with bytes in hex (binary-safe both ways).

A message is {"p": partition, "o": offset, "k": key, "v": value,
"h": [[header key, header value], ...], "ts": timestamp ms}; key, value and
header values are hex strings or null; a producer's input may leave out any
field but "v".
"""

import json
import os
import sys
import threading


def deadline(seconds):
    """Exits the process with status 124 after `seconds`, from a watchdog
    thread: it fires even while the main thread is blocked inside
    librdkafka, where a Python signal handler would wait."""

    def expire():
        sys.stderr.write(
            f"{os.path.basename(sys.argv[0])}: timed out after {seconds}s\n"
        )
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(124)

    t = threading.Timer(seconds, expire)
    t.daemon = True
    t.start()


def unhex(s):
    return None if s is None else bytes.fromhex(s)


def tohex(b):
    return None if b is None else bytes(b).hex()


def settings(args):
    """KEY=VALUE arguments as a dict."""
    out = {}
    for kv in args:
        k, sep, v = kv.partition("=")
        if not sep:
            sys.exit(f"expected KEY=VALUE, not {kv!r}")
        out[k] = v
    return out


def emit(partition, offset, key, value, headers, ts):
    print(
        json.dumps(
            {
                "p": partition,
                "o": offset,
                "k": tohex(key),
                "v": tohex(value),
                "h": [[k, tohex(v)] for k, v in (headers or [])],
                "ts": ts,
            }
        ),
        flush=False,
    )
