"""The lake sink on real Kafka + MinIO under faults: SIGKILL at random points, MinIO stopped,
broker killed. Each time the lake must equal one written by a sink that never failed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from consumers.lake_sink.sink import LakeSink
from infra import stack as native_stack
from infra.bus.kafka import KafkaBus
from infra.lake_catalog import LakeTables
from infra.process import wait_until
from producers.synthetic import SyntheticConfig, produce
from tests.lake_helpers import count, lake_fingerprint


def _lake(stack, name: str):
    return stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{name}-{uuid.uuid4().hex[:8]}")


def _produce(bus, topic: str, episodes: int, seed: int) -> list[str]:
    producer = bus.producer()
    ids = produce(producer, SyntheticConfig(episodes=episodes, steps=40, chunk_steps=10, seed=seed,
                                            experiment_id="faults"), topic=topic)
    producer.close()
    return ids


def _reference(stack, bus, topic: str):
    reference = _lake(stack, "reference")
    LakeSink(reference, bus=bus, group=f"ref-{uuid.uuid4().hex[:6]}", source_topics=[topic],
             flush_seconds=0.2).run(until_idle_s=2)
    return lake_fingerprint(reference)


def test_sigkill_at_random_points_then_restart_gives_the_same_lake(stack, tmp_path):
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    topic = f"faults.kill.{uuid.uuid4().hex[:6]}"
    bus.ensure_topics([topic])
    crashed, group = _lake(stack, "killed"), f"killed-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "ROBOLAKE_BUS": stack.bus, "ROBOLAKE_LAKE": crashed.lake,
           "ROBOLAKE_S3_ENDPOINT": stack.s3_endpoint}
    rng, kills = random.Random(11), 0
    produced = _produce(bus, topic, 20, seed=1)
    for round_ in range(8):
        log_file = open(tmp_path / f"sink-{round_}.log", "w")  # kept by pytest for a post-mortem
        sink = subprocess.Popen([sys.executable, "-m", "robolake.cli", "sink", "--group", group,
                                 "--topics", topic, "--flush-seconds", "0.2", "--file-mb", "1"],
                                env=env, stdout=log_file, stderr=log_file)
        time.sleep(rng.uniform(1.0, 6.0))  # start-up, consuming, mid-flush: wherever it is
        sink.send_signal(signal.SIGKILL)
        sink.wait()
        kills += 1
        if round_ == 3:
            produced += _produce(bus, topic, 10, seed=2)  # more data between kills
    watcher = bus.consumer(group, [topic])
    progress = sum(watcher.committed().values())
    watcher.close()
    final = LakeSink(crashed, bus=bus, group=group, source_topics=[topic], flush_seconds=0.2).run(until_idle_s=2)
    print(f"killed sinks committed {progress} offsets; the final run wrote {final.messages} messages")

    assert kills == 8 and progress > 0, "the killed sinks must have done (and committed) some of the work"
    expected = _reference(stack, bus, topic)
    assert expected["episodes"][0] == len(produced) == 30
    assert expected["steps"][0] == 30 * 40
    assert lake_fingerprint(crashed) == expected
    assert count(crashed, "SELECT count(*) - count(DISTINCT episode_id) FROM episodes") == 0


@pytest.fixture
def minio(stack):
    (service,) = [s for s in native_stack.services(stack) if s.name == "minio"]
    yield service
    if service.process.running_pid() is None:  # never leave the shared stack without MinIO
        service.process.start(service.argv(), service.env())
        wait_until(service.healthy, 60)


def test_a_stopped_minio_is_retried_nothing_is_committed_and_the_sink_catches_up(stack, minio):
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    topic, group = f"faults.minio.{uuid.uuid4().hex[:6]}", f"outage-{uuid.uuid4().hex[:6]}"
    bus.ensure_topics([topic])
    settings = _lake(stack, "outage")
    sink = LakeSink(settings, bus=bus, group=group, source_topics=[topic], flush_seconds=0.3, retry_max_s=2)
    stop = threading.Event()
    worker = threading.Thread(target=sink.run, kwargs={"stop": stop})
    worker.start()
    try:
        _produce(bus, topic, 5, seed=3)
        assert wait_until(lambda: sink.stats.commits >= 1 and not sink.writer.dirty, 30)
        watcher = bus.consumer(group, [topic])
        before = watcher.committed()
        minio.process.stop()
        _produce(bus, topic, 5, seed=4)
        assert wait_until(lambda: sink.stats.retries >= 2, 60), "the sink must keep retrying"
        assert watcher.committed() == before, "nothing may be committed while MinIO is down"
        watcher.close()
        minio.process.start(minio.argv(), minio.env())
        assert wait_until(minio.healthy, 60)
        assert wait_until(lambda: count(settings, "SELECT count(*) FROM episodes") == 10, 90)
    finally:
        stop.set()
        worker.join(60)
    assert count(settings, "SELECT count(*) FROM steps") == 10 * 40


def test_a_killed_broker_loses_nothing_in_the_lake(stack, private_broker):
    server, start = private_broker
    bus = KafkaBus([f"127.0.0.1:{server.port}"], stack.max_message_bytes, partitions=4)
    topic, group = "faults.broker", "broker-sink"
    bus.ensure_topics([topic])
    settings = _lake(stack, "broker")
    sink = LakeSink(settings, bus=bus, group=group, source_topics=[topic], flush_seconds=0.3)
    stop = threading.Event()
    worker = threading.Thread(target=sink.run, kwargs={"stop": stop})
    worker.start()
    try:
        produced = _produce(bus, topic, 10, seed=5)
        assert wait_until(lambda: sink.stats.commits >= 1, 30)
        os.kill(server.process.running_pid(), signal.SIGKILL)
        wait_until(lambda: server.process.running_pid() is None, 10)
        time.sleep(2)
        start()
        produced += _produce(bus, topic, 10, seed=6)
        assert wait_until(lambda: count(settings, "SELECT count(*) FROM episodes") == 20, 120)
    finally:
        stop.set()
        worker.join(60)
    assert count(settings, "SELECT count(DISTINCT episode_id) FROM steps") == len(produced) == 20
    assert count(settings, "SELECT count(*) FROM steps") == 20 * 40


class _PausingTables(LakeTables):
    """Stalls inside its first commit (a GC pause, a hung disk) for longer than the poll interval."""

    def __init__(self, settings, pause_s: float):
        super().__init__(settings, "pausing")
        self.pause_s, self.paused = pause_s, threading.Event()

    def commit(self, tables, offsets):
        if not self.paused.is_set():
            self.paused.set()
            time.sleep(self.pause_s)
        super().commit(tables, offsets)


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_two_sinks_in_one_group_a_rebalance_and_a_paused_zombie_lose_and_duplicate_nothing(stack, catalog, request):
    """On PostgreSQL the fence is the server's transaction: the zombie's late commit is refused there."""
    topic, group = f"faults.zombie.{uuid.uuid4().hex[:6]}", f"zombie-{uuid.uuid4().hex[:6]}"
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions, max_poll_interval_s=6)
    bus.ensure_topics([topic])
    settings = _lake(stack, "zombie")
    if catalog == "postgresql":
        settings = settings.replace(catalog=request.getfixturevalue("pg_catalog")())
    produced = _produce(bus, topic, 12, seed=7)
    pausing = _PausingTables(settings, pause_s=15)  # past the 6 s poll interval: it leaves the group
    zombie = LakeSink(settings, bus=bus, tables=pausing, group=group, source_topics=[topic], flush_seconds=0.2)
    healthy = LakeSink(settings, bus=bus, group=group, source_topics=[topic], flush_seconds=0.2)
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, kwargs={"stop": stop}) for s in (zombie, healthy)]
    threads[0].start()
    assert wait_until(pausing.paused.is_set, 60), "the first sink must reach a commit"
    threads[1].start()  # joins the group (a rebalance), then gets every partition when the zombie is out
    try:
        produced += _produce(bus, topic, 12, seed=8)
        assert wait_until(lambda: count(settings, "SELECT count(*) FROM episodes") == 24, 120)
        time.sleep(8)  # the zombie wakes up, tries to commit what it held, and polls again
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    print(f"zombie: {zombie.stats}; healthy: {healthy.stats}")
    assert zombie.stats.fenced + healthy.stats.fenced >= 1, "someone must have been fenced"
    assert count(settings, "SELECT count(*), count(DISTINCT episode_id) FROM episodes") == 24
    assert count(settings, "SELECT count(*) FROM steps") == 24 * 40
    assert count(settings, "SELECT count(*) FROM partial_episodes") == 0
    assert count(settings, "SELECT count(*) FROM (SELECT _offset FROM chunks GROUP BY _partition, _offset "
                           "HAVING count(*) > 1)") == 0
    assert len(produced) == 24


def test_a_new_lake_holds_the_history_within_seconds_without_new_messages(stack):
    """An old lake's group stands at the end of every partition; a sink of a new lake in that
    group must still start where the lake says (the beginning), not wait for traffic."""
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    topic, group = f"faults.newlake.{uuid.uuid4().hex[:6]}", f"shared-{uuid.uuid4().hex[:6]}"
    bus.ensure_topics([topic])
    produced = _produce(bus, topic, 6, seed=9)
    LakeSink(_lake(stack, "old"), bus=bus, group=group, source_topics=[topic], flush_seconds=0.2).run(until_idle_s=2)
    settings = _lake(stack, "new")
    sink = LakeSink(settings, bus=bus, group=group, source_topics=[topic], flush_seconds=0.2)
    stop = threading.Event()
    worker = threading.Thread(target=sink.run, kwargs={"stop": stop})
    started = time.monotonic()
    worker.start()
    try:
        assert wait_until(lambda: sink.stats.commits >= 1 and not sink.writer.dirty
                          and sink.stats.messages == 6 * 6, 30), f"the history did not land: {sink.stats}"
    finally:
        stop.set()
        worker.join(60)
    print(f"the new lake held the history after {time.monotonic() - started:.1f}s")
    assert count(settings, "SELECT count(*) FROM episodes") == len(produced) == 6
