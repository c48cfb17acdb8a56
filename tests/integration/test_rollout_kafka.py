"""Rollout workers as processes on real Kafka: episodes arrive complete, and killing the workers
loses at most the episode each was running, which never looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from consumers.lake_sink import LakeSink
from infra.bus.kafka import KafkaBus
from schemas import topics
from tests.lake_helpers import count


def _lake(stack):
    return stack.replace(lake=f"s3://{stack.lake_bucket}/tests/rollout-{uuid.uuid4().hex[:8]}")


def _produce(stack, experiment: str, *args) -> subprocess.Popen:
    env = {**os.environ, "ROBOLAKE_BUS": stack.bus, "ROBOLAKE_S3_ENDPOINT": stack.s3_endpoint}
    return subprocess.Popen([sys.executable, "-m", "robolake.cli", "produce", "--experiment", experiment, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _sink(stack, settings, experiment):
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    LakeSink(settings, bus=bus, group=f"sink-{experiment}", flush_seconds=0.5).run(until_idle_s=2)


def test_two_worker_processes_stream_complete_episodes(stack):
    experiment = f"workers-{uuid.uuid4().hex[:6]}"
    run = _produce(stack, experiment, "--episodes", "6", "--task", "place_blue_on_green", "--workers", "2")
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    settings = _lake(stack)
    _sink(stack, settings, experiment)
    where = f"experiment_id = '{experiment}'"
    assert count(settings, f"SELECT count(*) FROM episodes WHERE {where} AND task_success") == 6
    assert count(settings, f"SELECT count(DISTINCT worker_id) FROM episodes WHERE {where}") == 2
    assert count(settings, f"SELECT count(*) FROM steps WHERE {where}") == \
        count(settings, f"SELECT sum(length) FROM episodes WHERE {where}")


def test_killed_workers_lose_at_most_their_current_episode(stack):
    experiment = f"killed-{uuid.uuid4().hex[:6]}"
    run = _produce(stack, experiment, "--episodes", "400", "--task", "build_tower", "--workers", "2")
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    reader, ended, deadline = bus.consumer(None, [topics.EPISODES]), 0, time.monotonic() + 120
    while ended < 6 and time.monotonic() < deadline:  # kill once the workers are well under way
        ended += sum(1 for d in reader.poll(0.5) if d.batch.type == "episode.ended"
                     and d.batch.rows()[0]["experiment_id"] == experiment)
    reader.close()
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    settings = _lake(stack)
    _sink(stack, settings, experiment)
    where = f"experiment_id = '{experiment}'"
    complete = count(settings, f"SELECT count(*) FROM episodes WHERE {where}")
    partial = count(settings, f"SELECT count(*) FROM partial_episodes WHERE {where}")
    assert 6 <= complete < 400, "the kill must land mid-run"
    assert partial <= 2, "each of the two workers loses at most the episode it was running"
    assert count(settings, f"SELECT count(*) FROM steps WHERE {where}") == \
        count(settings, f"SELECT sum(length) FROM episodes WHERE {where}")
