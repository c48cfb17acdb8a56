"""The bus contract on real Kafka."""

import pytest

from infra.bus.kafka import KafkaBus
from tests.bus_contract import *  # noqa: F401,F403  (the shared contract tests)


@pytest.fixture
def bus(stack):
    return KafkaBus(stack.kafka_bootstrap, max_message_bytes=64 * 1024, partitions=4)
