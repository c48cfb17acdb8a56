"""Policies behind one interface: the rollout worker asks for an action per control step and
never knows whether a script or a learned network answers. A learned, caption-conditioned
policy plugs in by implementing the same two methods."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Policy(Protocol):
    id: str
    version: str

    def start(self, env, skill, rng: np.random.Generator) -> None:
        """A new skill begins (its caption is `skill.caption`)."""

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The action for this observation (see producers/sim/env.py for units and bounds).
        The next skill starts at the first step on which this one succeeds (producers/rollout.py)."""


class ScriptedExpert:
    """The library's scripted expert for each skill; `noise` > 0 gives non-expert data."""

    id = "scripted_expert"

    def __init__(self, noise: float = 0.0):
        self.noise = noise
        # A noisy expert is another policy: its episodes are summarised apart from the clean ones.
        self.version = "1" if noise == 0 else f"1+noise{noise:g}"
        self._actions = iter(())
        self._env = None

    def start(self, env, skill, rng: np.random.Generator) -> None:
        from producers.sim.skills import expert_actions

        self._env = env
        self._actions = expert_actions(env, skill, rng, self.noise)

    def act(self, observation: np.ndarray) -> np.ndarray:
        action = next(self._actions, None)
        if action is None:  # the script is done: hold still, gripper as it is
            opened = self._env.gripper_opening() > 0.07
            action = np.array([0.0, 0.0, 0.0, 1.0 if opened else -1.0], dtype=np.float32)
        return action
