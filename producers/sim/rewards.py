"""Reward functions of the observation: vectorized, registered by (name, version), hashed.

Each function takes a batch of observations (N x 43 or N x 46 float32: v1 or v2 of
schemas/observation.py, named by `OBSERVATION_NAMES`; they read v1's floats only, which keep their
places in v2) and returns N success booleans and N float rewards (the success as 0/1 unless a shaped reward is defined). The
rollout workers call the same function on a batch of one (`fn(obs)` with a 1-D observation), so
the reward a worker wrote and the one a relabel computes come from one definition.

`source_hash` is a SHA-256 over the kernel's source, its parameters, the helpers' sources and the
constants they read: a result row names exactly what computed it, and an edit that forgot to bump
the version shows up as a new hash under an old version.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from producers.sim.env import HOME, OBSERVATION_NAMES
from producers.sim.scene import COLOURS, CUBE_HALF, TABLE_TOP
from schemas import observation

OBS_DIMS = (observation.size(1), observation.size(2))  # the observation lengths a function accepts
_INDEX = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
OPEN_THRESHOLD, HOLD_RANGE = 0.07, (0.03, 0.05)  # gripper opening (sum of both fingers), metres
REST_Z = TABLE_TOP + CUBE_HALF                    # a cube's centre when it lies on the table


class UnknownReward(ValueError):
    pass


class RewardError(ValueError):
    """A reward function returned something unusable (wrong length, NaN): names the function."""


# --- helpers over batches (N x OBS_DIMS) ----------------------------------------------------------

def _xyz(obs: np.ndarray, name: str) -> np.ndarray:
    i = _INDEX[f"{name}_x"]
    return obs[:, i:i + 3]


def _opening(obs: np.ndarray) -> np.ndarray:
    return obs[:, _INDEX["gripper_opening"]]


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(v * v, axis=1))


def _holding(obs, colour):
    opening = _opening(obs)
    near = _norm(_xyz(obs, "ee") - _xyz(obs, colour)) < 0.02
    return (HOLD_RANGE[0] <= opening) & (opening <= HOLD_RANGE[1]) & near


def _on(obs, top, bottom, xy_tol=0.02, z_tol=0.01):
    a, b = _xyz(obs, top), _xyz(obs, bottom)
    return (_norm(a[:, :2] - b[:, :2]) < xy_tol) & (np.abs(a[:, 2] - b[:, 2] - 2 * CUBE_HALF) < z_tol)


_HELPERS = (_xyz, _opening, _norm, _holding, _on)
# Hashed as they were before v2 (the v1 names): rows in existing lakes are keyed by these hashes.
_CONSTANTS = {"OBSERVATION_NAMES": list(OBSERVATION_NAMES[:observation.size(1)]), "OPEN_THRESHOLD": OPEN_THRESHOLD,
              "HOLD_RANGE": HOLD_RANGE, "CUBE_HALF": CUBE_HALF, "TABLE_TOP": TABLE_TOP, "HOME": HOME.tolist()}


# --- kernels: (obs batch, **params) -> success, or (success, shaped reward) ------------------------

def reach(obs, colour):
    ee, cube = _xyz(obs, "ee"), _xyz(obs, colour)
    dz = ee[:, 2] - cube[:, 2]
    success = (_norm(ee[:, :2] - cube[:, :2]) < 0.02) & (0.02 < dz) & (dz < 0.09)
    # shaped: 1 at the point 5.5 cm above the block, falling off over ~10 cm
    above = cube + np.array([0.0, 0.0, 0.055], dtype=obs.dtype)
    return success, np.exp(-_norm(ee - above) / 0.1)


def grasp(obs, colour):
    return _holding(obs, colour)


def lift(obs, colour):
    return _holding(obs, colour) & (_xyz(obs, colour)[:, 2] > REST_Z + 0.05)


def place(obs, top, bottom, xy_tol, z_tol):
    return _on(obs, top, bottom, xy_tol, z_tol) & (_opening(obs) > OPEN_THRESHOLD)


def open_gripper(obs):
    return _opening(obs) > OPEN_THRESHOLD


def go_home(obs):
    return _norm(_xyz(obs, "ee") - HOME) < 0.02


def build_tower(obs):
    return _on(obs, "green", "blue") & _on(obs, "red", "green") & (_opening(obs) > OPEN_THRESHOLD)


def any_block_lifted(obs, height):
    lifted = np.max(np.stack([_xyz(obs, c)[:, 2] for c in COLOURS], axis=1), axis=1) - REST_Z
    return lifted > height, np.clip(lifted / height, 0.0, 1.0)


def blocks_touching(obs, gap):
    """Face to face (or stacked): centres closer than one cube side plus `gap` (contact slack)."""
    close = [_norm(_xyz(obs, a) - _xyz(obs, b)) < 2 * CUBE_HALF + gap for a, b in itertools.combinations(COLOURS, 2)]
    return np.logical_or.reduce(close)


def two_block_tower(obs):
    stacked = [_on(obs, t, b) for t, b in itertools.permutations(COLOURS, 2)]
    return np.logical_or.reduce(stacked) & (_opening(obs) > OPEN_THRESHOLD)


# --- the registry -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RewardFunction:
    name: str
    version: int
    caption: str                     # what a policy conditioned on text is asked to do
    kernel: Callable
    params: tuple[tuple[str, object], ...]
    source_hash: str

    @property
    def key(self) -> tuple[str, int]:
        return self.name, self.version

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def evaluate(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(success bool[N], reward float32[N]) for a batch; RewardError if the kernel misbehaves."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] not in OBS_DIMS:
            raise ValueError(f"{self.spec} expects an N x {' or N x '.join(map(str, OBS_DIMS))} observation batch "
                             f"(observation v1 or v2), got {obs.shape}")
        out = self.kernel(obs, **dict(self.params))
        success, reward = out if isinstance(out, tuple) else (out, None)
        success = np.asarray(success)
        reward = success.astype(np.float32) if reward is None else np.asarray(reward, dtype=np.float32)
        n = len(obs)
        if success.shape != (n,) or reward.shape != (n,):
            raise RewardError(f"reward function {self.spec} returned {success.shape[0] if success.ndim else 0} "
                              f"values for {n} observations")
        if not np.all(np.isfinite(reward)) or (success.dtype.kind == "f" and not np.all(np.isfinite(success))):
            raise RewardError(f"reward function {self.spec} returned NaN or infinite values")
        return success.astype(bool), reward

    def __call__(self, obs: np.ndarray):
        """A 1-D observation: its success as a bool (the per-step path). A batch: the success array."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim == 1:
            return bool(self.evaluate(obs[None, :])[0][0])
        return self.evaluate(obs)[0]


