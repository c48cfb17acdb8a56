"""The analyst: verdicts on synthetic curves (noisy, seeded), runs judged by evaluated success (never
by their loss), on a lake's learner metrics and evaluation episodes, events emitted once, PNG
curves, and the CLI's errors."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

from consumers.analysis.analysis import ALL, Curve, judge_run, learner_runs, run_curves
from consumers.analysis.verdicts import judge
from consumers.lake_sink.sink import LakeSink
from infra.bus.memory import MemoryBus
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.episode_writer import EpisodeWriter, utc_now
from robolake.cli import main
from schemas import topics
from schemas.codec import build
from schemas.events import LEARNER_METRICS

STEPS = np.arange(0, 10_000, 250)
N = 40  # episodes per evaluation


def _rising(rng):
    return rng.binomial(N, 0.1 + 0.8 * STEPS / 10_000) / N


def _plateau(rng):  # rises to 0.9 by step 5000, flat after
    return rng.binomial(N, np.where(STEPS < 5000, 0.1 + 0.8 * STEPS / 5000, 0.9)) / N


def _flat_low(rng):
    return rng.binomial(N, np.full(len(STEPS), 0.1)) / N


@pytest.mark.parametrize("seed", range(8))
def test_noisy_curves_get_the_verdict_their_shape_deserves(seed):
    rng = np.random.default_rng(seed)
    episodes = [N] * len(STEPS)
    rising = judge(STEPS, _rising(rng), "success", episodes)
    assert rising.verdict == "improving" and 0 < rising.slope_low <= rising.slope <= rising.slope_high
    plateau = judge(STEPS, _plateau(rng), "success", episodes)
    assert plateau.verdict == "converged" and abs(plateau.slope) * 5 < 0.1  # under 10 points across the window
    assert 4000 <= plateau.converged_at <= 5000  # the plateau's first step (its approach is gentle)
    assert judge(STEPS, _flat_low(rng), "success", episodes).verdict == "stalled"


@pytest.mark.parametrize("seed", range(5))
def test_loss_curves_are_judged_the_other_way_up(seed):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.03, len(STEPS))
    falling = judge(STEPS, 3 - STEPS / 5000 + noise, "loss")
    assert falling.verdict == "improving" and falling.slope < 0
    settled = judge(STEPS, 1 + 3 * np.exp(-STEPS / 1500) + noise, "loss")
    assert settled.verdict == "converged" and 3500 <= settled.converged_at <= 5500
    assert judge(STEPS, 2 + noise, "loss").verdict == "stalled"
    assert judge(STEPS, 2 + STEPS / 5000 + noise, "loss").verdict == "stalled"  # getting worse


def test_deterministic_under_a_seed_and_silent_below_four_points():
    values = _plateau(np.random.default_rng(3))
    assert judge(STEPS, values, "success", seed=7) == judge(STEPS, values, "success", seed=7)
    assert judge(STEPS, values, "success", seed=7).slope_low != judge(STEPS, values, "success", seed=8).slope_low
    assert judge(STEPS[:3], values[:3], "success") is None


def test_points_that_are_not_finite_are_left_out_with_a_warning(caplog):
    rng = np.random.default_rng(5)
    falling = 3 - STEPS / 5000 + rng.normal(0, 0.03, len(STEPS))
    broken = falling.copy()
    broken[-3], broken[4] = np.nan, np.inf
    with caplog.at_level("WARNING"):
        verdict = judge(STEPS, broken, "loss")
    assert verdict.verdict == "improving" and np.isfinite(verdict.slope), "one NaN does not stall a falling loss"
    assert "2 of %d points are not finite" % len(STEPS) in caplog.text
    assert judge(STEPS[:5], [1.0, np.nan, 0.8, np.nan, 0.6], "loss") is None, "3 finite points: too few to judge"


def _run(wins, episodes=12, steps=None, loss=(2.1, 1.7, 1.2, 0.9, 0.6, 0.4)):
    """A run's curves: one skill evaluated at `steps` with `wins` successes of `episodes`, and its loss."""
    steps = steps or [100 * (i + 1) for i in range(len(wins))]
    now = datetime.now(timezone.utc)
    success = Curve("exp", "run", "reach_red", "success", "success", steps, [w / episodes for w in wins],
                    [episodes] * len(wins), now)
    losses = Curve("exp", "run", ALL, "loss", "policy_loss", [100 * (i + 1) for i in range(len(loss))], list(loss),
                   None, now)
    return [success, losses]


def _verdicts(curves):
    return {(r["skill_id"], r["verdict"]): r for r in judge_run(curves)}


