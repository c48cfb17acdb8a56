"""Colour symmetry: a transition with its cubes' colours permuted is a transition of the recoloured skill.

The three cubes differ only in colour (same size and mass; spawned one after another by one rule,
which leaves the last a little nearer the edge: benchmarks/README.md), and a skill named
after colours (`place_red_on_blue`) computes the same reward of the same kernel for any colours. So
swapping the cubes' observation fields and the colour words of the skill's name turns one
demonstration into one of another skill: each place pair gets the demonstrations of all six, which
on learning_quality's lake (~50 per pair) was the difference between place at ~0.45 and what 100
clean demonstrations per pair give (benchmarks/README.md). A skill without colour words
(`build_tower` orders its colours in its kernel) and a recoloured skill the dataset lacks keep
their sample as it is.
"""

from __future__ import annotations

import itertools

import numpy as np

from schemas import observation


def recoloured(name: str, permutation: dict[str, str]) -> str:
    """`name` with each colour word (a `_`-separated part) replaced by its image."""
    return "_".join(permutation.get(part, part) for part in name.split("_"))


class ColourSymmetry:
    """`apply(batch, captions, rng)`: each sample under one of the colour permutations drawn uniformly
    (the identity among them), its observations and skill recoloured together."""

    def __init__(self, functions: list[tuple[str, int]], observation_version: int = observation.CURRENT):
        colours = observation.COLOURS
        where = observation.offsets(observation_version)
        index = {spec: i for i, spec in enumerate(functions)}
        self.permutations = [dict(zip(colours, order)) for order in itertools.permutations(colours)]
        gathers, skills = [], []
        identity = np.arange(observation.size(observation_version))
        for permutation in self.permutations:
            gather = identity.copy()
            for colour, image in permutation.items():
                for part in ("xyz", "quat"):  # the field of `image` now holds what `colour`'s held
                    gather[where[f"{image}_{part}"]] = identity[where[f"{colour}_{part}"]]
            gathers.append(gather)
            skills.append([index.get((recoloured(name, permutation), version), -1)
                           if any(part in colours for part in name.split("_")) else -1
                           for name, version in functions])
        self.gathers = np.stack(gathers)                     # (permutations, observation floats)
        self.skills = np.array(skills, dtype=np.int64).reshape(len(gathers), len(functions))  # -1: keep

    def apply(self, batch: dict, captions: list[str], rng: np.random.Generator) -> dict:
        if batch["observation"].shape[1] != self.gathers.shape[1]:
            raise ValueError(f"colour symmetry of {self.gathers.shape[1]}-float observations given "
                             f"{batch['observation'].shape[1]} floats")
        drawn = rng.integers(len(self.permutations), size=len(batch["skill"]))
        skill = self.skills[drawn, batch["skill"]]
        drawn[skill < 0] = 0  # the identity: permutations()'s first order is the colours' own
        skill = np.where(skill < 0, batch["skill"], skill).astype(batch["skill"].dtype)
        rows, columns = np.arange(len(drawn))[:, None], self.gathers[drawn]
        return dict(batch, skill=skill, caption=np.array(captions, dtype=object)[skill],
                    observation=batch["observation"][rows, columns],
                    next_observation=batch["next_observation"][rows, columns])
