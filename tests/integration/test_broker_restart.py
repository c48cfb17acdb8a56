"""Nothing is dropped or duplicated when the broker dies mid-stream (SIGKILL) and comes back."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict

from infra.bus.kafka import KafkaBus
from infra.process import wait_until
from producers.synthetic import SyntheticConfig, produce
from schemas.codec import steps_checksum
from tests.bus_contract import drain


def test_every_episode_arrives_exactly_once_across_a_broker_kill(private_broker):
    server, start = private_broker
    bus = KafkaBus([f"127.0.0.1:{server.port}"], max_message_bytes=64 * 1024, partitions=4)
    topic = "restart.episodes"
    bus.ensure_topics([topic])
    config = SyntheticConfig(episodes=60, steps=30, chunk_steps=10, seed=3)
    produced, errors, progress = [], [], []

    def stream():
        try:
            producer = bus.producer()
            produced.extend(produce(producer, config, topic=topic, progress=lambda n: (progress.append(n),
                                                                                       time.sleep(0.05))))
            producer.close()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    writer = threading.Thread(target=stream)
    writer.start()
    assert wait_until(lambda: len(progress) >= 10, 60), "producer made no progress before the kill"
    os.kill(server.process.running_pid(), signal.SIGKILL)
    wait_until(lambda: server.process.running_pid() is None, 10)
    time.sleep(2)  # producer keeps sending into the void
    start()
    writer.join(timeout=240)
    assert not writer.is_alive() and not errors, errors
    assert len(produced) == config.episodes

    consumer = bus.consumer("restart-check", [topic])
    events = drain(consumer, config.episodes * 5, timeout_s=60)
    assert drain(consumer, 1, timeout_s=3) == [], "more events than were produced"
    consumer.close()
    by_episode = defaultdict(list)
    for delivery in events:
        by_episode[delivery.key].append(delivery.batch)
    assert sorted(by_episode) == sorted(produced)
    for episode, batches in by_episode.items():
        assert [b.type for b in batches] == ["episode.started"] + ["episode.steps"] * 3 + ["episode.ended"], episode
        ended = batches[-1].rows()[0]
        assert ended["checksum"] == steps_checksum(b.table for b in batches[1:-1])
