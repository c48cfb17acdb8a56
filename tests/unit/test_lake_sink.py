"""The lake sink on the in-process bus and a local lake: exactly once, idle commits, partials."""

from __future__ import annotations

import random
import threading
import time

import pytest

from consumers.lake_sink.sink import LakeSink
from consumers.lake_sink.sink import SOURCE_TOPICS, LakeUnavailable, default_group
from infra.bus.memory import MemoryBroker, MemoryBus
from infra.lake_catalog import LakeTables
from infra.settings import Settings
from producers.episode_writer import EpisodeWriter, utc_now
from producers.synthetic import SyntheticConfig, produce
from schemas import topics
from schemas.codec import build
from schemas.events import LEARNER_METRICS
from tests.lake_helpers import count, lake_fingerprint


class SimulatedCrash(BaseException):
    """Not an Exception: like SIGKILL, nothing in the sink gets to handle it."""


class CrashingTables(LakeTables):
    """Dies on the n-th commit, before or after the catalog transaction."""

    def __init__(self, settings, crash_after: int, after_commit: bool):
        super().__init__(settings, "crashing")
        self.commits_left, self.after_commit = crash_after, after_commit

    def commit(self, tables, offsets):
        if self.commits_left == 0:
            if self.after_commit:
                super().commit(tables, offsets)
            raise SimulatedCrash()
        self.commits_left -= 1
        super().commit(tables, offsets)


class FlakyTables(LakeTables):
    """Fails the first `failures` commits, as a stopped MinIO would."""

    def __init__(self, settings, failures: int):
        super().__init__(settings, "flaky")
        self.failures = failures

    def commit(self, tables, offsets):
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("MinIO is down")
        super().commit(tables, offsets)


def _settings(tmp_path, name="lake"):
    return Settings.load(env={}, lake=f"file://{tmp_path}/{name}")


def _metrics_event():
    return build(LEARNER_METRICS, [{"experiment_id": "exp-1", "run_id": "r", "step": 1, "name": "loss",
                                    "value": 0.5, "skill_id": None, "time": utc_now()}])


def _fill(bus, episodes=12):
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=episodes, steps=40, chunk_steps=10, experiment_id="exp-1"))
    producer.send(topics.LEARNER, "exp-1", _metrics_event())
    producer.flush()


