"""The lake against adversaries, not only crashes: two writers at once, a zombie sink, broken
episodes, hostile payloads and headers, a reader during compaction (embedded default)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pyarrow as pa

from consumers.lake_sink.compact import compact
from consumers.lake_sink.sink import LakeSink
from consumers.lake_sink.writer import LakeWriter
from infra.bus.memory import MemoryBroker, MemoryBus
from infra.lake_catalog import LakeTables
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.synthetic import SyntheticConfig, produce
from schemas import topics
from schemas.codec import encode
from tests.lake_helpers import Recorder, count, lake_fingerprint


def _settings(tmp_path, name="lake"):
    return Settings.load(env={}, lake=f"file://{tmp_path}/{name}")


def test_concurrent_producer_processes_on_one_embedded_lake_keep_every_episode(tmp_path):
    env = {"ROBOLAKE_BUS": "memory", "ROBOLAKE_LAKE": f"file://{tmp_path}/lake", "PATH": "/usr/bin:/bin"}
    runs = [subprocess.Popen([sys.executable, "-m", "robolake.cli", "produce", "--synthetic", "5", "--steps", "20",
                              "--experiment", experiment, "--seed", str(seed)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for seed, experiment in enumerate(["same", "same", "other"])]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err.decode()[-2000:]
    settings = _settings(tmp_path)
    assert count(settings, "SELECT count(*) FROM episodes") == 15
    assert count(settings, "SELECT count(DISTINCT episode_id) FROM episodes") == 15
    assert count(settings, "SELECT count(*) FROM steps") == 15 * 20
    assert count(settings, "SELECT count(*) FROM partial_episodes") == 0


def _one_partition_log(episodes=4):
    bus = MemoryBus(MemoryBroker(partitions=1))
    produce(bus.producer(), SyntheticConfig(episodes=episodes, steps=10, chunk_steps=5))
    return bus


def _half_read_zombie(settings, bus):
    """A sink that read half the partition and then lost it (a rebalance, a long GC pause)."""
    zombie = LakeSink(settings, bus=bus, group="sinks")
    zombie.writer = LakeWriter(LakeTables(settings, "zombie"), zombie.stats)
    consumer = bus.consumer("sinks", [topics.EPISODES])
    records = consumer.poll_records(1.0, max_records=1000)
    for record in records[: len(records) // 2]:
        zombie._take(consumer, record)
    return zombie, consumer


def test_a_zombie_sink_that_commits_after_the_new_owner_is_fenced(tmp_path):
    settings, bus = _settings(tmp_path), _one_partition_log()
    zombie, consumer = _half_read_zombie(settings, bus)
    LakeSink(settings, bus=bus, group="new-owner", flush_seconds=0.05).run(until_idle_s=0.3)
    assert zombie._commit(consumer, threading.Event(), attempts=1)
    assert zombie.stats.fenced == 1 and zombie.stats.commits == 0
    assert count(settings, "SELECT count(*), count(DISTINCT episode_id) FROM episodes") == 4
    assert count(settings, "SELECT count(*) FROM steps") == 40


def test_a_zombie_that_commits_first_only_moves_the_new_owner_on(tmp_path):
    settings, bus = _settings(tmp_path), _one_partition_log()
    zombie, consumer = _half_read_zombie(settings, bus)
    assert zombie._commit(consumer, threading.Event(), attempts=1) and zombie.stats.commits == 1
    stats = LakeSink(settings, bus=bus, group="new-owner", flush_seconds=0.05).run(until_idle_s=0.3)
    assert stats.fenced == 0
    assert count(settings, "SELECT count(*), count(DISTINCT episode_id) FROM episodes") == 4
    assert count(settings, "SELECT count(*) FROM steps") == 40


def test_two_sinks_racing_over_every_partition_write_each_message_once(tmp_path):
    settings, bus = _settings(tmp_path), MemoryBus(MemoryBroker(partitions=3))
    produce(bus.producer(), SyntheticConfig(episodes=30, steps=10, chunk_steps=3))
    sinks = [LakeSink(settings, bus=bus, group=f"racer-{i}", flush_seconds=0.01, file_bytes=4_000) for i in range(2)]
    threads = [threading.Thread(target=s.run, kwargs={"until_idle_s": 0.5}) for s in sinks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert count(settings, "SELECT count(*), count(DISTINCT episode_id) FROM episodes") == 30
    assert count(settings, "SELECT count(*) FROM steps") == 300
    assert count(settings, "SELECT count(*) FROM (SELECT _log, _topic, _partition, _offset, step FROM steps_all "
                           "GROUP BY ALL HAVING count(*) > 1)") == 0


def test_only_episodes_proven_complete_are_shown_the_rest_say_why(tmp_path):
    recorder = Recorder()
    produce(recorder, SyntheticConfig(episodes=6, steps=12, chunk_steps=4))  # start, 3 chunks, end each
    episodes = [recorder.sent[i:i + 5] for i in range(0, len(recorder.sent), 5)]
    tampered = episodes[4][2][2].table.set_column(
        episodes[4][2][2].table.schema.get_field_index("reward"), "reward", pa.array([9.0] * 4, pa.float32()))
    broken = {
        "ok": episodes[0],
        "missing chunks": episodes[1][:2] + episodes[1][3:],             # a chunk lost (dead-lettered)
        "duplicate chunks": episodes[2][:3] + [episodes[2][2]] + episodes[2][3:],
        "no start": episodes[3][1:],
        "checksum mismatch": episodes[4][:2] + [(*episodes[4][2][:2], type(episodes[4][2][2])(
            "episode.steps", 1, tampered))] + episodes[4][3:],
        "no end": episodes[5][:4],
    }
    bus = MemoryBus(MemoryBroker(partitions=2))
    producer = bus.producer()
    for messages in broken.values():
        for topic, key, batch in messages:
            producer.send(topic, key, batch)
    settings = _settings(tmp_path)
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    ids = {why: messages[-1][1] for why, messages in broken.items()}
    assert count(settings, "SELECT list(episode_id) FROM episodes") == [ids["ok"]]
    assert count(settings, "SELECT count(*) FROM steps") == 12
    problems = dict(open_lake(settings).execute("SELECT episode_id, problem FROM partial_episodes").fetchall())
    assert problems == {ids[why]: why for why in broken if why != "ok"}
    assert count(settings, f"SELECT count(*) FROM partial_steps WHERE episode_id = '{ids['no start']}'") == 12


def test_poison_no_check_foresaw_is_dead_lettered_and_the_partition_goes_on(tmp_path):
    bus = MemoryBus(MemoryBroker(partitions=1))
    producer = bus.producer()
    duplicated = pa.table([pa.array(["a"]), pa.array(["b"])], names=["episode_id", "episode_id"])
    payload, _ = encode(type("B", (), {"table": duplicated, "type": "episode.started", "version": 1})())
    producer.send_raw(topics.EPISODES, b"x", payload, [("robolake.type", b"episode.started"),
                                                      ("robolake.version", b"1")])
    producer.send_raw(topics.EPISODES, b"y", b"...", [("robolake.type", b"episode.steps"),
                                                     ("robolake.version", "²".encode())])
    produce(producer, SyntheticConfig(episodes=2, steps=5))
    settings = _settings(tmp_path)
    stats = LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    assert stats.dead_letters == 2
    assert count(settings, "SELECT count(*) FROM episodes") == 2
    letters = [m for p in bus.broker.logs[topics.DLQ] for m in p]
    assert [m.header("dlq.source.offset") for m in letters] == ["0", "1"]
    assert count(settings, "SELECT max(next_offset) FROM lake_offsets") == len(bus.broker.logs[topics.EPISODES][0])


def test_a_reader_opened_before_a_compaction_reads_the_same_during_and_after(tmp_path):
    settings, bus = _settings(tmp_path), MemoryBus(MemoryBroker(partitions=2))
    for seed in range(4):  # many small commits: many small files
        produce(bus.producer(), SyntheticConfig(episodes=3, steps=10, seed=seed))
        LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    before = lake_fingerprint(settings)
    reader = open_lake(settings)
    stats = compact(settings)  # files of snapshots younger than keep_s stay for running readers
    assert stats.files_after < stats.files_before and stats.files_deleted == 0
    assert reader.execute("SELECT count(*), sum(reward) FROM steps").fetchone()[0] == 120
    assert lake_fingerprint(settings) == before
    reader.close()
    assert compact(settings, keep_s=0).files_deleted > 0  # no reader left: the merged inputs go
    assert lake_fingerprint(settings) == before


def test_offsets_that_restart_never_touch_committed_history(tmp_path):
    """A lake made by replay, then produced onto; partition counts 8 -> 4 -> 8: every episode stays."""
    from consumers.lake_sink.replay import replay_to_lake

    def produce_into(lake, partitions, seed):
        env = {"ROBOLAKE_BUS": "memory", "ROBOLAKE_LAKE": f"file://{tmp_path}/{lake}", "PATH": "/usr/bin:/bin",
               "ROBOLAKE_PARTITIONS": str(partitions)}
        subprocess.run([sys.executable, "-m", "robolake.cli", "produce", "--synthetic", "4", "--steps", "6",
                        "--seed", str(seed)], env=env, check=True, capture_output=True)

    for seed, partitions in enumerate((8, 4, 8)):
        produce_into("source", partitions, seed)
    assert count(_settings(tmp_path, "source"), "SELECT count(*) FROM episodes") == 12
    replay_to_lake(_settings(tmp_path, "source"), _settings(tmp_path, "rebuilt"))
    produce_into("rebuilt", 4, 9)
    assert count(_settings(tmp_path, "rebuilt"), "SELECT count(DISTINCT episode_id) FROM episodes") == 16
    assert count(_settings(tmp_path, "rebuilt"), "SELECT count(*) FROM episodes") == 16


def test_a_replay_through_the_log_does_not_dead_letter_poison_again(tmp_path):
    from consumers.lake_sink.replay import replay_to_lake

    bus = MemoryBus(MemoryBroker(partitions=1))
    bus.producer().send_raw(topics.EPISODES, b"x", b"poison", [("robolake.type", b"episode.steps"),
                                                              ("robolake.version", b"1")])
    produce(bus.producer(), SyntheticConfig(episodes=1, steps=5))
    LakeSink(_settings(tmp_path), bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    letters = sum(len(p) for p in bus.broker.logs[topics.DLQ])
    assert letters == 1
    rebuilt = _settings(tmp_path, "rebuilt")
    replay_to_lake(_settings(tmp_path), rebuilt, bus)
    assert sum(len(p) for p in bus.broker.logs[topics.DLQ]) == letters
    assert count(rebuilt, "SELECT count(*) FROM episodes") == 1


def test_an_episode_started_and_ended_twice_is_one_partial_row(tmp_path):
    recorder = Recorder()
    produce(recorder, SyntheticConfig(episodes=1, steps=4, chunk_steps=4))
    bus = MemoryBus(MemoryBroker(partitions=1))
    producer = bus.producer()
    for topic, key, batch in recorder.sent * 2:  # the whole episode sent twice (a replay onto its own topic)
        producer.send(topic, key, batch)
    settings = _settings(tmp_path)
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    assert open_lake(settings).execute("SELECT problem FROM partial_episodes").fetchall() == [
        ("duplicate start or end",)]


def test_invalid_utf8_in_a_string_column_is_poison_not_a_stalled_sink(tmp_path):
    recorder = Recorder()
    produce(recorder, SyntheticConfig(episodes=1, steps=4, chunk_steps=4))
    topic, key, started = recorder.sent[0]
    bad = started.table.set_column(started.table.schema.get_field_index("task"), "task",
                                   pa.array([b"\xff"], pa.binary()).view(pa.string()))
    bus = MemoryBus(MemoryBroker(partitions=1))
    payload, headers = encode(type(started)(started.type, started.version, bad))
    bus.producer().send_raw(topic, key.encode(), payload, headers)
    produce(bus.producer(), SyntheticConfig(episodes=2, steps=5, seed=3))
    settings = _settings(tmp_path)
    stats = LakeSink(settings, bus=bus, flush_seconds=0.05, retry_max_s=0.1).run(until_idle_s=0.3)
    assert stats.dead_letters == 1 and stats.retries == 0
    assert count(settings, "SELECT count(*) FROM episodes") == 2
