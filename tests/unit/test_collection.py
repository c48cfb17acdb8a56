"""Who collects what in `robolake run`: the random arm's draws (collection = random), and who acts."""

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


def test_rounds_that_cross_a_deck_still_deal_each_skill_once_per_deck():
    drawn = [s for iteration in range(9) for s in random_skills(SKILLS, 3, iteration, 4)]  # 36 = two decks
    assert sorted(drawn) == sorted(SKILLS * 2) and sorted(drawn[:18]) == sorted(SKILLS)


def test_a_resumed_random_round_sends_the_same_decisions():
    from types import SimpleNamespace

    from robolake.experiment.stages import _random_round, _reward_spec
    from robolake.experiment.state import RunState

    sent = []
    run = SimpleNamespace(run_id="exp-pac", send_decisions=sent.append,
                          config=SimpleNamespace(experiment_id="exp", seed=7, max_tasks=3, episodes_per_decision=8),
                          state=RunState("exp", done={(4, "relabel"): {"functions": [_reward_spec("reach_red")]},
                                                      (4, "train"): {"step": 900}, (4, "eval"): {}}))
    first, again = _random_round(run, 4), _random_round(run, 4)
    assert first == again and len(first["decisions"]) == 3
    assert [{k: v for k, v in r.items() if k != "time"} for r in sent[0]] == \
        [{k: v for k, v in r.items() if k != "time"} for r in sent[1]]
    assert [r["skill_sequence"][-1] for r in sent[0]] == random_skills(SKILLS, 7, 4, 3)


def test_the_expert_acts_on_skills_the_policy_was_not_trained_on_or_cannot_do_yet():
    from robolake.experiment.stages import _actor, _reward_spec
    from robolake.experiment.state import RunState

    class Run:
        run_id = "exp-pac"
        state = RunState("exp", done={
            (2, "relabel"): {"functions": [_reward_spec(s) for s in ("reach_red", "grasp_red", "lift_red")]},
            (2, "train"): {"step": 1500},
            (2, "eval"): {"success": {"reach_red": [12, 12], "grasp_red": [3, 12], "lift_red": [2, 12]}}})

    actor = _actor(Run(), 2)
    expert = {"policy_id": "scripted_expert", "policy_version": "1", "noise": 0.0}
    assert actor(("reach_red", "grasp_red")) == {"policy_id": "pac:exp-pac", "policy_version": "step-1500",
                                                 "expert_skills": [], "noise": 0.0}, "grasp at 3/12 is the policy's"
    assert actor(("reach_red", "grasp_red", "lift_red")) == {
        **expert, "expert_skills": ["reach_red", "grasp_red", "lift_red"]}, "lift at 2/12: the expert, whole"
    assert actor(("reach_red", "grasp_red", "lift_red", "place_red_on_green"))["policy_id"] == "scripted_expert", \
        "never trained on place_red_on_green"
