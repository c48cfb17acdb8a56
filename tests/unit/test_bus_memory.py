"""The bus contract on the in-process backend."""

import pytest

from infra.bus.memory import MemoryBroker, MemoryBus
from tests.bus_contract import *  # noqa: F401,F403  (the shared contract tests)


@pytest.fixture
def bus():
    return MemoryBus(MemoryBroker(partitions=4), max_message_bytes=64 * 1024)
