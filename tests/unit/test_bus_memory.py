"""The bus contract on the in-process backend."""

import pytest

from infra.bus.memory import MemoryBroker, MemoryBus
from tests.bus_contract import *  # noqa: F401,F403  (the shared contract tests)


@pytest.fixture
def bus():
    return MemoryBus(MemoryBroker(partitions=4), max_message_bytes=64 * 1024)


def test_lag_counts_partitions_held_by_another_member(bus):
    """A member that died keeps its partitions until its session ends: the group is not done."""
    from tests.bus_contract import drain, metrics

    bus.ensure_topics(["t.lag"])
    producer = bus.producer()
    for i in range(20):
        producer.send("t.lag", f"key-{i}", metrics(1, start=i))
    a = bus.consumer("g", ["t.lag"])
    silent = bus.consumer("g", ["t.lag"])  # joined, never polls: like a member killed with -9
    got = drain(a, 20, timeout_s=0.5)
    assert 0 < len(got) < 20
    assert a.lag() == 20 - len(got)
    silent.close()  # its session ends: the partitions come to `a`
    assert len(drain(a, 20 - len(got), timeout_s=1)) == 20 - len(got)
    assert a.lag() == 0
