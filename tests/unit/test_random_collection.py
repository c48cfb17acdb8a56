"""The random arm of `robolake run` (collection = random): what it may draw, and how uniformly."""

from collections import Counter

from producers.sim.skills import LIBRARY
from robolake.experiment.stages import random_skills

SKILLS = list(LIBRARY)


def test_the_random_arm_draws_every_proposable_task_once_before_any_twice():
    for seed in range(5):
        first = [s for iteration in range(6) for s in random_skills(SKILLS, seed, iteration, 3)]
        assert sorted(first) == sorted(SKILLS)  # 18 draws: the whole library, the held-out task among them
        assert "place_red_on_blue" in first and "build_tower" in first


def test_each_draw_is_uniform_over_the_library_and_seeds_differ():
    counts = Counter(s for seed in range(3000) for s in random_skills(SKILLS, seed, 0, 3))
    assert set(counts) == set(SKILLS)
    assert all(400 <= n <= 600 for n in counts.values())  # 9,000 draws: 500 each, sd ~22
    assert random_skills(SKILLS, 0, 0, 3) != random_skills(SKILLS, 1, 0, 3)


def test_a_round_is_the_same_when_asked_again():  # a resumed run sends the same decisions
    assert random_skills(SKILLS, 7, 4, 3) == random_skills(SKILLS, 7, 4, 3)
    assert random_skills(SKILLS, 7, 4, 3) != random_skills(SKILLS, 7, 5, 3)
