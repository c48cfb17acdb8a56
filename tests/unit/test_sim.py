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


def test_the_observation_is_the_named_fields_of_its_version(env):
    """v2: the schema's fields in order, each float named, the last three the controller's set point."""
    from producers.sim.env import ENV_VERSION
    from schemas import observation
    from schemas.observation import float_names

    assert ENV_VERSION == 2 == observation.CURRENT
    start = 0
    for field, n in observation.fields(ENV_VERSION):
        assert len(float_names(field)) == n, field
        assert OBSERVATION_NAMES[start:start + n] == float_names(field)
        start += n
    assert len(OBSERVATION_NAMES) == observation.size(ENV_VERSION) == 46 == len(set(OBSERVATION_NAMES))
    assert OBSERVATION_NAMES[-3:] == ["setpoint_x", "setpoint_y", "setpoint_z"]
    env.reset(seed=2)
    env.step([0.4, -0.2, 0.0, 1.0])
    obs = env.step([0.4, -0.2, 0.0, 1.0])[0]
    at = observation.offsets()
    np.testing.assert_allclose(obs[at["setpoint_xyz"]], env.target, atol=1e-6)
    np.testing.assert_allclose(obs[at["hand_xyz"]], env.ee_position(), atol=1e-6)
    np.testing.assert_allclose(obs[at["blue_xyz"]], env.cube_position("blue"), atol=1e-6)


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


def test_gravity_compensation_is_mujocos_and_holds_the_arm_where_it_was_sent(env):
    env.reset(seed=0)
    assert env.model.ngravcomp == 10  # every robot body; nothing is applied from Python per physics step
    for _ in range(10):
        env.step([0.0, 0.0, 0.0, 1.0])
    assert not env.data.qfrc_applied.any()
    assert np.linalg.norm(env.ee_position() - env.target) < 0.002


def test_ik_equals_damped_least_squares_with_a_null_space_pull():
    """The single-solve form in PandaIK is the textbook one: J^T A^-1 e + (I - J^T A^-1 J) v."""
    import mujoco

    from producers.sim.panda import HAND_DOWN, REST_POSTURE, PandaIK
    from producers.sim.scene import build_model

    model = build_model()
    ik, data = PandaIK(model), mujoco.MjData(model)

    def reference(q, target):
        jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        for _ in range(ik.iterations):
            data.qpos[ik.qadr] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            current = data.site_xmat[ik.site].reshape(3, 3)
            err_pos = target - data.site_xpos[ik.site]
            err_rot = 0.5 * sum(np.cross(current[:, i], HAND_DOWN[:, i]) for i in range(3))
            mujoco.mj_jacSite(model, data, jacp, jacr, ik.site)
            jac = np.vstack([jacp[:, ik.dadr], jacr[:, ik.dadr]])
            jjt = jac @ jac.T + ik.damping**2 * np.eye(6)
            step = jac.T @ np.linalg.solve(jjt, np.concatenate([err_pos, err_rot]))
            step += (np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)) @ (0.1 * (REST_POSTURE - q))
            q = np.clip(q + step, ik.lower, ik.upper)
            if np.linalg.norm(err_pos) < 5e-4 and np.linalg.norm(err_rot) < 5e-3:
                break
        return q

    rng = np.random.default_rng(0)
    for _ in range(50):
        q0 = REST_POSTURE + rng.normal(0.0, 0.3, 7)
        target = np.array([0.45, 0.0, 0.65]) + rng.uniform(-0.2, 0.2, 3)
        np.testing.assert_allclose(ik.solve(data.qpos, q0, target), reference(q0.copy(), target), atol=1e-9)
    reached = ik.solve(data.qpos, REST_POSTURE, np.array([0.5, 0.1, 0.6]))
    data.qpos[ik.qadr] = reached
    mujoco.mj_kinematics(model, data)
    assert np.linalg.norm(data.site_xpos[ik.site] - [0.5, 0.1, 0.6]) < 1e-3
