"""The simulated Panda domain: Gymnasium API, action rules, experts, reward functions, rollouts."""

from __future__ import annotations

import numpy as np
import pytest

from producers.sim.env import OBSERVATION_NAMES, BlockStackingEnv
from producers.sim.evaluate import run_skill
from producers.sim.skills import LIBRARY, REWARDS, UnknownSkill, get_skill


@pytest.fixture(scope="module")
def env():
    environment = BlockStackingEnv()
    yield environment
    environment.close()


def test_gymnasium_api(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (len(OBSERVATION_NAMES),) == env.observation_space.shape
    again, _ = BlockStackingEnv().reset(seed=3)
    np.testing.assert_allclose(obs, again, atol=1e-6)  # same seed, same scene


def test_cubes_spawn_apart_on_the_table(env):
    for seed in range(20):
        env.reset(seed=seed)
        positions = [env.cube_position(c) for c in ("red", "green", "blue")]
        for i in range(3):
            assert abs(positions[i][2] - 0.42) < 0.002
            for j in range(i):
                assert np.linalg.norm(positions[i][:2] - positions[j][:2]) >= 0.08 - 1e-9


def test_nan_actions_are_a_counted_noop_and_large_ones_are_clipped(env):
    env.reset(seed=0)
    before = env.target.copy()
    obs, _, terminated, _, info = env.step([np.nan, 0.0, 0.0, 1.0])
    assert not terminated and info["rejected_actions"] == 1
    np.testing.assert_allclose(env.target, before)
    env.step([100.0, 0.0, 0.0, 1.0])
    assert env.target[0] - before[0] == pytest.approx(env.max_step_m)


def test_a_physics_blow_up_ends_the_episode_as_sim_error(env):
    env.reset(seed=0)
    env.data.qvel[:] = np.inf
    _, _, terminated, _, info = env.step([0.0, 0.0, 0.0, 1.0])
    assert terminated and info["termination"] == "sim_error"


@pytest.mark.parametrize("skill_id", list(LIBRARY))
def test_every_expert_succeeds_on_a_few_seeds(env, skill_id):
    for seed in range(3):
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        if get_skill(skill_id).setup:
            run_skill(env, get_skill(skill_id).setup, rng)
        assert run_skill(env, skill_id, rng), f"{skill_id} failed on seed {seed}"


def test_reward_functions_are_registered_by_name_and_version_and_read_observations_only(env):
    assert len(LIBRARY) == 18 and all(skill.reward in REWARDS for skill in LIBRARY.values())
    obs, _ = env.reset(seed=1)
    assert REWARDS[("open_gripper", 1)](obs) and not REWARDS[("lift_red", 1)](obs)


def test_unknown_skills_list_the_known_ones():
    with pytest.raises(UnknownSkill, match="unknown skill 'lift_purple'; known: reach_red"):
        get_skill("lift_purple")
