import socket
import time

import pytest

from infra.bus.interface import BusError
from infra.bus.kafka import KafkaBus


def test_a_refused_connection_fails_at_once():
    with socket.socket() as s:  # a port with certainly nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bus = KafkaBus([f"127.0.0.1:{port}"], max_message_bytes=64 * 1024, partitions=1, connect_timeout_s=30)
    started = time.monotonic()
    with pytest.raises(BusError, match=f"cannot reach Kafka at 127.0.0.1:{port} for the producer: connection refused"):
        bus.producer()
    assert time.monotonic() - started < 3


def test_a_silent_broker_is_waited_for_then_named():
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        bus = KafkaBus([f"127.0.0.1:{port}"], max_message_bytes=64 * 1024, partitions=1, connect_timeout_s=1)
        with pytest.raises(BusError, match=f"cannot reach Kafka at 127.0.0.1:{port} for the producer: KafkaTimeoutError"):
            bus.producer()
