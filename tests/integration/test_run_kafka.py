"""`robolake run` scaled out on the real stack: the run in one process, the lake sink in another,
two rollout workers (`robolake produce --from-decisions`) in two more, the learner (`robolake
learn`) in a fifth, all talking through Kafka, the lake and checkpoints on MinIO. Then the same invariants as on the
embedded default: every stage once, every decision's seeds complete once, no event twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.run_checks import check_exactly_once, events

pytest.importorskip("torch")


def _start(env, log, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robolake.cli", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.timeout(1500)
def test_run_with_separate_sink_rollout_workers_and_learner(stack, tmp_path):
    experiment = f"run-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}")
    env = {**os.environ, "ROBOLAKE_BUS": stack.bus, "ROBOLAKE_LAKE": settings.lake,
           "ROBOLAKE_S3_ENDPOINT": stack.s3_endpoint}
    log = open(tmp_path / "services.log", "w")  # kept by pytest for a post-mortem
    services = [_start(env, log, "sink", "--group", f"sink-{experiment}", "--flush-seconds", "0.5")]
    services += [_start(env, log, "produce", "--from-decisions", "--experiment", experiment) for _ in range(2)]
    services += [_start(env, log, "learn", "--experiment", experiment, "--device", "cpu")]
    try:
        run = subprocess.run(
            [sys.executable, "-m", "robolake.cli", "run", "--experiment", experiment, "--external-workers",
             "--external-learner", "--skills", "lift_red", "--iterations", "2", "--train-steps", "8", "--bootstrap-episodes", "1",
             "--eval-episodes", "1", "--episodes", "2", "--tasks", "1", "-o", str(tmp_path / "report")],
            env=env, capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "2 iterations done" in run.stdout
    finally:
        for service in services:
            os.killpg(service.pid, signal.SIGTERM)
        for service in services:
            service.wait(60)
        log.close()
    check_exactly_once(settings, experiment, iterations=2, train_steps=8)
    workers = {r["worker_id"] for r in _episodes(settings, experiment)}
    # both worker processes took decisions (keyed by decision id, they spread over the partitions: the 6
    # bootstrap and 6 evaluation decisions all landing on one worker's half has a chance of 2 in 4096)
    assert len(workers) == 2, workers
    assert any(r["policy_id"] == f"pac:{experiment}-pac" for r in _episodes(settings, experiment))
    trained = [r for r in events(settings, "run.stage", experiment) if (r["stage"], r["status"]) == ("train", "done")]
    assert len(trained) == 2 and all('"learner": "external"' in r["detail"] for r in trained)
    served = (tmp_path / "services.log").read_text()  # the run asked; the learner process trained
    assert f"training {experiment}-pac to step 8" in served and f"training {experiment}-pac to step 16" in served


def _episodes(settings, experiment):
    from infra.lake_sql import open_lake

    con = open_lake(settings)
    try:
        rows = con.execute("SELECT worker_id, policy_id FROM episodes WHERE experiment_id = ?", [experiment]).fetchall()
    finally:
        con.close()
    return [{"worker_id": w, "policy_id": p} for w, p in rows]
