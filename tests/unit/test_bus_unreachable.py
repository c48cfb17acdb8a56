import socket

import pytest

from infra.bus.interface import BusError
from infra.bus.kafka import KafkaBus


def test_unreachable_broker_is_retried_then_named():
    with socket.socket() as s:  # a port with certainly nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bus = KafkaBus([f"127.0.0.1:{port}"], max_message_bytes=64 * 1024, partitions=1, connect_timeout_s=2)
    with pytest.raises(BusError, match=f"cannot reach Kafka at 127.0.0.1:{port} for the producer: KafkaTimeoutError"):
        bus.producer()