def test_a_zero_success_run_with_a_falling_loss_is_not_learning():
    for evaluations in (2, 6):  # too few for a slope, and enough
        rows = judge_run(_run([0] * evaluations))
        verdicts = [(r["skill_id"], r["verdict"]) for r in rows]
        assert ("reach_red", "not learning") in verdicts and (ALL, "not learning") in verdicts
        assert all(r["verdict"] != "improving" for r in rows), "a falling loss is no learning verdict"
    run = _verdicts(_run([0] * 6))[(ALL, "not learning")]
    assert run["rationale"] == ("not learning: evaluated success 0/12 [0.00, 0.24] at step 600 "
                                "while policy_loss fell 2.1 → 0.4")
    assert (ALL, "stop") in _verdicts(_run([0] * 6)) and (ALL, "stop") not in _verdicts(_run([0] * 2))


def test_success_that_never_rises_beyond_its_interval_is_not_learning():
    rows = _verdicts(_run([3, 4, 2, 5]))  # 5/12 is within the noise of 3/12: its interval starts at 0.19
    assert ("reach_red", "not learning") in rows and (ALL, "not learning") in rows
    why = rows[("reach_red", "not learning")]["rationale"]
    assert "never above the first evaluation 3/12 [0.09, 0.53] at step 100" in why


def test_success_that_rises_is_improving_and_quoted_with_its_interval():
    rows = _verdicts(_run([0, 10]))
    skill, run = rows[("reach_red", "improving")], rows[(ALL, "improving")]
    assert skill["rationale"] == ("improving: evaluated success 10/12 [0.55, 0.95] at step 200; up from the first "
                                  "evaluation 0/12 [0.00, 0.24] at step 100")
    assert run["rationale"].startswith("improving: evaluated success 10/12 [0.55, 0.95] at step 200 while policy_loss")
    assert (ALL, "stop") not in rows
    rising = _verdicts(_run([0, 2, 3, 5, 6, 8, 9, 10]))  # enough points: the bootstrap slope says so
    assert rising[("reach_red", "improving")]["slope_low"] > 0


def test_a_run_good_from_its_first_evaluation_has_converged_not_stopped_learning():
    rows = _verdicts(_run([11, 12]))
    assert rows[("reach_red", "converged")]["converged_at"] == 100 and (ALL, "converged") in rows
    assert (ALL, "stop") not in rows, "two evaluations are too few to stop on"


def _metrics(producer, experiment, run, losses):
    for step, loss in losses:
        rows = [{"experiment_id": experiment, "run_id": run, "step": int(step), "name": name, "value": float(value),
                 "skill_id": None, "time": utc_now()} for name, value in (("policy_loss", loss), ("critic_loss", 1.0))]
        producer.send(topics.LEARNER, experiment, build(LEARNER_METRICS, rows))


