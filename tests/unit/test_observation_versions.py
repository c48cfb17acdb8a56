"""Observation versions in one lake: v1 episodes (43 floats) beside v2 ones (46) read by name in SQL
and relabel to the same rewards."""

from __future__ import annotations

import pytest

from consumers.lake_sink.sink import LakeSink
from infra.bus.backend import open_bus
from infra.settings import Settings
from learner.relabel import relabel, resolve
from producers.episode_writer import EpisodeWriter
from schemas import observation
from tests.lake_helpers import rows


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """One simulated lift (v2) and the same steps written as a v1 episode (its first 43 floats)."""
    from producers.rollout import RolloutConfig, run_episode, task_for
    from producers.sim.env import BlockStackingEnv

    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path_factory.mktemp('versions')}/lake")
    producer = open_bus(settings).producer()
    writer = EpisodeWriter(producer, chunk_steps=16)
    env = BlockStackingEnv()
    try:
        run_episode(env, writer, RolloutConfig(skills=task_for("lift_red"), task_skill="lift_red",
                                               experiment_id="v2"), seed=1)
    finally:
        env.close()
    producer.flush()
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    steps = rows(settings, "SELECT step, sim_time, observation, action, reward, task_reward, skill_id, skill_caption "
                            "FROM steps ORDER BY step")
    v1 = observation.size(1)
    writer.start(experiment_id="v1", worker_id="w0", env_name="panda_block_stacking", env_version=1, seed=1,
                 initial_state=[0.0], task="lift the red block", skill_sequence=["reach_red", "grasp_red", "lift_red"],
                 policy_id="scripted_expert", policy_version="1")
    for step, sim_time, obs, action, reward, task_reward, skill_id, caption in steps:
        writer.step(step=step, sim_time=sim_time, observation=obs[:v1], action=action, reward=reward,
                    task_reward=task_reward, skill_id=skill_id, skill_caption=caption, terminated=False,
                    truncated=False)
    writer.end("success", task_success=True, skill_success={"lift_red": True})
    producer.flush()
    LakeSink(settings, flush_seconds=0.1).run(until_idle_s=0.3)
    return settings


def test_named_fields_read_each_rows_version(lake):
    found = rows(lake, "SELECT e.env_version, s.step, len(s.observation), s.observation, s.obs.setpoint_xyz, "
                       "s.obs.hand_xyz, s.obs.red_xyz[3], s.obs.gripper_opening "
                       "FROM steps s JOIN episodes e USING (episode_id) ORDER BY s.step, e.env_version")
    at = observation.offsets(2)
    assert {r[0] for r in found} == {1, 2} and len(found) % 2 == 0
    for v1, v2 in zip(found[::2], found[1::2]):
        assert (v1[0], v1[2], v2[0], v2[2]) == (1, 43, 2, 46) and v1[1] == v2[1]
        assert v1[4] is None and v2[4] == v2[3][at["setpoint_xyz"]]
        assert v1[5] == v2[5] == v2[3][at["hand_xyz"]]
        assert v1[6] == v2[6] == v2[3][at["red_xyz"]][2]
        assert v1[7] == v2[7] == v2[3][at["gripper_opening"]][0]


def test_relabel_gives_v1_and_v2_episodes_the_same_rewards(lake):
    functions = resolve(["reach_red", "lift_red", "build_tower", "any_block_lifted"])
    stats = relabel(lake, functions, dataset="versions", publish=False)
    assert stats.episodes == 2
    by_experiment = {}
    for experiment, fn, step, success, reward in rows(
            lake, "SELECT experiment_id, reward_fn, step, success, reward FROM rewards "
                  "WHERE dataset = 'versions' ORDER BY ALL"):
        by_experiment.setdefault(experiment, []).append((fn, step, success, reward))
    assert by_experiment["v1"] == by_experiment["v2"]
    lifted = [r for r in by_experiment["v2"] if r[0] == "lift_red"]
    assert any(r[2] for r in lifted) and not all(r[2] for r in lifted)  # both outcomes occur


def test_a_v1_model_trains_on_both_versions_a_v2_model_leaves_v1_out_and_a_v1_lake_says_so(lake, caplog):
    from learner.dataset import DatasetConfig, LakeDataset

    relabel(lake, resolve(["reach_red", "lift_red"]), dataset="trainable", publish=False)

    def epoch(version, **changes):
        data = LakeDataset(lake, DatasetConfig(dataset="trainable", observation_version=version, **changes))
        return [b for b in data]

    v1 = epoch(1)  # every episode, each observation cut to the 43 floats of v1
    assert {b["observation"].shape[1] for b in v1} == {observation.size(1)}
    assert len({e for b in v1 for e in b["episode_id"]}) == 2
    with caplog.at_level("WARNING"):
        v2 = epoch(2)  # v1 episodes lack the set point: left out, said once
    assert {b["observation"].shape[1] for b in v2} == {observation.size(2)}
    assert len({e for b in v2 for e in b["episode_id"]}) == 1
    assert "leaving out 1 episodes of observation v1" in caplog.text

    # a lake of v1 episodes alone: a v2 model is refused in one line naming the versions and the way out
    only_v1 = Settings.load(env={}, bus="memory", lake=lake.lake.replace("/lake", "/lake-v1"))
    producer = open_bus(only_v1).producer()
    writer = EpisodeWriter(producer, chunk_steps=16)
    steps = rows(lake, "SELECT s.step, s.observation, s.action, s.skill_id, s.skill_caption FROM steps s "
                       "JOIN episodes e USING (episode_id) WHERE e.env_version = 1 ORDER BY step")
    writer.start(experiment_id="v1", worker_id="w0", env_name="panda_block_stacking", env_version=1, seed=1,
                 initial_state=[0.0], task="lift the red block", skill_sequence=["reach_red", "lift_red"],
                 policy_id="scripted_expert", policy_version="1")
    for step, obs, action, skill_id, caption in steps:
        writer.step(step=step, sim_time=0.1 * step, observation=obs, action=action, reward=0.0, task_reward=0.0,
                    skill_id=skill_id, skill_caption=caption, terminated=False, truncated=False)
    writer.end("success", task_success=True, skill_success={"lift_red": True})
    producer.flush()
    LakeSink(only_v1, flush_seconds=0.1).run(until_idle_s=0.3)
    relabel(only_v1, resolve(["lift_red"]), dataset="old", publish=False)
    with pytest.raises(ValueError, match="holds only episodes of observation version v1, and this model reads v2: "
                                         "train with --observation-version 1"):
        LakeDataset(only_v1, DatasetConfig(dataset="old"))
    assert len(list(LakeDataset(only_v1, DatasetConfig(dataset="old", observation_version=1)))) > 0
