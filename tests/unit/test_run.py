"""`robolake run` on the embedded default: the loop to a report, a rerun that does nothing, a run
killed with SIGKILL five times at random moments that ends with nothing lost and nothing twice,
a second run that refuses, and a failing stage recorded, retried and stopped on cleanly."""

from __future__ import annotations

import os
import random
from collections import Counter
import signal
import subprocess
import sys
import time

import pytest

from infra.settings import Settings
from robolake.cli import main
from tests.run_checks import check_exactly_once, events, query

pytest.importorskip("torch")

# Small enough for a test: two skills, a few episodes, a few learner steps.
SMALL = ["--skills", "reach_red", "lift_red", "--iterations", "2", "--train-steps", "8", "--bootstrap-episodes", "1",
         "--eval-episodes", "1", "--episodes", "1", "--tasks", "1", "--workers", "1"]


def _settings(lake) -> Settings:
    return Settings.load(lake=f"file://{lake}", bus="memory")


def _args(lake, experiment="exp", extra=()):
    return ["run", "--experiment", experiment, "--lake", f"file://{lake}", "--bus", "memory",
            "-o", str(lake.parent / "report"), *SMALL, *extra]


@pytest.mark.timeout(900)
def test_run_reaches_its_report_and_a_rerun_does_nothing(small_run, capsys):
    """The shared small run (conftest.small_run: `robolake run --config small.toml`), then reruns."""
    import robolake

    tmp_path, lake = small_run.root, small_run.lake
    assert small_run.code == 0
    out = small_run.out
    assert "2 iterations done" in out and "report: " in out
    assert (tmp_path / "report" / "exp.html").stat().st_size > 1000
    recorded = (tmp_path / "report" / "exp.md").read_text()  # the resolved config, as a config file keys it
    assert "| train_steps | 8 |" in recorded and "| skills | reach_red, lift_red |" in recorded
    assert f"| lake | file://{lake} |" in recorded and "| model | tiny |" in recorded
    check_exactly_once(_settings(lake))
    # only the evaluations render (their first episodes: here their one each), and they are the report's videos
    evaluations = [d for d in events(_settings(lake), "curriculum.decision") if d.get("purpose") == "eval"]
    framed = query(_settings(lake), "SELECT DISTINCT decision_id, episode_id FROM frames JOIN episodes USING "
                                    "(episode_id)")
    assert sorted(d for d, _ in framed) == sorted(d["decision_id"] for d in evaluations)
    per_task = Counter(d["skill_sequence"][-1] for d in evaluations)  # one evaluation per iteration
    page = (tmp_path / "report" / "exp.html").read_text()
    assert page.count("<video ") == sum(min(2, n) for n in per_task.values()) and "<h3>lift_red</h3>" in page
    assert main(["tail", "all", "--experiment", "exp", "--lake", f"file://{lake}", "--bus", "memory"]) == 0
    conversation = capsys.readouterr().out  # the run's stages and who acted are part of the conversation
    assert "run exp: iteration 1 train done" in conversation and "iteration 2 curriculum done" in conversation
    assert 'with pac:exp-pac@step-8' in conversation and "with scripted_expert@1+noise0.3" in conversation
    counts = ("SELECT count(*) FROM events", "SELECT count(*) FROM episodes")
    before = [query(_settings(lake), sql) for sql in counts]
    assert main(_args(lake)) == 0  # the same run, from flags
    assert "collect ..." not in capsys.readouterr().out  # nothing redone
    assert [query(_settings(lake), sql) for sql in counts] == before
    result = robolake.run(tmp_path / "small.toml", bus="memory")  # and from Python
    assert "collect ..." not in capsys.readouterr().out
    assert result.iterations == 2 and result.stopped is None and result.report == tmp_path / "report" / "exp.html"
    assert set(result.success) >= {"reach_red", "lift_red"} and all(n >= 1 for _, n in result.success.values())
    assert result.config["train_steps"] == 8 and result.config["experiment"] == "exp"
    assert main(_args(lake, extra=["--skills", "reach_blue"])) == 2  # another experiment under the same id
    assert "was started with base_skills ['reach_red', 'lift_red'] (now ['reach_blue'])" in capsys.readouterr().err
    assert main(_args(lake, extra=["-o", "/proc/no-reports-here"])) == 1  # refused before any work
    assert "the report cannot be written to /proc/no-reports-here" in capsys.readouterr().err


