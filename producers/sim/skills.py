"""The skill library: ids, captions, versions, a success/reward function of the observation, and
a scripted expert for each skill.

Reward functions (producers/sim/rewards.py) read only the observation vector (schemas of
`episode.steps.observation`), vectorized over a batch, so historic data in the lake can be
relabelled with any of them, by name and version; a skill's `success` is the same function on a
batch of one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from producers.sim.env import HOME, BlockStackingEnv
from producers.sim.rewards import OPEN_THRESHOLD, REWARDS, RewardFunction, get_reward  # noqa: F401 (re-exported)
from producers.sim.scene import COLOURS, CUBE_HALF, TABLE_TOP

@dataclass(frozen=True)
class Skill:
    id: str
    caption: str
    version: int
    reward: tuple[str, int]          # the registered success function
    expert: Callable[[BlockStackingEnv, str], Iterator[tuple[np.ndarray, float]]]
    target: tuple[str, ...] = ()     # the colours it acts on
    setup: str | None = None         # a skill to run first when evaluating it alone

    def success(self, obs: np.ndarray) -> bool:
        """The registered function on a batch of one: the relabel path's definition, no copy."""
        return REWARDS[self.reward](obs)

    @property
    def reward_function(self) -> RewardFunction:
        return REWARDS[self.reward]


# --- scripted experts: waypoints for the grip point, followed with bounded steps ------------------

def _go(env: BlockStackingEnv, goal, grip: float, max_steps: int = 30):
    """Yield (goal, grip) until the target has reached `goal` (the controller tracks it)."""
    for _ in range(max_steps):
        if np.linalg.norm(np.asarray(goal) - env.target) < 1e-4:
            break
        yield np.asarray(goal, dtype=float), grip
    for _ in range(2):  # let the arm catch up with the target
        yield np.asarray(goal, dtype=float), grip


def _hold(env: BlockStackingEnv, grip: float, steps: int):
    for _ in range(steps):
        yield env.target.copy(), grip


# A skill hands over the moment it succeeds (producers/rollout.py): a reach may begin with the
# fingers just opened around the block a place stacked. Below this height (a two-block stack and the
# fingers with a margin), a reach elsewhere first rises straight up, so the arm never sweeps
# through the stack. From the reset pose (HOME, higher) it goes straight to the block.
CLEAR_Z = TABLE_TOP + 0.15


def _reach(env, colour):
    above, hand = env.cube_position(colour) + [0, 0, 0.06], env.ee_position()
    if hand[2] < CLEAR_Z and np.linalg.norm(above[:2] - hand[:2]) > 0.02:
        yield from _go(env, [*hand[:2], CLEAR_Z], 1.0)
    yield from _go(env, above, 1.0)


def _grasp(env, colour):
    if REWARDS[(f"grasp_{colour}", 1)](env.observation()):  # in a skill sequence the previous skill may have done it
        return
    yield from _reach(env, colour)
    yield from _go(env, env.cube_position(colour), 1.0)
    yield from _hold(env, -1.0, 5)


def _lift(env, colour):
    yield from _grasp(env, colour)
    yield from _go(env, env.cube_position(colour) + [0, 0, 0.15], -1.0)


def _place(env, top, bottom):
    yield from _lift(env, top)
    above = env.cube_position(bottom) + [0, 0, 0.15]
    yield from _go(env, above, -1.0)
    yield from _go(env, env.cube_position(bottom) + [0, 0, 2 * CUBE_HALF + 0.004], -1.0)
    yield from _hold(env, 1.0, 4)
    yield from _go(env, env.target + [0, 0, 0.1], 1.0)


def _tower(env, bottom, middle, top):
    yield from _place(env, middle, bottom)
    yield from _place(env, top, middle)


def _open(env):
    yield from _hold(env, 1.0, 4)


def _home(env):
    yield from _go(env, HOME, 1.0 if env.gripper_opening() > OPEN_THRESHOLD else -1.0)


def _skill(skill_id: str, expert, target: tuple[str, ...] = (), setup: str | None = None) -> Skill:
    """A skill rewarded by the function of the same name, version 1 (the one its expert was written for)."""
    return Skill(skill_id, REWARDS[(skill_id, 1)].caption, 1, (skill_id, 1), expert, target, setup)


def _build_library() -> dict[str, Skill]:
    skills: list[Skill] = []
    for c in COLOURS:
        skills += [_skill(f"reach_{c}", lambda env, c=c: _reach(env, c), (c,)),
                   _skill(f"grasp_{c}", lambda env, c=c: _grasp(env, c), (c,)),
                   _skill(f"lift_{c}", lambda env, c=c: _lift(env, c), (c,))]
    for top, bottom in itertools.permutations(COLOURS, 2):
        skills.append(_skill(f"place_{top}_on_{bottom}", lambda env, t=top, b=bottom: _place(env, t, b), (top, bottom)))
    skills += [_skill("open_gripper", _open, setup="grasp_red"),
               _skill("go_home", _home, setup="reach_green"),
               _skill("build_tower", lambda env: _tower(env, "blue", "green", "red"), ("blue", "green", "red"))]
    return {s.id: s for s in skills}


LIBRARY = _build_library()


class UnknownSkill(ValueError):
    pass


def get_skill(skill_id: str) -> Skill:
    if skill_id not in LIBRARY:
        raise UnknownSkill(f"unknown skill {skill_id!r}; known: {', '.join(LIBRARY)}")
    return LIBRARY[skill_id]


def expert_actions(env: BlockStackingEnv, skill: Skill, rng: np.random.Generator,
                   noise: float = 0.0) -> Iterator[np.ndarray]:
    """Actions of the scripted expert for `skill`; `noise` (std of the displacement, in action
    units) makes realistic non-expert data."""
    for goal, grip in skill.expert(env):
        delta = np.clip((goal - env.target) / env.max_step_m, -1.0, 1.0)
        if noise:
            delta = np.clip(delta + rng.normal(0.0, noise, 3), -1.0, 1.0)
        yield np.concatenate([delta, [grip]]).astype(np.float32)