def test_crashes_at_any_point_then_restart_give_the_same_lake(tmp_path):
    bus = MemoryBus(MemoryBroker(partitions=3))
    crashed = _settings(tmp_path, "crashed")
    rng, crashes = random.Random(7), 0
    for _ in range(8):  # more data, then a crash before or after a random commit
        _fill(bus, episodes=3)
        tables = CrashingTables(crashed, crash_after=rng.randint(0, 2), after_commit=rng.random() < 0.5)
        try:
            LakeSink(crashed, bus=bus, tables=tables, flush_seconds=0.05, file_bytes=20_000).run(until_idle_s=0.3)
        except SimulatedCrash:
            crashes += 1
        tables.close()
    LakeSink(crashed, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    # The reference: the same log, sunk once without trouble.
    reference_bus = MemoryBus(MemoryBroker(partitions=3))
    reference_bus.broker.logs, reference_bus.broker.log_id = bus.broker.logs, bus.broker.log_id
    reference = _settings(tmp_path, "reference")
    LakeSink(reference, bus=reference_bus, flush_seconds=0.05).run(until_idle_s=0.3)

    assert crashes >= 6
    expected = lake_fingerprint(reference)
    assert expected["episodes"][0] == 24 and expected["steps"][0] == 24 * 40 and expected["events"][0] == 8
    assert lake_fingerprint(crashed) == expected
    assert count(crashed, "SELECT count(*) - count(DISTINCT episode_id) FROM episodes") == 0


def test_an_idle_topic_still_lands_within_flush_seconds(tmp_path):
    bus, settings = MemoryBus(), _settings(tmp_path)
    stop = threading.Event()
    sink = LakeSink(settings, bus=bus, flush_seconds=0.3)
    worker = threading.Thread(target=sink.run, kwargs={"stop": stop})
    worker.start()
    try:
        produce(bus.producer(), SyntheticConfig(episodes=1, steps=5))
        deadline = time.monotonic() + 5
        while sink.stats.commits == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.stats.commits == 1, "no new record arrived, yet the buffer must be committed"
        assert count(settings, "SELECT count(*) FROM steps") == 5
        assert bus.broker.committed[default_group(settings)], "offsets are committed after the flush"
    finally:
        stop.set()
        worker.join()


def test_a_commit_starts_early_enough_to_land_within_flush_seconds(tmp_path):
    from consumers.lake_sink.writer import LakeWriter

    sink = LakeSink(_settings(tmp_path), bus=MemoryBus(), flush_seconds=0.5)
    sink.writer, sink._commit_s = LakeWriter(tables=None), 0.2  # commits here have taken 0.2 s
    assert sink._until_due_s() == 0.5, "nothing buffered: nothing is due"
    key = ("log", "topic", 0)
    sink.writer.track(key, None, 0)
    read = time.monotonic()
    sink.writer.skip(key, 0)  # one message read, not yet committed
    due, waited = sink._until_due_s(), time.monotonic() - read
    assert 0.3 - waited <= due <= 0.3, "due the commit's time before flush_seconds are up"
    sink._commit_s = 5.0  # slow turns: started at most half of flush_seconds early
    assert 0.25 - (time.monotonic() - read) <= sink._until_due_s() <= 0.25
    sink._commit_s = 0.2
    time.sleep(0.3)
    assert sink._until_due_s() <= 0, "the buffered message's commit is due"
    sink.writer.skip(key, 1)
    assert sink._until_due_s() <= 0, "due from the oldest message not yet committed, not the newest"


def test_episodes_without_an_end_are_kept_apart(tmp_path):
    bus, settings = MemoryBus(), _settings(tmp_path)
    produce(bus.producer(), SyntheticConfig(episodes=2, steps=10))
    writer = EpisodeWriter(bus.producer(), chunk_steps=4)
    crashed = writer.start(experiment_id="synthetic", worker_id="w9", env_name="synthetic", env_version=1, seed=1,
                           initial_state=[0.0], task="t", skill_sequence=["reach_red"], policy_id="p",
                           policy_version="1")
    for i in range(6):  # the worker dies after 6 steps: no episode.ended
        writer.step(step=i, sim_time=0.1 * i, observation=[0.0] * 3, action=[0.0] * 4, reward=0.0, task_reward=0.0,
                    skill_id="reach_red", skill_caption="reach", terminated=False, truncated=False)
    writer._flush_steps()
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    assert count(settings, "SELECT count(*) FROM episodes") == 2
    assert count(settings, "SELECT count(*) FROM steps") == 20
    assert count(settings, f"SELECT count(*) FROM partial_steps WHERE episode_id = '{crashed}'") == 6
    assert count(settings, "SELECT list((worker_id, problem)) FROM partial_episodes") == [("w9", "no end")]


def test_poison_messages_are_dead_lettered_and_never_stall_the_partition(tmp_path):
    bus, settings = MemoryBus(MemoryBroker(partitions=1)), _settings(tmp_path)
    producer = bus.producer()
    producer.send_raw(topics.EPISODES, b"x", b"poison", [("robolake.type", b"episode.steps"),
                                                        ("robolake.version", b"1")])
    produce(producer, SyntheticConfig(episodes=1, steps=5))
    stats = LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    assert stats.dead_letters == 1
    assert count(settings, "SELECT count(*) FROM episodes") == 1
    assert bus.broker.committed[default_group(settings)][(topics.EPISODES, 0)] == 4  # past the poison and the episode
    (letter,) = [m for p in bus.broker.logs[topics.DLQ] for m in p]
    assert letter.header("dlq.source.offset") == "0" and letter.header("dlq.consumer") == default_group(settings)


def test_a_lake_outage_is_retried_and_nothing_is_committed_meanwhile(tmp_path):
    bus, settings = MemoryBus(), _settings(tmp_path)
    produce(bus.producer(), SyntheticConfig(episodes=3, steps=5))
    tables = FlakyTables(settings, failures=3)
    committed_during_outage = []
    original = tables.commit

    def watching_commit(rows, offsets):
        if tables.failures:
            committed_during_outage.append(dict(bus.broker.committed[default_group(settings)]))
        original(rows, offsets)

    tables.commit = watching_commit
    stats = LakeSink(settings, bus=bus, tables=tables, flush_seconds=0.05, retry_max_s=0.1).run(until_idle_s=0.3)
    assert stats.retries == 3
    assert committed_during_outage and all(c == {} for c in committed_during_outage)
    assert count(settings, "SELECT count(*) FROM episodes") == 3


def test_an_unwritable_lake_fails_at_start(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/a-file/lake")
    with pytest.raises(LakeUnavailable, match="cannot be opened for writing"):
        LakeSink(settings, bus=MemoryBus()).run(until_idle_s=0.1)


def test_a_new_lake_starts_from_the_log_at_once(tmp_path):
    """The group's offsets on the bus say nothing about a new lake: with no new message, the
    history still lands in it."""
    bus, first = MemoryBus(), _settings(tmp_path, "first")
    _fill(bus, episodes=3)
    group = "shared-group"  # the worst case: an old lake's group, at the end of every partition
    LakeSink(first, bus=bus, group=group, flush_seconds=0.05).run(until_idle_s=0.3)
    second = _settings(tmp_path, "second")
    stop = threading.Event()
    sink = LakeSink(second, bus=bus, group=group, flush_seconds=0.1)
    worker = threading.Thread(target=sink.run, kwargs={"stop": stop})
    worker.start()
    history = sum(bus.log_end_offsets(SOURCE_TOPICS).values())
    try:
        deadline = time.monotonic() + 10
        while sink.stats.messages < history and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert count(second, "SELECT count(*) FROM episodes") == 3
    assert lake_fingerprint(second) == lake_fingerprint(first)


def test_each_lake_has_a_group_of_its_own(tmp_path):
    first, second = _settings(tmp_path, "first"), _settings(tmp_path, "second")
    assert default_group(first) == default_group(_settings(tmp_path, "first"))
    assert default_group(first) != default_group(second)
    assert LakeSink(first, bus=MemoryBus()).group == default_group(first)
    here, there = (Settings.load(env={}, lake="s3://robolake/lake", s3_endpoint=e) for e in ("a:9000", "b:9000"))
    assert default_group(here) != default_group(there), "the same bucket on two servers is two lakes"


def test_compaction_sorts_the_steps_by_episode_into_small_row_groups(tmp_path):
    """Three commits, each sorted by itself, interleave their episodes; compacted, each row group of
    steps holds a range of episodes of its own, so reading some episodes skips the others' rows."""
    from consumers.lake_sink.compact import compact
    from infra.lake_catalog import attach

    settings = _settings(tmp_path)
    bus = MemoryBus(MemoryBroker(partitions=1))
    for seed in range(3):
        produce(bus.producer(), SyntheticConfig(episodes=30, steps=100, seed=seed))
        LakeSink(settings, bus=bus, flush_seconds=60).run(until_idle_s=0.05)
    compact(settings, keep_s=0)
    con = attach(settings, read_only=True)
    try:
        (path,), = con.execute("SELECT data_file FROM ducklake_list_files('lake', 'steps')").fetchall()
        groups = con.execute(
            "SELECT row_group_num_rows, stats_min_value, stats_max_value, compression FROM parquet_metadata(?) "
            "WHERE path_in_schema = 'episode_id' ORDER BY row_group_id", [path]).fetchall()
    finally:
        con.close()
    assert sum(g[0] for g in groups) == 9000 and len(groups) >= 4 and max(g[0] for g in groups) <= 2048
    assert all(before[2] <= after[1] for before, after in zip(groups, groups[1:])), groups
    assert {g[3] for g in groups} == {"LZ4_RAW"}


def _options(tables, name: str) -> set:
    return set(tables.con.execute("SELECT value, scope, scope_entry FROM lake.options() WHERE option_name = ?",
                                  [name]).fetchall())


def _sort_keys(tables) -> list:
    return tables.con.execute("SELECT expression, sort_direction FROM __ducklake_metadata_lake.ducklake_sort_info "
                              "JOIN __ducklake_metadata_lake.ducklake_sort_expression USING (sort_id) "
                              "WHERE end_snapshot IS NULL ORDER BY sort_key_index").fetchall()


def test_a_layout_the_operator_chose_is_kept(tmp_path, monkeypatch):
    # Their own options and sort order for the table, and a sort order they reset.
    for name, change, sort in [("own", "SET SORTED BY (step DESC)", [("step", "DESC")]), ("reset", "RESET SORTED BY", [])]:
        settings = _settings(tmp_path, name)
        tables = LakeTables(settings, "writer")
        assert _sort_keys(tables) == [("episode_id", "ASC"), ("step", "ASC")]
        tables.con.execute("CALL lake.set_option('parquet_row_group_size', 8192, table_name => 'steps')")
        tables.con.execute(f"ALTER TABLE lake.steps {change}")
        tables.close()
        tables = LakeTables(settings, "writer")
        try:
            assert _options(tables, "parquet_row_group_size") == {("8192", "TABLE", "main.steps")}
            assert _sort_keys(tables) == sort
        finally:
            tables.close()
    # Lake-wide and schema-wide choices in a lake made before the layout; the lake-wide one outlives a rebuild.
    settings = _settings(tmp_path, "older")
    with monkeypatch.context() as older:
        older.setattr(LakeTables, "_set_layout", lambda self: None)
        tables = LakeTables(settings, "writer")
    tables.con.execute("CALL lake.set_option('parquet_compression', 'snappy')")
    tables.con.execute("CALL lake.set_option('parquet_row_group_size', 100000, schema => 'main')")
    tables.con.execute("UPDATE lake.lake_commits SET commits = commits + 1")  # as a writer before episode_status
    tables.close()
    tables = LakeTables(settings, "writer")
    try:
        assert _options(tables, "parquet_compression") == {("snappy", "GLOBAL", None)}
        assert _options(tables, "parquet_row_group_size") == {("100000", "SCHEMA", "main")}
        assert _sort_keys(tables) == [("episode_id", "ASC"), ("step", "ASC")], "nobody chose a sort order"
    finally:
        tables.close()


def test_a_commit_of_many_partitions_keeps_their_offsets_in_the_catalog(tmp_path):
    from infra.lake_sql import open_lake

    settings = _settings(tmp_path)
    tables = LakeTables(settings, "writer")
    try:
        keys = [("log", "episodes", p) for p in range(12)]  # more than DuckLake inlines by default (10)
        tables.commit({}, {k: (None, 5) for k in keys})
        tables.commit({}, {k: (5, 9) for k in keys})
        assert tables.all_offsets() == {k: 9 for k in keys}
    finally:
        tables.close()
    con = open_lake(settings, read_only=False)
    try:
        assert con.execute("SELECT count(*) FROM ducklake_list_files('lake', 'lake_offsets')").fetchone()[0] == 0, \
            "offsets rows and their deletes stay in the catalog, not two small files a commit"
    finally:
        con.close()