@pytest.mark.timeout(1500)
def test_killed_run_resumes_with_nothing_lost_or_twice(tmp_path):
    """Five SIGKILLs, each at a random moment after the restarted run began a stage. One iteration:
    the seeded waits before the kills add up to 21.5 s of the run's work, so every kill lands in the
    first iteration (a second one ran only in the final, uninterrupted run)."""
    lake = tmp_path / "lake"
    rng = random.Random(7)
    cmd = [sys.executable, "-m", "robolake.cli", *_args(lake, extra=["--iterations", "1"])]
    killed_in = []
    while len(killed_in) < 5:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 preexec_fn=os.setpgrp)
        stage = next((line.strip() for line in child.stdout if line.rstrip().endswith(" ...")), None)
        if stage is None:  # every stage was done: nothing left to interrupt
            break
        time.sleep(rng.uniform(0.2, 12.0))
        if child.poll() is not None:
            break
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        killed_in.append(stage)
    assert len(killed_in) >= 3, f"the run finished too soon to be killed often: {killed_in}"
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    if len(set(killed_in)) > 1:  # a stage was done before the last kill: the final run says where it takes over
        assert "resuming experiment 'exp' at iteration" in final.stdout, final.stdout[:2000]
    check_exactly_once(_settings(lake), iterations=1)


