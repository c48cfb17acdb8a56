"""Skill summaries on the embedded default: counts, Wilson bounds, trend, hindsight, unknown skills,
idempotent emission, and the same summaries from a lake rebuilt by replay."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from consumers.lake_sink.replay import replay_to_lake
from consumers.lake_sink.sink import LakeSink
from consumers.summaries.summaries import current_summaries, emit_summaries, trend
from infra.bus.memory import MemoryBus
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.episode_writer import EpisodeWriter
from robolake.cli import main
from schemas.stats import wilson


def _episode(writer: EpisodeWriter, experiment: str, sequence: list[str], succeeded: set[str],
             policy=("scripted", "1")) -> str:
    """A two-step-per-skill episode that succeeds at the skills in `succeeded`."""
    episode_id = writer.start(str(uuid.uuid4()), experiment_id=experiment, worker_id="w", env_name="synthetic",
                              env_version=1, seed=0, initial_state=[0.0], task=sequence[-1],
                              skill_sequence=sequence, policy_id=policy[0], policy_version=policy[1])
    for i, skill in enumerate(s for s in sequence for _ in range(2)):
        writer.step(step=i, sim_time=0.1 * i, observation=[0.0] * 3, action=[0.0] * 4, reward=0.0, task_reward=0.0,
                    skill_id=skill, skill_caption=skill, terminated=False, truncated=False)
    writer.end("success" if sequence[-1] in succeeded else "timeout", task_success=sequence[-1] in succeeded,
               skill_success={s: s in succeeded for s in sequence})
    return episode_id


def _sink(settings, bus) -> None:
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)


def _summaries(settings, experiment: str) -> list[dict]:
    con = open_lake(settings)
    try:
        return current_summaries(con, experiment)
    finally:
        con.close()


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """exp-1: 10 episodes reach_red -> lift_red (lift succeeds in the first 3 only, reach in all),
    4 of go_home by another policy version (2 succeed), 3 of an unknown skill; exp-2: 1 episode."""
    settings = Settings.load(env={}, lake=f"file://{tmp_path_factory.mktemp('summaries')}/lake")
    bus = MemoryBus()
    writer = EpisodeWriter(bus.producer(), chunk_steps=3)
    for i in range(10):
        _episode(writer, "exp-1", ["reach_red", "lift_red"], {"reach_red"} | ({"lift_red"} if i < 3 else set()))
    for i in range(4):
        _episode(writer, "exp-1", ["go_home"], {"go_home"} if i % 2 else set(), policy=("pac:r", "step-100"))
    for _ in range(3):
        _episode(writer, "exp-1", ["juggle_blocks"], {"juggle_blocks"})
    _episode(writer, "exp-2", ["reach_red"], set())
    _sink(settings, bus)
    return settings, bus


def test_counts_rates_and_wilson_intervals_per_skill_and_policy_version(lake):
    settings, _ = lake
    got = {(s["skill_id"], s["policy_id"], s["policy_version"]): s for s in _summaries(settings, "exp-1")}
    assert set(got) == {("go_home", "pac:r", "step-100"), ("lift_red", "scripted", "1"), ("reach_red", "scripted", "1")}
    lift = got[("lift_red", "scripted", "1")]
    assert (lift["episodes"], lift["successes"], lift["success_rate"]) == (10, 3, 0.3)
    assert (lift["ci_low"], lift["ci_high"]) == pytest.approx(wilson(3, 10))
    assert lift["trend"] == "down"  # windows of 5: 3/5 then 0/5 (z = -2.07)
    home = got[("go_home", "pac:r", "step-100")]
    assert (home["episodes"], home["successes"], home["trend"]) == (4, 2, "unknown")  # too few for two windows
    reach = got[("reach_red", "scripted", "1")]
    assert (reach["successes"], reach["ci_high"], reach["hindsight_episodes"]) == (10, 1.0, None)
    assert [s["skill_id"] for s in _summaries(settings, "exp-2")] == ["reach_red"]


def test_wilson_bounds_hold_at_the_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35  # 0/10 is not "certainly 0"
    low, high = wilson(10, 10)
    assert 0.65 < low < 0.75 and high == 1.0
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.5 - 0.0962, abs=1e-3) and high == pytest.approx(0.5 + 0.0962, abs=1e-3)


@pytest.mark.parametrize("outcomes, expected", [
    ([False] * 20 + [True] * 20, "up"),
    ([True] * 20 + [False] * 20, "down"),
    ([True, False] * 20, "flat"),
    ([True] * 40, "flat"),
    ([True] * 9, "unknown"),                             # fewer than two windows of 5
    ([False] * 60 + [True] * 20 + [False] * 20, "down"),  # only the last two windows count
])
def test_trend_compares_the_last_window_with_the_one_before(outcomes, expected):
    assert trend(outcomes, window=20) == expected


def test_recent_rate_is_the_last_window(lake):
    settings, _ = lake
    con = open_lake(settings)
    try:
        lift = next(s for s in current_summaries(con, "exp-1", window=5) if s["skill_id"] == "lift_red")
    finally:
        con.close()
    assert lift["recent_rate"] == 0.0 and lift["success_rate"] == 0.3


def test_skills_the_library_does_not_know_are_logged_and_ignored(lake, caplog):
    settings, _ = lake
    with caplog.at_level(logging.WARNING, logger="consumers.summaries.summaries"):
        summaries = _summaries(settings, "exp-1")
    assert "juggle_blocks" not in {s["skill_id"] for s in summaries}
    assert any("juggle_blocks" in r.getMessage() and "does not know" in r.getMessage() for r in caplog.records)


def test_emission_is_idempotent_and_replay_rebuilds_the_same_summaries(lake, tmp_path):
    settings, bus = lake
    con = open_lake(settings)
    try:
        sent = emit_summaries(con, bus.producer(), "exp-1")
    finally:
        con.close()
    assert len(sent) == 3
    _sink(settings, bus)
    con = open_lake(settings)
    try:
        assert emit_summaries(con, bus.producer(), "exp-1") == []  # the lake holds them: nothing new
        stored = [r for (p,) in con.execute("SELECT payload_json FROM events WHERE type = 'skill.summary'").fetchall()
                  for r in json.loads(p)]
    finally:
        con.close()
    assert sorted(r["summary_id"] for r in stored) == sorted(s["summary_id"] for s in sent)
    assert {r["skill_id"]: r["successes"] for r in stored} == {"go_home": 2, "lift_red": 3, "reach_red": 10}

    rebuilt = Settings.load(env={}, lake=f"file://{tmp_path}/rebuilt")
    replay_to_lake(settings, rebuilt)
    assert _summaries(rebuilt, "exp-1") == _summaries(settings, "exp-1")  # ids, numbers and times
    con = open_lake(rebuilt)
    try:
        assert emit_summaries(con, bus.producer(), "exp-1") == []  # the replayed events are the same ones
    finally:
        con.close()


def test_hindsight_counts_episodes_where_the_skills_reward_function_fired(tmp_path):
    """Real relabelling of simulated episodes: lift_red commanded, reach_red's function relabelled."""
    url = f"file://{tmp_path}/lake"
    assert main(["produce", "--episodes", "2", "--task", "grasp_red", "--steps-per-skill", "20",
                 "--experiment", "hs", "--lake", url]) == 0
    settings = Settings.load(env={}, lake=url)
    before = {s["skill_id"]: s for s in _summaries(settings, "hs")}
    assert before["reach_red"]["hindsight_episodes"] is None
    assert main(["relabel", "--rewards", "reach_red", "lift_red", "--lake", url]) == 0
    con = open_lake(settings)
    try:
        fired = dict(con.execute("SELECT reward_fn, count(*) FILTER (WHERE achieved) FROM achievements "
                                 "GROUP BY ALL").fetchall())
        after = {s["skill_id"]: s for s in current_summaries(con, "hs")}
    finally:
        con.close()
    reach, grasp = after["reach_red"], after["grasp_red"]
    assert (reach["hindsight_episodes"], reach["hindsight_successes"]) == (2, fired["reach_red"])
    assert grasp["hindsight_episodes"] is None  # grasp_red's function was not relabelled
    assert reach["summary_id"] != before["reach_red"]["summary_id"]  # new facts, a new summary


