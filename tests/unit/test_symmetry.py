"""Colour symmetry (learner/symmetry.py): a recoloured sample is a sample of the recoloured skill, with the
reward the registered functions compute; skills without colour words are left alone."""

from __future__ import annotations

import numpy as np
import pytest

from learner.symmetry import ColourSymmetry
from producers.sim.rewards import REWARDS
from producers.sim.scene import CUBE_HALF, TABLE_TOP
from schemas import observation

WHERE = observation.offsets()
COLOURS = observation.COLOURS
CUBE_FIELDS = np.zeros(observation.size(), bool)  # the floats a colour permutation moves
for _colour in COLOURS:
    for _part in ("xyz", "quat"):
        CUBE_FIELDS[WHERE[f"{_colour}_{_part}"]] = True


def scenes(n: int, seed: int = 0) -> np.ndarray:
    """Observations where every skill's success is common: cubes stacked, lifted and under the hand,
    the gripper at every opening."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, observation.size())).astype(np.float32)
    for c in COLOURS:
        obs[:, WHERE[f"{c}_xyz"]] = np.c_[rng.uniform(0.38, 0.62, (n, 2)), np.full(n, TABLE_TOP + CUBE_HALF)]
    for i in range(n):
        top, bottom, held = rng.permutation(COLOURS)
        if rng.random() < 0.6:  # a stack, a few millimetres off
            obs[i, WHERE[f"{top}_xyz"]] = obs[i, WHERE[f"{bottom}_xyz"]] + [*rng.normal(0, 0.006, 2),
                                                                          2 * CUBE_HALF + rng.normal(0, 0.004)]
        if rng.random() < 0.5:
            obs[i, WHERE[f"{held}_xyz"].start + 2] += 0.08
        obs[i, WHERE["hand_xyz"]] = obs[i, WHERE[f"{held}_xyz"]] + [*rng.normal(0, 0.006, 2), rng.choice([0, 0, 0.05])]
    obs[:, WHERE["gripper_opening"]] = rng.uniform(0.02, 0.09, (n, 1))
    return obs


FUNCTIONS = sorted(REWARDS)


def successes(obs: np.ndarray, skills: np.ndarray) -> np.ndarray:
    return np.array([REWARDS[FUNCTIONS[s]](o[None])[0] for o, s in zip(obs, skills)])


def test_every_colour_skills_reward_is_its_recoloured_skills_on_recoloured_cubes():
    obs, symmetry = scenes(3000), ColourSymmetry(FUNCTIONS)
    coloured = [i for i, (name, _) in enumerate(FUNCTIONS) if any(c in name.split("_") for c in COLOURS)]
    assert len(coloured) == 3 * 3 + 6 * 2  # reach, grasp, lift per colour; place per ordered pair, 2 versions
    for p, gather in enumerate(symmetry.gathers):
        for i in coloured:
            image = symmetry.skills[p, i]
            before, after = REWARDS[FUNCTIONS[i]].evaluate(obs), REWARDS[FUNCTIONS[image]].evaluate(obs[:, gather])
            assert 20 < before[0].sum() < len(obs) - 20, f"{FUNCTIONS[i]}: the scenes should show success and failure"
            np.testing.assert_array_equal(before[0], after[0], err_msg=f"{FUNCTIONS[i]} -> {FUNCTIONS[image]}")
            np.testing.assert_allclose(before[1], after[1], rtol=1e-6)


def test_apply_recolours_samples_and_keeps_what_has_no_colour():
    rng = np.random.default_rng(1)
    obs = scenes(4000, seed=2)
    skills = rng.integers(len(FUNCTIONS), size=len(obs))
    captions = [REWARDS[f].caption for f in FUNCTIONS]
    batch = {"observation": obs, "next_observation": obs[::-1].copy(), "skill": skills.astype(np.int32),
             "caption": np.array(captions, dtype=object)[skills], "action": rng.normal(size=(len(obs), 4))}
    out = ColourSymmetry(FUNCTIONS).apply(batch, captions, np.random.default_rng(3))
    np.testing.assert_array_equal(successes(out["observation"], out["skill"]), successes(obs, skills))
    np.testing.assert_array_equal(successes(out["next_observation"], out["skill"]),
                                  successes(batch["next_observation"], skills))
    assert list(out["caption"]) == [captions[s] for s in out["skill"]]
    assert out["action"] is batch["action"] and out["skill"].dtype == np.int32
    colourless = np.array(["_" not in FUNCTIONS[s][0] or not set(FUNCTIONS[s][0].split("_")) & set(COLOURS)
                           for s in skills])
    np.testing.assert_array_equal(out["observation"][colourless], obs[colourless])
    assert np.all(out["skill"][colourless] == skills[colourless])
    changed = np.mean(out["skill"][~colourless] != skills[~colourless])
    assert 0.75 < changed < 0.92  # 5 of the 6 permutations move a colour skill (place has no fixed point)


def test_every_permutation_is_drawn_alike_and_moves_each_cube_whole():
    import itertools

    places = [(f"place_{a}_on_{b}", 1) for a, b in itertools.permutations(COLOURS, 2)]
    n = 6000
    obs = np.tile(np.arange(observation.size(), dtype=np.float32), (n, 1))  # each float names its field
    batch = {"observation": obs, "next_observation": obs + 100, "skill": np.zeros(n, np.int32),
             "caption": np.array(["put the red block on the green block"] * n, dtype=object)}
    out = ColourSymmetry(places).apply(batch, [name for name, _ in places], np.random.default_rng(0))
    top, bottom = places[0][0].split("_")[1::2]
    for skill, (name, _) in enumerate(places):  # the recoloured skill says where red and green went
        rows = out["skill"] == skill
        assert abs(rows.mean() - 1 / 6) < 0.02, f"{name} drawn {rows.mean():.3f} of the time"
        a, b = name.split("_")[1::2]
        image = {top: a, bottom: b, (set(COLOURS) - {top, bottom}).pop(): (set(COLOURS) - {a, b}).pop()}
        for key, shift in (("observation", 0), ("next_observation", 100)):
            for colour in COLOURS:
                for part in ("xyz", "quat"):
                    np.testing.assert_array_equal(out[key][rows][:, WHERE[f"{image[colour]}_{part}"]],
                                                  obs[rows][:, WHERE[f"{colour}_{part}"]] + shift)
            np.testing.assert_array_equal(out[key][rows][:, ~CUBE_FIELDS], obs[rows][:, ~CUBE_FIELDS] + shift)


def test_a_recoloured_skill_the_dataset_lacks_keeps_its_sample():
    functions = [("reach_red", 1), ("reach_green", 1)]  # no reach_blue: a permutation into it keeps the sample
    obs = scenes(600)
    batch = {"observation": obs, "next_observation": obs, "skill": np.zeros(600, np.int32),
             "caption": np.array(["reach the red block"] * 600, dtype=object)}
    out = ColourSymmetry(functions).apply(batch, ["reach the red block", "reach the green block"],
                                          np.random.default_rng(0))
    moved = out["skill"] == 1
    assert 0.25 < moved.mean() < 0.42  # red -> green in 2 of the 6 permutations
    np.testing.assert_array_equal(out["observation"][moved][:, WHERE["green_xyz"]], obs[moved][:, WHERE["red_xyz"]])
    # the rest are red again, under the identity or with green and blue swapped (reach_red@1 is in the dataset)
    np.testing.assert_array_equal(out["observation"][~moved][:, WHERE["red_xyz"]], obs[~moved][:, WHERE["red_xyz"]])


def test_observations_of_another_size_are_refused():
    with pytest.raises(ValueError, match="46-float observations given 43"):
        ColourSymmetry([("reach_red", 1)]).apply({"observation": np.zeros((2, 43)), "skill": np.zeros(2, int)},
                                                 ["r"], np.random.default_rng(0))
