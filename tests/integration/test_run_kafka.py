"""`robolake run` scaled out as if over several machines: the run, two lake sinks, three rollout workers
(`robolake produce --from-decisions`) and the learner (`robolake learn`) as separate processes, each in
its own working directory with its own cache, sharing nothing but URLs: Kafka, the lake and checkpoints
on MinIO, the lake's catalog on PostgreSQL. Sinks and workers are SIGKILLed at random and started
again. Then the same invariants as on the embedded default: every stage once, every decision's seeds
complete once, no event twice, and every episode's rows match its checksum."""

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

from tests.run_checks import check_exactly_once, events, query

pytest.importorskip("torch")


class _Host:
    """One process of the scaled-out run, on a 'machine' of its own: a directory and a cache."""

    def __init__(self, root, name: str, env: dict, log, *args: str):
        self.dir = root / name
        (self.dir / "home").mkdir(parents=True)
        self.env = {**env, "ROBOLAKE_HOME": str(self.dir / "home")}
        self.log, self.args, self.kills = log, args, 0
        self.process = self.start()

    def start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "robolake.cli", *self.args], env=self.env, cwd=self.dir,
                                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_and_restart(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.kills += 1
        self.process = self.start()

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(60)


@pytest.mark.timeout(1500)
def test_run_over_separate_hosts_with_sinks_and_workers_killed_lands_everything_once(stack, pg_catalog, tmp_path):
    experiment = f"run-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}", catalog=pg_catalog())
    env = {**os.environ, "ROBOLAKE_BUS": stack.bus, "ROBOLAKE_LAKE": settings.lake,
           "ROBOLAKE_S3_ENDPOINT": stack.s3_endpoint, "ROBOLAKE_CATALOG": settings.catalog}
    log = open(tmp_path / "services.log", "w")  # kept by pytest for a post-mortem
    group = f"sink-{experiment}"
    sinks = [_Host(tmp_path, f"sink-{i}", env, log, "sink", "--group", group, "--flush-seconds", "0.5")
             for i in range(2)]
    workers = [_Host(tmp_path, f"worker-{i}", env, log, "produce", "--from-decisions", "--experiment", experiment)
               for i in range(3)]
    learner = _Host(tmp_path, "learner", env, log, "learn", "--experiment", experiment, "--device", "cpu")
    done, rng = threading.Event(), random.Random(5)

    def chaos():  # a SIGKILL every 8-20 s to a sink or a worker, started again at once
        while not done.wait(rng.uniform(8, 20)):
            rng.choice(sinks + workers).kill_and_restart()

    killer = threading.Thread(target=chaos)
    runner = _Host(tmp_path, "run", env, log, "run", "--experiment", experiment, "--external-workers",
                   "--external-learner", "--skills", "lift_red", "--iterations", "2", "--train-steps", "8",
                   "--bootstrap-episodes", "2", "--eval-episodes", "1", "--episodes", "3", "--tasks", "1",
                   "-o", "report")
    killer.start()
    try:
        assert runner.process.wait(timeout=1200) == 0, (tmp_path / "services.log").read_text()[-4000:]
    finally:
        done.set()
        killer.join(60)
        for host in sinks + workers + [learner]:
            host.stop()
        log.close()
    kills = sum(h.kills for h in sinks + workers)
    assert sum(h.kills for h in sinks) >= 1 and sum(h.kills for h in workers) >= 1, "the chaos must hit both roles"
    print(f"{kills} kills: sinks {[h.kills for h in sinks]}, workers {[h.kills for h in workers]}")
    _land_what_is_left(settings, group)  # a sink started just before the end may not have committed
    check_exactly_once(settings, experiment, iterations=2, train_steps=8)
    assert query(settings, "SELECT count(*) FROM (SELECT episode_id, chunk FROM chunks GROUP BY ALL "
                           "HAVING count(*) > 1)") == [(0,)], "no chunk twice"
    verified = subprocess.run([sys.executable, "-m", "robolake.cli", "verify"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr  # every episode's rows match its checksum
    assert len({r["worker_id"] for r in _episodes(settings, experiment)}) >= 3, "the workers all took decisions"
    assert any(r["policy_id"] == f"pac:{experiment}-pac" for r in _episodes(settings, experiment))
    trained = [r for r in events(settings, "run.stage", experiment) if (r["stage"], r["status"]) == ("train", "done")]
    assert len(trained) == 2 and all('"learner": "external"' in r["detail"] for r in trained)
    served = (tmp_path / "services.log").read_text()  # the run asked; the learner process trained
    assert f"training {experiment}-pac to step 8" in served and f"training {experiment}-pac to step 16" in served


def _land_what_is_left(settings, group: str) -> None:
    from consumers.lake_sink.sink import LakeSink

    LakeSink(settings, group=group, flush_seconds=0.5).run(until_idle_s=2)


def _episodes(settings, experiment):
    from infra.lake_sql import open_lake

    con = open_lake(settings)
    try:
        rows = con.execute("SELECT worker_id, policy_id FROM episodes WHERE experiment_id = ?", [experiment]).fetchall()
    finally:
        con.close()
    return [{"worker_id": w, "policy_id": p} for w, p in rows]
