"""The bus contract on real Kafka."""

import pytest

from infra.bus.kafka import KafkaBus
from tests.bus_contract import *  # noqa: F401,F403  (the shared contract tests)


@pytest.fixture
def bus(stack):
    return KafkaBus(stack.kafka_bootstrap, max_message_bytes=64 * 1024, partitions=4)


def test_a_held_member_keeps_its_partitions_past_the_poll_interval(stack):
    """Work longer than max_poll_interval inside held(): the member is still in the group (its
    commit goes through) and nobody else got its messages."""
    import time
    import uuid

    from tests.bus_contract import drain, metrics

    bus = KafkaBus(stack.kafka_bootstrap, max_message_bytes=64 * 1024, partitions=4, max_poll_interval_s=3)
    topic, group = f"test.held.{uuid.uuid4().hex[:8]}", f"held-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    producer = bus.producer()
    for i in range(4):
        producer.send(topic, f"k{i}", metrics(1, start=i))
    producer.flush()
    worker = bus.consumer(group, [topic])
    got = drain(worker, 4)
    with worker.held(interval_s=0.5):
        time.sleep(8)  # past the 3 s poll interval (and the 10 s session is kept by heartbeats)
    worker.commit()  # a member the group dropped would get CommitFailedError here
    assert sorted(r["step"] for d in got for r in d.batch.rows()) == [0, 1, 2, 3]
    assert sum(worker.committed().values()) == 4
    worker.close()
