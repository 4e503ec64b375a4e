"""Stand-in for kafka-python's test/service.py, which its PyPI sdist leaves
out although test/integration/fixtures.py imports it.

Only the suite's external-broker mode (KAFKA_URI) is used against shardlog:
the fixtures then wrap the broker in an ExternalService and never spawn one.
Written for shardlog (tools/kafka-python-suite.sh copies it in); not
kafka-python's code.
"""


class ExternalService:
    """A broker someone else started and stops: nothing to start, stop or dump."""

    def __init__(self, host, port):
        self.host = host
        self.port = port

    def start(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService:
    """Launching a Kafka distribution is not part of shardlog's runs."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            "kafka-python's suite runs here only against an external broker (KAFKA_URI)"
        )
