"""The lake on MinIO fed from Kafka: CLI sink, SQL over s3://, compaction, replay to a new lake
and to a topic."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from infra.bus.kafka import KafkaBus
import duckdb
import pytest

from infra.lake_sql import open_lake
from producers.synthetic import SyntheticConfig, produce
from tests.bus_contract import drain
from tests.lake_helpers import count, lake_fingerprint


def _cli(settings, *args):
    env = {**os.environ, "ROBOLAKE_BUS": settings.bus, "ROBOLAKE_LAKE": settings.lake,
           "ROBOLAKE_S3_ENDPOINT": settings.s3_endpoint}
    try:
        return subprocess.run([sys.executable, "-m", "robolake.cli", *args], env=env, capture_output=True,
                              text=True, timeout=150)
    except subprocess.TimeoutExpired as exc:  # say what it was doing
        raise AssertionError(f"robolake {' '.join(args)} hung; its log:\n{exc.stderr}") from None


def test_sink_sql_compact_and_replay_on_kafka_and_minio(stack):
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    topic, group = f"lake.s3.{uuid.uuid4().hex[:6]}", f"sink-{uuid.uuid4().hex[:6]}"
    bus.ensure_topics([topic])
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/s3lake-{uuid.uuid4().hex[:8]}")
    for seed in range(3):  # three batches, three sink runs: several files per partition
        producer = bus.producer()
        produce(producer, SyntheticConfig(episodes=4, steps=15, chunk_steps=5, seed=seed,
                                          experiment_id=f"exp-{seed % 2}"), topic=topic)
        producer.close()
        sink = _cli(settings, "sink", "--group", group, "--topics", topic, "--until-idle", "1",
                    "--flush-seconds", "0.2")
        assert sink.returncode == 0, sink.stderr

    from robolake.report.health import sink_lag

    con = open_lake(settings)
    assert [r["lag"] for r in sink_lag(bus, con, [topic])] == [0] * stack.partitions  # sunk to the log's end
    con.close()
    status = _cli(settings, "status")
    assert status.returncode == 0 and "messages behind the log" in status.stdout, status.stdout + status.stderr
    assert "workers 1 live" in status.stdout and "synthetic-0: 12 episodes" in status.stdout, status.stdout

    result = _cli(settings, "sql", "SELECT experiment_id, count(*) FROM episodes GROUP BY ALL ORDER BY 1",
                  "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ['"exp-0",8', '"exp-1",4']
    for statement in (f"COPY (SELECT 1) TO '{settings.lake_root}/data/x.csv'",
                      f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{settings.lake_root}/data/x.csv'"):
        refused = _cli(settings, "sql", statement)
        assert refused.returncode == 2 and "COPY statements are refused" in refused.stderr
    con = open_lake(settings)  # past the statement check: the connection itself has no file access
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        con.execute(f"COPY (SELECT 1) TO '{settings.lake_root}/x.csv'")
    con.close()

    before = lake_fingerprint(settings)
    assert count(settings, f"SELECT sum(next_offset) FROM lake_offsets WHERE _topic = '{topic}'") == 12 * 5
    compacted = _cli(settings, "compact", "--keep-seconds", "0")
    assert compacted.returncode == 0, compacted.stderr
    words = compacted.stdout.split()  # "<before> data files -> <after> (…)"
    files_before, files_after = int(words[0]), int(words[4])
    assert files_after < files_before, compacted.stdout
    assert lake_fingerprint(settings) == before

    from consumers.lake_sink.replay import replay_to_lake

    rebuilt = settings.replace(lake=f"{settings.lake}-rebuilt")
    stats = replay_to_lake(settings, rebuilt, bus, topics=[topic])
    assert stats.from_lake == 12 * 5 and stats.from_bus == 0  # the lake had it all; the log adds nothing
    assert lake_fingerprint(rebuilt) == before

    restream = _cli(settings, "replay", "--to-topic", f"{topic}.exp1", "--where", "experiment_id = 'exp-1'")
    assert restream.returncode == 0, restream.stderr
    assert "re-streamed 4 episodes (20 messages)" in restream.stdout
    reader = bus.consumer(None, [f"{topic}.exp1"])
    assert len(drain(reader, 20)) == 20
    reader.close()
    tail = _cli(settings, "tail", f"{topic}.exp1")  # a topic of the user's own: tail reads what the bus has
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 20 and "starting episode" in tail.stdout, tail.stdout
    assert count(settings, "SELECT count(*) FROM steps") == 12 * 15


def test_in_process_bus_with_a_lake_on_minio(stack):
    """The embedded bus with a lake on MinIO (its catalog beside the stack's state)."""
    from consumers.lake_sink.sink import LakeSink
    from infra.bus.backend import open_bus

    settings = stack.replace(bus="memory", lake=f"s3://{stack.lake_bucket}/tests/memory-{uuid.uuid4().hex[:8]}")
    produce(open_bus(settings).producer(), SyntheticConfig(episodes=2, steps=5))
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    assert count(settings, "SELECT count(*) FROM episodes") == 2
