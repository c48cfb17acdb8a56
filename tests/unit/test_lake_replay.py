"""Replay: a lake rebuilt from the log and the lake alone answers every query alike; historic
episodes re-streamed onto a topic arrive whole."""

from __future__ import annotations

from consumers.lake_sink import LakeSink
from consumers.lake_sink.replay import replay_to_lake, replay_to_topic
from infra.bus.memory import MemoryBroker, MemoryBus
from producers.episode_writer import utc_now
from producers.synthetic import SyntheticConfig, produce
from robolake.settings import Settings
from schemas import topics
from schemas.codec import build, steps_checksum
from schemas.events import LEARNER_METRICS
from tests.bus_contract import drain
from tests.lake_helpers import lake_fingerprint


def _source(tmp_path):
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/source")
    state = _State()
    bus = MemoryBus(MemoryBroker(partitions=3, state=state))
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=6, steps=12, chunk_steps=5, experiment_id="exp-a"))
    produce(producer, SyntheticConfig(episodes=3, steps=12, chunk_steps=5, experiment_id="exp-b", seed=1))
    producer.send(topics.LEARNER, "exp-a", build(LEARNER_METRICS, [
        {"experiment_id": "exp-a", "run_id": "r1", "step": s, "name": "loss", "value": 1 / (s + 1),
         "skill_id": "reach_red", "time": utc_now()} for s in range(3)]))
    producer.flush()
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    return settings, bus, state


class _State:
    """Where a MemoryBroker keeps its offsets between 'processes'."""

    def __init__(self):
        self.data = None

    def load(self):
        return self.data

    def save(self, data):
        self.data = data


def test_rebuild_from_the_lake_alone_when_the_log_is_gone(tmp_path):
    source, _, state = _source(tmp_path)
    # A new process: the in-process log is empty and starts where the old one ended.
    later_bus = MemoryBus(MemoryBroker(partitions=3, state=state))
    target = source.replace(lake=f"file://{tmp_path}/rebuilt")
    stats = replay_to_lake(source, target, later_bus)
    assert stats.from_bus == 0 and stats.from_lake == 9 * (1 + 3 + 1) + 1
    assert lake_fingerprint(target) == lake_fingerprint(source)


def test_rebuild_from_the_log_and_the_lake_where_retention_removed_the_start(tmp_path):
    source, bus, _ = _source(tmp_path)
    # Retention removed the first half of every partition.
    for topic, partitions in bus.broker.logs.items():
        for p, log in enumerate(partitions):
            cut = len(log) // 2
            bus.broker.start_offsets[(topic, p)] = bus.broker.start(topic, p) + cut
            del log[:cut]
    target = source.replace(lake=f"file://{tmp_path}/rebuilt")
    stats = replay_to_lake(source, target, bus)
    assert stats.from_lake > 0 and stats.from_bus > 0
    assert stats.from_lake + stats.from_bus == 9 * (1 + 3 + 1) + 1
    assert lake_fingerprint(target) == lake_fingerprint(source)


def test_restream_matching_episodes_onto_a_topic(tmp_path):
    source, bus, _ = _source(tmp_path)
    stats = replay_to_topic(source, bus, "replayed.episodes", episodes="experiment_id = 'exp-b'")
    assert stats.episodes == 3 and stats.from_lake == 3 * 5
    reader = bus.consumer("new-consumer", ["replayed.episodes"])
    batches = {}
    for delivery in drain(reader, 15, timeout_s=2):
        batches.setdefault(delivery.key, []).append(delivery.batch)
    reader.close()
    assert len(batches) == 3
    for episode, events in batches.items():
        assert [b.type for b in events] == ["episode.started"] + ["episode.steps"] * 3 + ["episode.ended"]
        assert events[-1].rows()[0]["checksum"] == steps_checksum(b.table for b in events[1:-1])
        assert events[0].rows()[0]["experiment_id"] == "exp-b"
