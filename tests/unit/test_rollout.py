"""Rollout workers on the in-process bus: valid, complete episodes; decisions are executed."""

from __future__ import annotations

import dataclasses

import numpy as np

from consumers.lake_sink.sink import LakeSink
from infra.bus.backend import open_bus
from infra.settings import Settings
from producers.episode_writer import utc_now
from producers.rollout import RolloutConfig, task_for
from producers.workers import produce_episodes, serve_decisions
from schemas import topics
from schemas.codec import build
from schemas.events import CURRICULUM_DECISION
from tests.lake_helpers import count


def _settings(tmp_path):
    return Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")


def test_workers_stream_complete_episodes_with_frames(tmp_path):
    settings = _settings(tmp_path)
    config = RolloutConfig(skills=task_for("place_red_on_blue"), task_skill="place_red_on_blue",
                           frames=True, experiment_id="rollout-test")
    produce_episodes(settings, config, episodes=4, workers=2)
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    outcomes = count(settings, "SELECT list((worker_id, seed, task_success, termination, length)) FROM episodes")
    assert count(settings, "SELECT count(*) FROM episodes WHERE task_success") == 4, outcomes
    assert count(settings, "SELECT count(DISTINCT worker_id) FROM episodes") == 2
    assert count(settings, "SELECT count(*) FROM steps") == count(settings, "SELECT sum(length) FROM episodes")
    assert count(settings, "SELECT count(*) FROM frames WHERE frame[1:4] = '\\x89PNG'::BLOB") == \
        count(settings, "SELECT count(*) FROM steps")
    assert count(settings, "SELECT count(*) FROM partial_episodes") == 0


def test_skills_switch_at_fixed_intervals_when_asked(tmp_path):
    settings = _settings(tmp_path)
    config = RolloutConfig(skills=("reach_red", "go_home"), task_skill="go_home", switch="fixed",
                           steps_per_skill=12)
    produce_episodes(settings, config, episodes=1, workers=1)
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    assert count(settings, "SELECT list(length) FROM episodes") == [24]
    assert count(settings, "SELECT count(*) FROM steps WHERE skill_id = 'reach_red'") == 12


def test_curriculum_decisions_are_executed_and_traced_in_one_environment(tmp_path, monkeypatch):
    from producers.sim import scene

    compiled = []
    build_model = scene.build_model
    monkeypatch.setattr(scene, "build_model", lambda *a, **kw: compiled.append(1) or build_model(*a, **kw))
    settings = _settings(tmp_path)
    producer = open_bus(settings).producer()
    producer.send(topics.CURRICULUM, "exp-7", build(CURRICULUM_DECISION, [{
        "decision_id": "d-1", "experiment_id": "exp-7", "proposal_id": None, "task": "lift the green block",
        "skill_sequence": ["reach_green", "grasp_green", "lift_green"], "episodes": 2, "time": utc_now()}]))
    producer.send(topics.CURRICULUM, "exp-7", build(CURRICULUM_DECISION, [{
        "decision_id": "d-2", "experiment_id": "exp-7", "proposal_id": None, "task": "reach the red block",
        "skill_sequence": ["reach_red"], "episodes": 1, "time": utc_now()}]))
    producer.flush()
    config = RolloutConfig(skills=("go_home",), task_skill="go_home")
    serve_decisions(settings, config, workers=1, until_idle_s=0.5)
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    assert count(settings, "SELECT count(*) FROM episodes WHERE decision_id = 'd-1' AND experiment_id = 'exp-7'") == 2
    assert count(settings, "SELECT count(*) FROM episodes WHERE decision_id = 'd-2'") == 1
    assert count(settings, "SELECT count(*) FROM episodes WHERE task_success") == 3
    assert len(compiled) == 1  # one MuJoCo model for the worker, not one per decision


class _StepRecorder:
    """Stands in for EpisodeWriter: keeps the step rows."""

    episode_id = "recorded"

    def __init__(self):
        self.steps = []

    def start(self, **fields):
        return self.episode_id

    def step(self, **fields):
        self.steps.append(fields)

    def end(self, termination, task_success, skill_success):
        return {"termination": termination, "task_success": task_success}


def test_frames_every_k_steps_are_pngs_on_exactly_those_steps():
    from producers.rollout import run_episode
    from producers.sim.env import BlockStackingEnv

    env, recorder = BlockStackingEnv(), _StepRecorder()
    config = RolloutConfig(skills=("reach_red", "go_home"), task_skill="go_home", switch="fixed",
                           steps_per_skill=6, frames=True, frame_every=3)
    run_episode(env, recorder, config, seed=0)
    env.close()
    assert [s["step"] for s in recorder.steps] == list(range(12))
    assert [s["step"] for s in recorder.steps if s["frame"] is not None] == [0, 3, 6, 9]
    assert all(s["frame"][:4] == b"\x89PNG" for s in recorder.steps if s["frame"] is not None)


def test_frame_every_must_be_positive():
    import pytest

    with pytest.raises(ValueError, match="frame_every"):
        RolloutConfig(skills=("reach_red",), task_skill="reach_red", frames=True, frame_every=0)


def test_config_rejects_unknown_skills():
    import pytest

    from producers.sim.skills import UnknownSkill

    with pytest.raises(UnknownSkill):
        RolloutConfig(skills=("reach_red", "fly"), task_skill="reach_red")
    assert dataclasses.replace(RolloutConfig(skills=("reach_red",), task_skill="reach_red"), noise=0.2).noise == 0.2