REWARDS: dict[tuple[str, int], RewardFunction] = {}


def _source(fn: Callable) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # defined where no source file exists (an interactive session): its bytecode
        return fn.__code__.co_code.hex() + repr(fn.__code__.co_consts)


def source_hash(kernel: Callable, params: dict) -> str:
    text = json.dumps({"kernel": _source(kernel), "params": params,
                       "helpers": [inspect.getsource(h) for h in _HELPERS], "constants": _CONSTANTS},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def register(name: str, version: int, caption: str, kernel: Callable, **params) -> tuple[str, int]:
    if (name, version) in REWARDS:
        raise ValueError(f"reward function {name}@{version} is already registered")
    REWARDS[(name, version)] = RewardFunction(name, version, caption, kernel, tuple(sorted(params.items())),
                                              source_hash(kernel, params))
    return name, version


def known() -> str:
    return ", ".join(f.spec for f in sorted(REWARDS.values(), key=lambda f: f.key))


def get_reward(spec: str) -> RewardFunction:
    """'name' (its latest version) or 'name@version'; UnknownReward lists the known ones."""
    name, sep, version = spec.partition("@")
    versions = sorted(v for n, v in REWARDS if n == name)
    if sep:  # 'name@' (no version) is as malformed as 'name@x'; isdigit() would accept '²'
        if not (version.isascii() and version.isdecimal()) or (name, int(version)) not in REWARDS:
            raise UnknownReward(f"unknown reward function {spec!r}; known: {known()}")
        return REWARDS[(name, int(version))]
    if not versions:
        raise UnknownReward(f"unknown reward function {spec!r}; known: {known()}")
    return REWARDS[(name, versions[-1])]


def _register_library() -> None:
    for c in COLOURS:
        register(f"reach_{c}", 1, f"reach the {c} block", reach, colour=c)
        register(f"grasp_{c}", 1, f"grasp the {c} block", grasp, colour=c)
        register(f"lift_{c}", 1, f"lift the {c} block", lift, colour=c)
    for top, bottom in itertools.permutations(COLOURS, 2):
        caption = f"put the {top} block on the {bottom} block"
        register(f"place_{top}_on_{bottom}", 1, caption, place, top=top, bottom=bottom, xy_tol=0.02, z_tol=0.01)
        # v2: a stricter tolerance (1 cm off-centre, 5 mm off the resting height), to relabel history under it
        register(f"place_{top}_on_{bottom}", 2, caption, place, top=top, bottom=bottom, xy_tol=0.01, z_tol=0.005)
    register("open_gripper", 1, "open the gripper", open_gripper)
    register("go_home", 1, "go to the home position", go_home)
    register("build_tower", 1, "build a tower: blue at the bottom, then green, then red on top", build_tower)
    # New tasks found in old data: no producer rewards these.
    register("any_block_lifted", 1, "lift any block more than 10 cm above the table", any_block_lifted, height=0.10)
    register("blocks_touching", 1, "make two blocks touch", blocks_touching, gap=0.005)
    register("two_block_tower", 1, "stack any block on another block", two_block_tower)


_register_library()
