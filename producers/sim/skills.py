"""The skill library: ids, captions, versions, a success/reward function of the observation, and
a scripted expert for each skill.

Reward functions read only the observation vector (schemas of `episode.steps.observation`), so
historic data in the lake can be relabelled with any of them, by name and version.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from producers.sim.env import HOME, OBSERVATION_NAMES, BlockStackingEnv
from producers.sim.scene import COLOURS, CUBE_HALF, TABLE_TOP

_INDEX = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
OPEN_THRESHOLD, HOLD_RANGE = 0.07, (0.03, 0.05)  # gripper opening (sum of both fingers), metres


def _pos(obs: np.ndarray, name: str) -> np.ndarray:
    i = _INDEX[f"{name}_x"]
    return obs[i:i + 3]


def _holding(obs: np.ndarray, colour: str) -> bool:
    opening = obs[_INDEX["gripper_opening"]]
    near = np.linalg.norm(_pos(obs, "ee") - _pos(obs, colour)) < 0.02
    return bool(HOLD_RANGE[0] <= opening <= HOLD_RANGE[1] and near)


def _on(obs: np.ndarray, top: str, bottom: str) -> bool:
    a, b = _pos(obs, top), _pos(obs, bottom)
    return bool(np.linalg.norm(a[:2] - b[:2]) < 0.02 and abs(a[2] - b[2] - 2 * CUBE_HALF) < 0.01)


# --- success functions of the observation, registered by (name, version) ------------------------

RewardFn = Callable[[np.ndarray], bool]
REWARDS: dict[tuple[str, int], RewardFn] = {}


def _register(name: str, version: int, fn: RewardFn) -> tuple[str, int]:
    REWARDS[(name, version)] = fn
    return name, version


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
        return bool(REWARDS[self.reward](obs))


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


def _reach(env, colour):
    yield from _go(env, env.cube_position(colour) + [0, 0, 0.06], 1.0)


def _grasp(env, colour):
    if _holding(env.observation(), colour):  # in a skill sequence the previous skill may have done it
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


def _build_library() -> dict[str, Skill]:
    skills: list[Skill] = []
    for c in COLOURS:
        skills += [
            Skill(f"reach_{c}", f"reach the {c} block", 1,
                  _register(f"reach_{c}", 1, lambda o, c=c: bool(
                      np.linalg.norm(_pos(o, "ee")[:2] - _pos(o, c)[:2]) < 0.02
                      and 0.02 < _pos(o, "ee")[2] - _pos(o, c)[2] < 0.09)),
                  lambda env, c=c: _reach(env, c), (c,)),
            Skill(f"grasp_{c}", f"grasp the {c} block", 1,
                  _register(f"grasp_{c}", 1, lambda o, c=c: _holding(o, c)),
                  lambda env, c=c: _grasp(env, c), (c,)),
            Skill(f"lift_{c}", f"lift the {c} block", 1,
                  _register(f"lift_{c}", 1, lambda o, c=c: _holding(o, c)
                            and _pos(o, c)[2] > TABLE_TOP + CUBE_HALF + 0.05),
                  lambda env, c=c: _lift(env, c), (c,)),
        ]
    for top, bottom in itertools.permutations(COLOURS, 2):
        skills.append(Skill(
            f"place_{top}_on_{bottom}", f"put the {top} block on the {bottom} block", 1,
            _register(f"place_{top}_on_{bottom}", 1, lambda o, t=top, b=bottom: _on(o, t, b)
                      and o[_INDEX["gripper_opening"]] > OPEN_THRESHOLD),
            lambda env, t=top, b=bottom: _place(env, t, b), (top, bottom)))
    skills += [
        Skill("open_gripper", "open the gripper", 1,
              _register("open_gripper", 1, lambda o: bool(o[_INDEX["gripper_opening"]] > OPEN_THRESHOLD)),
              _open, setup="grasp_red"),
        Skill("go_home", "go to the home position", 1,
              _register("go_home", 1, lambda o: bool(np.linalg.norm(_pos(o, "ee") - HOME) < 0.02)), _home,
              setup="reach_green"),
        Skill("build_tower", "build a tower: blue at the bottom, then green, then red on top", 1,
              _register("build_tower", 1, lambda o: _on(o, "green", "blue") and _on(o, "red", "green")
                        and o[_INDEX["gripper_opening"]] > OPEN_THRESHOLD),
              lambda env: _tower(env, "blue", "green", "red"), ("blue", "green", "red")),
    ]
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
