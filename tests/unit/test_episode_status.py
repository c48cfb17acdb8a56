"""The `episode_status` table kept by the commits says, after every commit, exactly what computing
every episode's status from all the lake's rows says: with messages lost, duplicated, out of order
and split over many commits, a decision run twice, and in a lake made before the table."""

from __future__ import annotations

import random

import pytest

from consumers.lake_sink.sink import LakeSink
from consumers.lake_sink.verify import verify
from infra import episode_status
from infra.bus.memory import MemoryBroker, MemoryBus
from infra.lake_catalog import LakeTables, attach
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.decisions import decision_seeds
from producers.episode_writer import EpisodeWriter
from producers.synthetic import SyntheticConfig, produce
from tests.lake_helpers import Recorder


def _episode(writer, decision_id, seed, end=True):
    writer.start(experiment_id="exp", worker_id="w", env_name="sim", env_version=1, seed=seed, initial_state=[0.0],
                 task="t", skill_sequence=["reach_red"], decision_id=decision_id, policy_id="p", policy_version="1")
    for i in range(4):
        writer.step(step=i, sim_time=0.1 * i, observation=[0.0] * 3, action=[0.0] * 4, reward=1.0, task_reward=1.0,
                    skill_id="reach_red", skill_caption="reach", terminated=False, truncated=False)
    if end:
        writer.end("success", task_success=True, skill_success={"reach_red": True})
    else:
        writer._flush_steps()


_DECIDED = 6 * 4 - 1  # the first messages: six episodes of start, two chunks and end, one without its end


def _messages() -> list:
    recorder = Recorder()
    writer = EpisodeWriter(recorder, chunk_steps=2)
    first, second = decision_seeds("d1", 2)
    for decision, seed, end in [("d1", first, True), ("d1", second, False), ("d1", first, True), ("d1", second, True),
                                (None, 7, True), (None, 7, True)]:
        _episode(writer, decision, seed, end)
    assert len(recorder.sent) == _DECIDED
    produce(recorder, SyntheticConfig(episodes=4, steps=6, chunk_steps=2, experiment_id="other"))
    return recorder.sent


def _same_as_computed(settings) -> int:
    con = open_lake(settings)
    try:
        kept = con.execute("SELECT episode_id, problem FROM episode_status").fetchall()
        computed = con.execute(episode_status.LIVE).fetchall()
    finally:
        con.close()
    assert len(kept) == len({e for e, _ in kept}), "one row per episode"
    assert sorted(kept, key=str) == sorted(computed, key=str)
    return len(kept)


@pytest.mark.parametrize("seed, listed", [(0, 1000), (1, 1000), (2, 0)])  # 0: the commit's episodes joined
def test_the_kept_status_is_the_computed_one_after_every_commit(tmp_path, monkeypatch, seed, listed):
    monkeypatch.setattr(episode_status, "_LISTED", listed)
    rng = random.Random(seed)
    messages = _messages()
    decided, other = messages[:_DECIDED], messages[_DECIDED:]
    other += rng.sample(other, 4)  # duplicated: starts, chunks or ends twice
    for _ in range(2):
        other.pop(rng.randrange(len(other)))  # lost
    messages = decided + other
    rng.shuffle(messages)  # out of order: runs of a decision arrive in any order, ends before chunks
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    bus = MemoryBus(MemoryBroker(partitions=3))
    producer, sent, problems = bus.producer(), 0, set()
    while sent < len(messages):
        batch = messages[sent:sent + rng.randint(1, 8)]
        for topic, key, body in batch:
            producer.send(topic, key, body)
        sent += len(batch)
        LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.05)
        assert _same_as_computed(settings) > 0
        con = open_lake(settings)
        problems |= {p for (p,) in con.execute("SELECT DISTINCT problem FROM episode_status").fetchall()}
        con.close()
    assert {None, "no end", "repeat of a decision episode"} <= problems, "the cases that matter were met"


def test_a_lake_made_before_the_table_is_read_as_computed_then_filled_by_its_first_writer(tmp_path):
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    bus = MemoryBus(MemoryBroker(partitions=2))
    producer = bus.producer()
    for topic, key, body in _messages()[3:]:  # the first episode without its start
        producer.send(topic, key, body)
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.05)
    con = attach(settings, read_only=False)
    con.execute("DROP TABLE lake.episode_status")  # as a lake written before the table existed
    con.close()
    before = _same_as_computed(settings)  # computed in every query
    LakeTables(settings, "a newer writer").close()
    con = attach(settings, read_only=True)
    assert con.execute("SELECT count(*) FROM lake.episode_status").fetchone()[0] == before
    con.close()
    assert _same_as_computed(settings) == before


def test_an_older_writers_rows_are_read_as_computed_until_the_next_commit_rebuilds(tmp_path, monkeypatch):
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    bus = MemoryBus(MemoryBroker(partitions=2))
    messages = _messages()
    for topic, key, body in messages[:8]:
        bus.producer().send(topic, key, body)
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.05)
    with monkeypatch.context() as older:  # an older writer: rows in, the table and its mark left as they were
        older.setattr(episode_status, "refresh", lambda con, tables: None)
        for topic, key, body in messages[8:16]:
            bus.producer().send(topic, key, body)
        LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.05)
    con = attach(settings, read_only=False)
    con.execute("UPDATE lake.lake_commits SET status_at = status_at - 1")
    stale = con.execute("SELECT count(*) FROM lake.episode_status").fetchone()[0]
    con.close()
    assert _same_as_computed(settings) > stale, "the view computes what the table does not say"
    assert not verify(settings).damaged, "a table not kept is no damage: the views do not read it"
    for topic, key, body in messages[16:]:
        bus.producer().send(topic, key, body)
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.05)  # finds the gap, computes it all again
    con = attach(settings, read_only=True)
    kept = con.execute("SELECT count(*) FROM lake.episode_status").fetchone()[0]
    assert episode_status.is_kept(con)
    con.close()
    assert _same_as_computed(settings) == kept


def test_compaction_writes_the_table_anew_in_few_files(tmp_path):
    from consumers.lake_sink.compact import compact

    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    bus = MemoryBus(MemoryBroker(partitions=1))
    recorder = Recorder()
    produce(recorder, SyntheticConfig(episodes=60, steps=4, chunk_steps=2))
    for cut in range(0, len(recorder.sent), 50):  # mid-episode: a commit ends what the one before started
        for topic, key, body in recorder.sent[cut:cut + 50]:
            bus.producer().send(topic, key, body)
        LakeSink(settings, bus=bus, flush_seconds=60).run(until_idle_s=0.05)

    def files():
        con = attach(settings, read_only=True)
        try:
            return con.execute("SELECT count(*) FROM ducklake_list_files('lake', 'episode_status')").fetchone()[0]
        finally:
            con.close()

    before = files()
    compact(settings, keep_s=0)
    assert files() <= 2 < before  # one per thread that wrote it
    assert _same_as_computed(settings) == 60
