"""Running a decision: its seeds, who acts (v3: a learned policy with the expert on new skills)."""

from __future__ import annotations

import numpy as np
import pytest

from infra.settings import Settings
from producers.decisions import BadDecision, MixedPolicy, Policies, decision_seeds
from producers.policy import ScriptedExpert


def test_seeds_are_a_function_of_the_decision():
    assert decision_seeds("d1", 3) == decision_seeds("d1", 3)
    assert decision_seeds("d1", 3)[:2] == decision_seeds("d1", 2)  # episode i has one seed, however many asked
    assert not set(decision_seeds("d1", 3)) & set(decision_seeds("d2", 3))


def test_the_expert_acts_without_a_policy_and_its_noise_names_its_version(tmp_path):
    policies = Policies(Settings.load(env={}, lake=f"file://{tmp_path}/lake", bus="memory"))
    clean = policies.for_decision({"decision_id": "d"})
    noisy = policies.for_decision({"decision_id": "d", "policy_id": "scripted_expert"}, noise=0.3)
    assert isinstance(clean, ScriptedExpert) and (clean.version, noisy.version, noisy.noise) == ("1", "1+noise0.3", 0.3)


@pytest.mark.parametrize("row, message", [
    ({"policy_id": "gpt-9"}, "unknown policy 'gpt-9'"),
    ({"policy_id": "pac:r1"}, "needs a version 'step-<n>', got None"),
    ({"policy_id": "pac:r1", "policy_version": "latest"}, "needs a version 'step-<n>', got 'latest'"),
    ({"policy_id": "pac:r1", "policy_version": "step-5"}, "no checkpoint of step 5"),
])
def test_a_decision_naming_no_usable_policy_is_a_bad_decision(tmp_path, row, message):
    from learner.evaluate import load_for_decision

    policies = Policies(Settings.load(env={}, lake=f"file://{tmp_path}/lake", bus="memory"), load_for_decision)
    with pytest.raises(BadDecision, match=message):
        policies.for_decision({"decision_id": "d", **row})


class Recorder:
    id, version = "pac:r", "step-3"

    def __init__(self):
        self.started = []

    def start(self, env, skill, rng):
        self.started.append(skill.id)

    def act(self, observation):
        return np.full(4, 0.5, np.float32)


def test_mixed_policy_hands_new_skills_to_the_expert():
    from producers.sim.env import BlockStackingEnv
    from producers.sim.skills import get_skill

    learned, env = Recorder(), BlockStackingEnv()
    try:
        env.reset(seed=1)
        policy = MixedPolicy(learned, ScriptedExpert(), {"grasp_red"})
        assert (policy.id, policy.version) == ("pac:r", "step-3")  # the episode is the learned policy's
        rng = np.random.default_rng(0)
        policy.start(env, get_skill("reach_red"), rng)
        assert policy.act(np.zeros(46)).tolist() == [0.5] * 4
        policy.start(env, get_skill("grasp_red"), rng)
        assert policy.act(np.zeros(46)).tolist() != [0.5] * 4  # the expert's script
        assert learned.started == ["reach_red"]
    finally:
        env.close()


def test_the_budget_counts_collected_episodes_only(tmp_path):
    from infra.lake_catalog import LakeTables
    from infra.lake_sql import open_lake
    from robolake.experiment.state import episode_count

    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake", bus="memory")
    LakeTables(settings, writer="test").close()  # an empty lake
    con = open_lake(settings)
    try:
        assert episode_count(con, "exp") == 0
    finally:
        con.close()


def _episode(writer, decision_id, seed, steps=3, end=True):
    writer.start(experiment_id="exp", worker_id="w", env_name="sim", env_version=1, seed=seed, initial_state=[0.0],
                 task="t", skill_sequence=["reach_red"], decision_id=decision_id, policy_id="p", policy_version="1")
    for i in range(steps):
        writer.step(step=i, sim_time=0.1 * i, observation=[0.0] * 3, action=[0.0] * 4, reward=1.0, task_reward=1.0,
                    skill_id="reach_red", skill_caption="reach", terminated=False, truncated=False)
    if end:
        return writer.end("success", task_success=True, skill_success={"reach_red": True})
    writer._flush_steps()  # the worker dies here: no end


def test_a_decision_run_again_counts_each_seed_once(tmp_path):
    """A worker killed mid-decision, and a second that runs the whole decision again: the lake
    holds each (decision, seed) once, the first complete run; other episodes are not touched."""
    from consumers.lake_sink.sink import LakeSink
    from infra.bus.memory import MemoryBus
    from producers.episode_writer import EpisodeWriter
    from tests.lake_helpers import count

    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake", bus="memory")
    bus = MemoryBus()
    writer = EpisodeWriter(bus.producer(), chunk_steps=2)
    first, second = decision_seeds("d1", 2)
    _episode(writer, "d1", first)
    _episode(writer, "d1", second, end=False)  # killed
    for seed in (first, second):  # the decision again, from its first episode
        _episode(writer, "d1", seed)
    for _ in range(2):  # outside any decision, the same seed twice is two episodes
        _episode(writer, None, 7)
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)
    assert count(settings, "SELECT list(seed ORDER BY seed) FROM episodes WHERE decision_id = 'd1'") == [first, second]
    assert count(settings, "SELECT count(*) FROM episodes WHERE decision_id IS NULL") == 2
    assert count(settings, "SELECT list(problem ORDER BY problem) FROM partial_episodes") == \
        ["no end", "repeat of a decision episode"]
    assert count(settings, "SELECT count(*) FROM steps") == 4 * 3, "the steps of counted episodes only"
    # what the run's eval stage reads (robolake/experiment/stages.py): 2 of 2 asked, not 3
    assert count(settings, "SELECT [count_if(task_success), count(*)] FROM episodes WHERE decision_id = 'd1'") == [2, 2]