def _evaluation(writer, run, step, skill, wins, episodes):
    for i in range(episodes):
        writer.start(str(uuid.uuid4()), experiment_id="eval", worker_id="eval", env_name="synthetic", env_version=1,
                     seed=i, initial_state=[0.0], task=skill, skill_sequence=[skill], policy_id=f"pac:{run}",
                     policy_version=f"step-{step}")
        writer.step(step=0, sim_time=0.0, observation=[0.0], action=[0.0], reward=0.0, task_reward=0.0,
                    skill_id=skill, skill_caption=skill, terminated=False, truncated=True)
        writer.end("timeout", task_success=i < wins, skill_success={skill: i < wins})


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Run `losses` (exp-a): a loss falling, no evaluation. Run `evals` (exp-b): reach_red evaluated at
    6 checkpoints, rising then flat at 10/10; lift_red flat at 0/10."""
    settings = Settings.load(env={}, lake=f"file://{tmp_path_factory.mktemp('analysis')}/lake")
    bus = MemoryBus()
    producer = bus.producer()
    rng = np.random.default_rng(0)
    _metrics(producer, "exp-a", "losses", [(s, 3 - s / 500 + rng.normal(0, 0.02)) for s in range(50, 1001, 50)])
    _metrics(producer, "exp-b", "evals", [(s, 1.0) for s in range(100, 601, 100)])
    writer = EpisodeWriter(producer)
    for step, wins in zip(range(100, 601, 100), [2, 6, 10, 10, 10, 10]):
        _evaluation(writer, "evals", step, "reach_red", wins, 10)
        _evaluation(writer, "evals", step, "lift_red", 0, 10)
    producer.flush()
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    return settings


def test_a_run_without_evaluations_has_no_evaluation_yet_whatever_its_loss(lake):
    con = open_lake(lake)
    try:
        assert learner_runs(con) == [("exp-a", "losses"), ("exp-b", "evals")]
        curves = run_curves(con, "exp-a", "losses")
    finally:
        con.close()
    assert [(c.skill_id, c.kind, c.metric, len(c.steps)) for c in curves] == [(ALL, "loss", "policy_loss", 20)]
    [row] = judge_run(curves)  # the loss falls from 2.9 to 1
    assert (row["verdict"], row["run_id"], row["method"], row["experiment_id"], row["skill_id"]) == (
        "no evaluation yet", "losses", "statistical", "exp-a", ALL)
    assert row["slope"] is None and "policy_loss fell" in row["rationale"] and "not a verdict" in row["rationale"]


def test_evaluation_curves_per_skill_and_stop_when_all_settle(lake):
    con = open_lake(lake)
    try:
        curves = run_curves(con, "exp-b", "evals")
    finally:
        con.close()
    steps = [100, 200, 300, 400, 500, 600]
    assert [(c.skill_id, c.kind, c.steps, c.episodes) for c in curves] == [
        ("lift_red", "success", steps, [10] * 6), ("reach_red", "success", steps, [10] * 6),
        (ALL, "loss", steps, None)]
    assert curves[1].values == [0.2, 0.6, 1.0, 1.0, 1.0, 1.0]
    rows = judge_run(curves)
    assert [(r["skill_id"], r["verdict"], r["converged_at"]) for r in rows] == [
        ("lift_red", "not learning", None), ("reach_red", "converged", 300), (ALL, "converged", None),
        (ALL, "stop", None)]  # the loss is not judged
    assert "lift_red 0/10 [0.00, 0.28], reach_red 10/10 [0.72, 1.00] at step 600" in rows[2]["rationale"]
    assert judge_run(curves) == rows  # same data, same ids
    for curve in curves[:2]:  # three evaluations: too few to stop on, but enough to see reach_red rise
        curve.steps, curve.values, curve.episodes = curve.steps[:3], curve.values[:3], curve.episodes[:3]
    assert [(r["skill_id"], r["verdict"]) for r in judge_run(curves)] == [
        ("lift_red", "not learning"), ("reach_red", "improving"), (ALL, "improving")]


def test_cli_prints_verdicts_writes_pngs_and_emits_once(lake, tmp_path, capsys):
    out = tmp_path / "curves"
    assert main(["analyze", "--out", str(out), "--lake", lake.lake]) == 0
    printed = capsys.readouterr().out
    assert "run losses (experiment exp-a)" in printed and "no evaluation yet" in printed and "stop" in printed
    assert "improving" not in printed, "neither run's success rises"
    assert "emitted 5 new analysis.verdict events" in printed
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pngs == ["exp-a/losses/policy_loss.png", "exp-b/evals/lift_red.png", "exp-b/evals/policy_loss.png",
                    "exp-b/evals/reach_red.png"]
    assert all((out / p).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    con = open_lake(lake)
    try:
        stored = [r for (p,) in con.execute("SELECT payload_json FROM events WHERE type = 'analysis.verdict'").fetchall()
                  for r in json.loads(p)]
    finally:
        con.close()
    assert sorted((r["run_id"], r["skill_id"], r["verdict"]) for r in stored) == [
        ("evals", "*", "converged"), ("evals", "*", "stop"), ("evals", "lift_red", "not learning"),
        ("evals", "reach_red", "converged"), ("losses", "*", "no evaluation yet")]
    assert main(["analyze", "--run", "evals", "--out", str(out), "--lake", lake.lake]) == 0
    assert "emitted 0 new analysis.verdict events (4 already in the lake)" in capsys.readouterr().out


def test_cli_help_and_bad_input(lake, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--help"])
    assert exit_.value.code == 0 and "bootstrap" in capsys.readouterr().out
    assert main(["analyze", "--experiment", "nope", "--no-emit", "--lake", lake.lake]) == 2
    assert capsys.readouterr().err.strip() == ("robolake analyze: error: no learner runs in experiment 'nope'; "
                                               "experiments with runs: exp-a, exp-b")
    assert main(["analyze", "--experiment", "exp-a", "--run", "evals", "--no-emit", "--lake", lake.lake]) == 2
    assert "no learner run 'evals' in experiment 'exp-a'; runs: losses" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--experiment", "a b", "--lake", lake.lake])
    assert exit_.value.code == 2
    assert main(["analyze", "--lake", f"file://{tmp_path}/none"]) == 1


def test_the_conversation_reads_a_runs_verdicts(lake):
    from consumers.conversation import describe
    from infra.bus.interface import Delivery
    from schemas.events import ANALYSIS_VERDICT_V2

    con = open_lake(lake)
    try:
        rows = judge_run(run_curves(con, "exp-b", "evals"))
    finally:
        con.close()
    line = describe(Delivery(topics.ANALYSIS, 0, 0, "exp-b", build(ANALYSIS_VERDICT_V2, rows), 0))
    assert line.endswith("analyst: lift_red is not learning, reach_red is converged, * is converged, * is stop "
                         "(run evals, statistical)")
    one = describe(Delivery(topics.ANALYSIS, 0, 0, "exp-b", build(ANALYSIS_VERDICT_V2, rows[1:2]), 0))
    assert ("analyst: reach_red is converged — converged: evaluated success 10/10 [0.72, 1.00] at step 600; "
            "success flat at 1 since step 300") in one


def test_the_vlm_reads_the_plotted_curve_over_the_openai_protocol(lake, tmp_path):
    """The real OpenAI client over HTTP to a local server speaking its protocol; calls recorded as vlm.call."""
    import base64

    from consumers.analysis.plots import plot_curve
    from consumers.analysis.vlm_reading import vlm_verdict
    from consumers.curriculum.openai_compat import OpenAIVLM
    from consumers.curriculum.recorder import RecordingVLM
    from tests.vlm_servers import OpenAIServer

    con = open_lake(lake)
    try:
        curve = run_curves(con, "exp-b", "evals")[1]
    finally:
        con.close()
    judge_run([curve])
    png = plot_curve(curve, tmp_path / "reach_red.png").read_bytes()
    bus = MemoryBus()
    with OpenAIServer() as server:
        server.queue(server.reply('{"verdict": "converged", "converged_at": null, "rationale": "flat"}'),  # no step
                     server.reply('{"verdict": "converged", "converged_at": 300, "rationale": "flat at 1.0"}'))
        vlm = RecordingVLM(OpenAIVLM("qwen2.5-vl", base_url=server.url + "/v1", retries=0), bus.producer(), "exp-b")
        row, answered_by = vlm_verdict(vlm, curve, png), vlm.last_call_id
        first, second = server.requests
        assert vlm_verdict(vlm, curve, png) == row and len(server.requests) == 2, "answered before: recalled"
        server.queue(*[server.reply('{"verdict": "maybe", "converged_at": null, "rationale": "?"}')] * 2)
        other_run = dataclasses.replace(curve, run_id="evals-2")
        assert vlm_verdict(vlm, other_run, png) is None  # invalid twice: no verdict, the statistical one stands
    image = second.json()["messages"][1]["content"][0]["image_url"]["url"]
    assert base64.b64decode(image.split(",", 1)[1]) == png
    assert "needs converged_at" in json.dumps(second.json()["messages"][-1])  # the error, sent back
    assert (row["verdict"], row["converged_at"], row["method"], row["skill_id"]) == ("converged", 300, "vlm", "reach_red")
    assert row["call_id"] == answered_by and "flat at 1.0" in row["rationale"]
    consumer = bus.consumer("check", [topics.VLM])
    calls = [r for d in consumer.poll(1.0) for r in d.batch.rows()]
    assert [c["call_id"] for c in calls][1] == row["call_id"] and len(calls) == 4


def test_cli_vlm_verdicts_beside_the_statistical_ones(lake, tmp_path, capsys, monkeypatch):
    from tests.vlm_servers import OpenAIServer

    with OpenAIServer() as server:
        server.default = server.reply('{"verdict": "stalled", "converged_at": null, "rationale": "flat and low"}')
        monkeypatch.setenv("ROBOLAKE_VLM_BASE_URL", server.url + "/v1")
        assert main(["analyze", "--run", "evals", "--vlm", "openai", "--out", str(tmp_path), "--lake", lake.lake]) == 0
        asked = len(server.requests)
    assert asked == 2  # one plot each: lift_red, reach_red (a loss is no verdict: the model does not judge it)
    printed = capsys.readouterr().out
    assert "read from the plot by" in printed and "flat and low" in printed
    con = open_lake(lake)
    try:
        methods = sorted(r["method"] for (p,) in con.execute(
            "SELECT payload_json FROM events WHERE type = 'analysis.verdict'").fetchall() for r in json.loads(p)
            if r["run_id"] == "evals")
        calls = con.execute("SELECT sum(rows) FROM events WHERE type = 'vlm.call' AND experiment_id = 'exp-b'").fetchone()[0]
    finally:
        con.close()
    assert methods.count("vlm") == 2 and calls == 2
    assert main(["analyze", "--vlm", "openai", "--no-emit", "--lake", lake.lake]) == 2
