"""Success rates of the scripted experts: each skill from a fresh scene (after its setup skill,
if it has one), over many seeds, clean and noisy."""

from __future__ import annotations

import numpy as np

from producers.sim.env import BlockStackingEnv
from producers.sim.skills import LIBRARY, expert_actions, get_skill


def run_skill(env: BlockStackingEnv, skill_id: str, rng: np.random.Generator, noise: float = 0.0,
              settle_steps: int = 3) -> bool:
    skill = get_skill(skill_id)
    obs = env.observation()
    for action in expert_actions(env, skill, rng, noise):
        obs, _, terminated, _, _ = env.step(action)
        if terminated:
            return False
    for _ in range(settle_steps):  # hold still: success must survive the release
        obs, *_ = env.step(np.array([0, 0, 0, 1.0 if env.gripper_opening() > 0.07 else -1.0]))
    return skill.success(obs)


def success_rates(seeds: range, noise: float = 0.0, skills: list[str] | None = None,
                  progress=None) -> dict[str, float]:
    env = BlockStackingEnv()
    rates = {}
    for skill_id in skills or list(LIBRARY):
        wins = 0
        for seed in seeds:
            env.reset(seed=seed)
            rng = np.random.default_rng(seed)
            setup = get_skill(skill_id).setup
            if setup is not None:
                run_skill(env, setup, rng)
            wins += run_skill(env, skill_id, rng, noise)
        rates[skill_id] = wins / len(seeds)
        if progress is not None:
            progress(skill_id, rates[skill_id])
    env.close()
    return rates