def test_a_second_run_of_the_experiment_refuses(tmp_path, capsys):
    from infra.lake_catalog import lake_lock

    lake = tmp_path / "lake"
    settings = Settings.load(lake=f"file://{lake}", bus="memory")
    lake.mkdir()
    with lake_lock(settings, "run-exp", wait=False):
        assert main(_args(lake)) == 1
    assert "another `robolake run` of experiment 'exp' is running" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--experiment", "../etc"], "--experiment: expected ASCII letters"),
    (["--experiment", "x", "--skills", "juggle"], "juggle"),
    (["--experiment", "x", "--iterations", "0"], "--iterations: expected a positive integer"),
    (["--experiment", "x", "--external-learner"], "--external-learner needs a shared log"),
    (["--experiment", "x", "--frame-size", "300"], "--frame-size: expected 128 to 256 (px), got '300'"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    try:
        code = main(["run", "--lake", f"file://{tmp_path}/lake", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()  # refused before any work



def test_learn_needs_a_shared_log(tmp_path, capsys):
    assert main(["learn", "--experiment", "x", "--lake", f"file://{tmp_path}/lake", "--bus", "memory"]) == 2
    assert "robolake learn serves a run in another process: it needs a shared log" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


class FailingVLM:
    backend, model = "scripted", "always-down"

    def complete(self, request):
        from consumers.curriculum.vlm import VLMError

        raise VLMError("503 Service Unavailable (the test's model is down)")


def test_a_failing_stage_is_recorded_retried_and_stops_the_run_cleanly(tmp_path, monkeypatch):
    from robolake.experiment import loop
    from robolake.experiment.errors import StageFailed
    from robolake.experiment.loop import Run, RunConfig

    monkeypatch.setattr(loop.time, "sleep", lambda s: None)  # the backoff, not under test here
    lake = tmp_path / "lake"
    settings = Settings.load(lake=f"file://{lake}", bus="memory")
    config = RunConfig("exp", iterations=1, base_skills=("reach_red",), bootstrap_episodes=1, eval_episodes=1,
                       train_steps=1, workers=1, retries=2)  # the stage under test is the curriculum
    run = Run(settings, config, vlm=FailingVLM(), say=lambda text: None, bars=False)
    with pytest.raises(StageFailed, match="curriculum of iteration 1 failed 2 times.*503"):
        run.run()
    run.close()
    stages = [(r["stage"], r["status"], r["attempt"]) for r in events(_settings(lake), "run.stage")
              if r["stage"] == "curriculum"]
    assert sorted(stages) == [("curriculum", "failed", 1), ("curriculum", "failed", 2), ("curriculum", "stopped", 2)]
    assert any(c["error"] and "503" in c["error"] for c in events(_settings(lake), "vlm.call"))

    run = Run(settings, config, say=lambda text: None, bars=False)  # the model is back: the run goes on
    outcome = run.run()
    run.close()
    assert outcome.iterations == 1 and outcome.state.is_done(0, "curriculum")
    recorded = [(r["stage"], r["status"], r["attempt"]) for r in events(_settings(lake), "run.stage")]
    assert ("curriculum", "done", 3) in recorded


def test_an_external_learner_serves_the_train_stage_and_its_failure_is_retried(tmp_path, monkeypatch):
    """`robolake run --external-learner` asks, `robolake learn` trains. Sequential here: the run's
    wait for a checkpoint is where the learner gets its turn (on Kafka they are two processes)."""
    from learner.checkpoints import CheckpointStore
    from robolake.experiment import external, loop, stages
    from robolake.experiment.errors import StageFailed
    from robolake.experiment.learner_service import serve
    from robolake.experiment.loop import Run, RunConfig

    settings = _settings(tmp_path / "lake")
    real_sleep, real_train_to, said, serving = time.sleep, stages.train_to, [], []

    def learner_turn(seconds):  # the run waits (or backs off): a learner serves what is open, then returns
        if not serving:
            serving.append(True)
            serve(settings, "exp", say=said.append, until_idle_s=0, bars=False)
            serving.pop()

    def fails_once(run, request):
        if not any("failed" in line for line in said):
            raise StageFailed("training failed: loss is nan at step 1 (the test's)")
        return real_train_to(run, request)

    monkeypatch.setattr(loop.time, "sleep", learner_turn)
    monkeypatch.setattr(stages, "train_to", fails_once)
    config = RunConfig("exp", iterations=1, base_skills=("reach_red",), bootstrap_episodes=1, eval_episodes=1,
                       episodes_per_decision=1, max_tasks=1, train_steps=2, workers=1, external_learner=True)
    run = Run(settings, config, say=lambda text: None, bars=False)
    outcome = run.run()
    monkeypatch.setattr(loop.time, "sleep", real_sleep)
    assert outcome.iterations == 1 and CheckpointStore(settings, "exp-pac").latest_step() == 2
    # the failed request was not trained again by a later learner: one training, of the second request
    trainings = [line for line in said if "training exp-pac to step 2" in line]
    assert len(trainings) == 2 and "attempt 1" in trainings[0] and "attempt 2" in trainings[1], said
    assert sum("failed (the run is told): training failed: loss is nan" in line for line in said) == 1
    recorded = [(r["stage"], r["status"], r["attempt"]) for r in events(settings, "run.stage")]
    assert [r for r in recorded if r[0] in ("train", "learn")] == [
        ("train", "requested", 1), ("learn", "failed", 1), ("train", "failed", 1), ("train", "requested", 2),
        ("train", "done", 2)]
    train = [r for r in events(settings, "run.stage") if (r["stage"], r["status"]) == ("train", "done")][0]
    assert '"learner": "external"' in train["detail"] and '"step": 2' in train["detail"]
    check_exactly_once(settings, iterations=1, train_steps=2)

    # a run restarted while waiting asks nothing twice, and finds the checkpoint
    run.attempt = 2
    assert external.await_learner(run, 0, stages.train_request(run, 0))["step"] == 2
    assert [r["status"] for r in events(settings, "run.stage") if r["stage"] == "train"].count("requested") == 2
    assert serve(settings, "exp", say=said.append, until_idle_s=0, bars=False) == 0  # nothing left to train
    # one trainer per experiment: a run training in-process refuses while a learner holds the experiment
    with stages.learner_lock(settings, "exp"):
        with pytest.raises(StageFailed, match="a `robolake learn` process serves this experiment"):
            stages.train(Run(settings, RunConfig("exp"), say=lambda text: None, bars=False), 0)
    run.close()


def test_keep_going_runs_on_when_the_analysis_says_stop(tmp_path):
    from robolake.experiment.loop import Run, RunConfig

    for keep_going, expected in ((False, "the analysis says stop (stalled)"), (True, None)):
        run = Run(_settings(tmp_path / "lake"), RunConfig("exp", keep_going=keep_going), say=lambda text: None)
        try:
            run.state.done[(0, "analysis")] = {"stop": "stalled"}
            assert run._stop_reason(0) == expected
        finally:
            run.close()