def test_cli_prints_the_table_and_emits_once(tmp_path, capsys):
    url = f"file://{tmp_path}/lake"
    assert main(["produce", "--synthetic", "12", "--steps", "8", "--experiment", "cli", "--lake", url]) == 0
    capsys.readouterr()
    assert main(["summaries", "--experiment", "cli", "--emit", "--lake", url]) == 0
    out = capsys.readouterr().out
    assert "experiment cli" in out and "reach_red" in out and "random@1" in out and "12" in out
    assert "emitted 4 new skill.summary events" in out
    assert main(["summaries", "--emit", "--lake", url]) == 0
    assert "emitted 0 new skill.summary events" in capsys.readouterr().out


def test_cli_help_and_bad_experiments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["summaries", "--help"])
    assert exit_.value.code == 0 and "Wilson" in capsys.readouterr().out
    url = f"file://{tmp_path}/lake"
    assert main(["produce", "--synthetic", "1", "--steps", "4", "--lake", url]) == 0
    capsys.readouterr()
    assert main(["summaries", "--experiment", "nope", "--lake", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"robolake summaries: error: no complete episodes of experiment 'nope' in {tmp_path}/lake; " \
                  "experiments: default"
    with pytest.raises(SystemExit) as exit_:
        main(["summaries", "--experiment", "../etc", "--lake", url])
    assert exit_.value.code == 2
    assert main(["summaries", "--lake", f"file://{tmp_path}/none"]) == 1


def test_the_conversation_reads_summaries(lake):
    from consumers.conversation import describe
    from infra.bus.interface import Delivery
    from schemas import topics
    from schemas.codec import build
    from schemas.events import SKILL_SUMMARY

    batch = build(SKILL_SUMMARY, _summaries(lake[0], "exp-1"))
    line = describe(Delivery(topics.SUMMARIES, 0, 0, "exp-1", batch, 0))
    assert line.endswith("summaries of exp-1: go_home 2/4 (unknown), lift_red 3/10 (down), reach_red 10/10 (flat)")