def test_build_tower_from_the_expert_succeeds_when_every_sub_skill_does():
    """Issue 14, item 12: a place hands over the moment the gripper opens, around the block it
    stacked; a reach that went straight to the next block swept the arm through the stack (8 of 10
    episodes ended as a timeout). The expert's reach now rises clear first."""
    from infra.bus.memory import MemoryBroker, MemoryBus
    from producers.rollout import run_episodes

    bus = MemoryBus(MemoryBroker(1), 512 * 1024)
    config = RolloutConfig(skills=task_for("build_tower"), task_skill="build_tower")
    ended = run_episodes(bus.producer(), config, list(range(10)))
    assert [e["termination"] for e in ended] == ["success"] * 10
    assert all(all(s["success"] for s in e["skills"]) for e in ended)


class _Replay:
    """A plain policy (not the expert): the given actions in order."""

    id, version = "replay", "1"

    def __init__(self, actions):
        self.actions = iter(actions)

    def start(self, env, skill, rng):
        pass

    def act(self, observation):
        return next(self.actions)


def test_data_learned_rollouts_and_evaluation_hand_over_in_the_same_states(tmp_path):
    """One rule for the three paths: the expert's actions replayed by another policy, in a worker's
    run_episode and in learner.evaluate, give the same skill on every step (issue 22, item 1)."""
    from learner.evaluate import evaluate
    from producers.rollout import run_episode
    from producers.sim.env import BlockStackingEnv

    config = RolloutConfig(skills=task_for("build_tower"), task_skill="build_tower")
    env, expert, replayed = BlockStackingEnv(), _StepRecorder(), _StepRecorder()
    try:
        assert run_episode(env, expert, config, seed=3)["task_success"]
        actions = [s["action"] for s in expert.steps]
        run_episode(env, replayed, config, seed=3, policy=_Replay(actions))
    finally:
        env.close()
    skills = [s["skill_id"] for s in expert.steps]
    assert len(set(skills)) == len(config.skills)
    assert [s["skill_id"] for s in replayed.steps] == skills
    settings = _settings(tmp_path)
    assert evaluate(open_bus(settings).producer(), _Replay(actions), ["build_tower"], episodes=1, seed=3) == \
        {"build_tower": (1, 1)}
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    assert count(settings, "SELECT list(skill_id ORDER BY step) FROM steps") == skills


def test_a_skill_hands_over_at_its_first_successful_step():
    from producers.rollout import run_episode
    from producers.sim.env import BlockStackingEnv

    class Still:
        id, version = "still", "1"

        def start(self, env, skill, rng):
            pass

        def act(self, observation):
            return np.array([0.0, 0.0, 0.0, 1.0], np.float32)

    env, still, expert = BlockStackingEnv(), _StepRecorder(), _StepRecorder()
    try:
        # the reset pose is home: go_home succeeds on its first step, whatever the policy does next
        run_episode(env, still, RolloutConfig(skills=("go_home", "reach_red"), task_skill="reach_red",
                                              steps_per_skill=5), seed=0, policy=Still())
        run_episode(env, expert, RolloutConfig(skills=task_for("place_red_on_blue"), task_skill="place_red_on_blue"),
                    seed=5)
    finally:
        env.close()
    assert [(s["skill_id"], s["reward"]) for s in still.steps] == [("go_home", 1.0)] + [("reach_red", 0.0)] * 5
    steps = expert.steps
    for skill in task_for("place_red_on_blue"):  # each skill's steps: unsuccessful, then one successful, the last
        rewards = [s["reward"] for s in steps if s["skill_id"] == skill]
        assert rewards[-1] == 1.0 and not any(rewards[:-1]), skill


def test_an_evaluation_records_frames_of_its_first_episodes_only(tmp_path):
    """Only the episodes that become videos render: an eval decision's first `eval_videos`, at `frame_size`."""
    import io

    from PIL import Image

    from producers.decisions import Policies, decision_seeds, run_decision

    settings = _settings(tmp_path)
    producer = open_bus(settings).producer()
    base = RolloutConfig(skills=("go_home",), task_skill="go_home", switch="fixed", steps_per_skill=4, frame_every=2,
                         frame_size=160, eval_videos=2)
    for decision, purpose in (("d-eval", "eval"), ("d-collect", "collect")):
        run_decision(producer, {"decision_id": decision, "experiment_id": "exp-v", "skill_sequence": ["reach_red"],
                                "episodes": 3, "purpose": purpose}, base, Policies(settings))
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    from infra.lake_sql import open_lake

    con = open_lake(settings, read_only=True)
    try:
        framed = con.execute("SELECT e.decision_id, e.seed, list(f.step ORDER BY f.step), any_value(f.frame) "
                             "FROM episodes e JOIN frames f USING (episode_id) GROUP BY ALL ORDER BY 2").fetchall()
    finally:
        con.close()
    assert [(d, seed, steps) for d, seed, steps, _ in framed] == [
        ("d-eval", seed, [0, 2]) for seed in decision_seeds("d-eval", 3)[:2]]
    assert Image.open(io.BytesIO(framed[0][3])).size == (160, 160)


def test_frame_size_is_128_to_256_px():
    import pytest

    with pytest.raises(ValueError, match="frame_size must be 128 to 256 px, got 64"):
        RolloutConfig(skills=("reach_red",), task_skill="reach_red", frames=True, frame_size=64)
