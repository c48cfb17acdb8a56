"""Rollout workers as processes on real Kafka: episodes arrive complete, and killing the workers
loses at most the episode each was running, which never looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from consumers.lake_sink.sink import LakeSink
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


def _send_decisions(stack, experiment: str, count_: int, episodes: int) -> dict[str, list[int]]:
    from producers.decisions import decision_seeds
    from producers.episode_writer import utc_now
    from producers.rollout import task_for
    from schemas.codec import build
    from schemas.events import CURRICULUM_DECISION_V3

    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    producer, asked = bus.producer(), {}
    for i in range(count_):
        decision_id = f"{experiment}-d{i}"
        row = {"decision_id": decision_id, "experiment_id": experiment, "proposal_id": None, "task": "build a tower",
               "skill_sequence": list(task_for("build_tower")), "episodes": episodes, "time": utc_now(),
               "steps": None, "call_id": None, "policy_id": None, "policy_version": None, "expert_skills": [],
               "noise": 0.0, "purpose": "curriculum"}
        producer.send(topics.CURRICULUM, decision_id, build(CURRICULUM_DECISION_V3, [row]))
        asked[decision_id] = decision_seeds(decision_id, episodes)
    producer.close()
    return asked


@pytest.mark.timeout(600)
def test_killed_paused_and_slow_decision_workers_land_each_episode_once(stack, tmp_path):
    """Decisions that take longer than the poll interval; one worker SIGKILLed mid-decision, one
    paused (SIGSTOP) past its session, a third started meanwhile. The live workers neither die
    nor stall, and the lake holds each asked (decision, seed) exactly once."""
    experiment = f"served-{uuid.uuid4().hex[:6]}"
    log = open(tmp_path / "workers.log", "w")  # kept by pytest for a post-mortem
    env = {**os.environ, "ROBOLAKE_BUS": stack.bus, "ROBOLAKE_S3_ENDPOINT": stack.s3_endpoint,
           "ROBOLAKE_KAFKA_MAX_POLL_INTERVAL": "3"}  # each decision runs for longer than this

    def worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "robolake.cli", "produce", "--from-decisions", "--experiment",
                                 experiment, "--until-idle", "30", "-v"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    killed, paused = worker(), worker()
    # Both workers join the group before any decision is sent (well within their 30 s of idleness),
    # and 12 decisions give each of them work after the first rebalance (one worker once ran all 8
    # of a batch sent at once, 3 s each, before the other, still starting, had joined).
    time.sleep(12)
    asked = _send_decisions(stack, experiment, count_=12, episodes=20)
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    reader, started, deadline = bus.consumer(None, [topics.EPISODES]), Counter(), time.monotonic() + 120
    while min(started[killed.pid], started[paused.pid]) < 2 and time.monotonic() < deadline:  # both mid-decision
        started.update(int(r["worker_id"].split("-")[-2]) for d in reader.poll(0.5)
                       if d.batch.type == "episode.started" for r in d.batch.rows() if r["experiment_id"] == experiment)
    reader.close()
    assert min(started[killed.pid], started[paused.pid]) >= 2, f"both workers must be under way: {started}"
    os.killpg(killed.pid, signal.SIGKILL)
    os.killpg(paused.pid, signal.SIGSTOP)
    fresh = worker()
    time.sleep(14)  # past the 10 s session: the group hands the paused worker's partitions on
    os.killpg(paused.pid, signal.SIGCONT)
    codes = [p.wait(timeout=400) for p in (paused, fresh)]
    killed.wait()
    log.close()
    assert codes == [0, 0], (tmp_path / "workers.log").read_text()[-3000:]
    settings = _lake(stack)
    _sink(stack, settings, experiment)
    got = count(settings, f"SELECT list((decision_id, seed)) FROM episodes WHERE experiment_id = '{experiment}'")
    assert sorted(got) == sorted((d, s) for d, seeds in asked.items() for s in seeds), "each asked episode once"
