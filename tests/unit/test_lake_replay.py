"""Replay: a lake rebuilt from a lake (then caught up from the log) answers every query alike;
historic episodes re-streamed onto a topic arrive whole."""

from __future__ import annotations

from consumers.lake_sink.sink import LakeSink
import pytest

from consumers.lake_sink.replay import ReplayError, replay_to_lake, replay_to_topic
from infra.bus.memory import MemoryBroker, MemoryBus
from infra.settings import Settings
from producers.episode_writer import utc_now
from producers.synthetic import SyntheticConfig, produce
from schemas import topics
from schemas.codec import build, steps_checksum
from schemas.events import LEARNER_METRICS
from tests.bus_contract import drain
from tests.lake_helpers import count, lake_fingerprint


def _source(tmp_path):
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/source")
    bus = MemoryBus(MemoryBroker(partitions=3))
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=6, steps=12, chunk_steps=5, experiment_id="exp-a"))
    produce(producer, SyntheticConfig(episodes=3, steps=12, chunk_steps=5, experiment_id="exp-b", seed=1))
    producer.send(topics.LEARNER, "exp-a", build(LEARNER_METRICS, [
        {"experiment_id": "exp-a", "run_id": "r1", "step": s, "name": "loss", "value": 1 / (s + 1),
         "skill_id": "reach_red", "time": utc_now()} for s in range(3)]))
    producer.flush()
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    return settings, bus


def test_rebuild_from_the_lake_alone_when_the_log_is_gone(tmp_path):
    source, _ = _source(tmp_path)
    later_bus = MemoryBus(MemoryBroker(partitions=3))  # a new process: its log knows nothing
    target = source.replace(lake=f"file://{tmp_path}/rebuilt")
    stats = replay_to_lake(source, target, later_bus)
    assert stats.from_bus == 0 and stats.from_lake == 9 * (1 + 3 + 1) + 1
    assert lake_fingerprint(target) == lake_fingerprint(source)
    assert count(target, "SELECT count(*) FROM lake_offsets") == count(source, "SELECT count(*) FROM lake_offsets")


def test_rebuild_then_catch_up_with_what_the_log_has_beyond_the_lake(tmp_path):
    source, bus = _source(tmp_path)
    produce(bus.producer(), SyntheticConfig(episodes=2, steps=12, chunk_steps=5, experiment_id="exp-c", seed=2))
    target = source.replace(lake=f"file://{tmp_path}/rebuilt")
    stats = replay_to_lake(source, target, bus)
    assert stats.from_lake == 9 * 5 + 1 and stats.from_bus == 2 * 5
    assert count(target, "SELECT count(*) FROM episodes") == 11


def test_replay_refuses_a_lake_that_holds_data_unless_told_to_merge(tmp_path):
    source, _ = _source(tmp_path)
    target = source.replace(lake=f"file://{tmp_path}/rebuilt")
    replay_to_lake(source, target)
    before = lake_fingerprint(target)
    with pytest.raises(ReplayError, match="already holds data"):
        replay_to_lake(source, target)
    assert lake_fingerprint(target) == before
    stats = replay_to_lake(source, target, merge=True)  # it lacks nothing: adds nothing
    assert stats.from_lake == 0 and lake_fingerprint(target) == before


def test_restream_matching_episodes_onto_a_topic(tmp_path):
    source, bus = _source(tmp_path)
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


def test_a_rebuilt_lake_carries_the_relabelled_rewards(tmp_path, capsys):
    """Rewards are computed by relabel, not logged: the rebuild copies them, so the same
    relabelled queries answer alike without relabelling again."""
    from robolake.cli import main

    source = f"file://{tmp_path}/source"
    assert main(["produce", "--episodes", "2", "--task", "reach_red", "--steps-per-skill", "10", "--lake", source]) == 0
    assert main(["relabel", "--rewards", "reach_red", "lift_red", "--lake", source]) == 0
    assert main(["relabel", "--rewards", "reach_red", "--name", "other", "--lake", source]) == 0
    rows = count(Settings.load(env={}, lake=source), "SELECT count(*) FROM rewards")
    assert rows > 0
    capsys.readouterr()
    assert main(["replay", "--to-lake", f"file://{tmp_path}/rebuilt", "--lake", source]) == 0
    assert f"{rows} relabelled rewards rows copied" in capsys.readouterr().out
    source_settings, target = Settings.load(env={}, lake=source), Settings.load(env={}, lake=f"file://{tmp_path}/rebuilt")
    assert lake_fingerprint(target) == lake_fingerprint(source_settings)  # rewards among the views compared
    assert replay_to_lake(source_settings, target, merge=True).rewards == 0  # it lacks none
