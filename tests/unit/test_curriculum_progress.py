"""The frontier is real: proposals are ranked by expected learning progress (consumers/curriculum/
progress.py), every proposal carries its score and the numbers behind it, and `robolake tail`, the
dashboard's timeline and the report show them; proposals written before the score still read."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from consumers.conversation import describe
from consumers.curriculum import progress, scripted, stages
from consumers.curriculum.prompts import prompts
from consumers.curriculum.progress import EXPLORE, learning_progress
from consumers.curriculum.recorder import RecordingVLM
from consumers.curriculum.scripted import ScriptedVLM
from infra.bus.interface import Delivery
from schemas.codec import build, decode, encode
from schemas.events import CURRICULUM_PROPOSAL, CURRICULUM_PROPOSAL_V2, CURRICULUM_PROPOSAL_V3
from schemas.stats import wilson

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RISING_MID = [(2, 10), (3, 10), (4, 10)]    # 0.2, 0.3, 0.4 over three iterations
FLAT_MID = [(4, 10)] * 3


def test_a_skill_at_0_4_and_rising_ranks_above_one_at_0_or_at_0_95():
    rising = learning_progress(RISING_MID).score
    for n in (10, 20, 100):  # whatever the number of episodes behind the flat ones
        assert rising > learning_progress([(0, n)] * 3).score, n
        assert rising > learning_progress([(round(0.95 * n), n)] * 3).score, n
    assert rising > learning_progress(FLAT_MID).score, "rising beats flat at the same level"
    assert learning_progress([(6, 10), (5, 10), (4, 10)]).score == rising, "forgetting is progress to make up too"


def test_the_score_is_pure_and_says_its_numbers():
    score = learning_progress(RISING_MID)
    assert score == learning_progress(list(RISING_MID)), "deterministic"
    assert score.slope == 0.1 and score.iterations == 3 and score.rate == 0.4
    assert score.reason == "learning progress 0.22: success 0.40 [0.17, 0.69], +0.10 per iteration over 3 iterations"
    assert learning_progress([(1, 10)] * 5).iterations == progress.ITERATIONS, "only the recent iterations"
    assert learning_progress([(4, 10), (0, 0)]) == learning_progress([(4, 10)]), "an empty iteration is no point"
    assert learning_progress([(4, 10)]).reason.endswith("one iteration, no slope yet")
    never = learning_progress([])
    assert never.score == EXPLORE and never.reason == f"learning progress {EXPLORE:.2f}: never tried (the exploration value)"
    assert learning_progress(FLAT_MID).score > EXPLORE > learning_progress([(0, 40)]).score


def row(skill: str, wins: int, n: int, version: int = 1, policy: str = "pac:run") -> dict:
    low, high = wilson(wins, n)
    return {"summary_id": f"{skill}-{policy}-{version}", "skill_id": skill, "policy_id": policy,
            "policy_version": f"step-{version}", "episodes": n, "successes": wins, "success_rate": wins / n,
            "ci_low": low, "ci_high": high, "recent_rate": wins / n, "trend": "flat",
            "time": T0 + timedelta(hours=version)}


def history(skill: str, points, policy: str = "pac:run") -> list[dict]:
    return [row(skill, wins, n, i + 1, policy) for i, (wins, n) in enumerate(points)]


def test_histories_follow_time_and_the_most_practised_policy():
    rows = history("lift_red", RISING_MID)[::-1] + history("lift_red", [(9, 10)], policy="scripted_expert")
    assert progress.histories(rows) == {"lift_red": RISING_MID}, "time order; the expert's 10 episodes are not the learner's 30"


LIBRARY = stages.Library({"reach_red": "reach the red block", "reach_green": "reach the green block",
                          "reach_blue": "reach the blue block", "open_gripper": "open the gripper"},
                         {"reach_red": ("reach_red",), "reach_green": ("reach_green",), "reach_blue": ("reach_blue",),
                          "open_gripper": ("open_gripper",)})
PNG = prompts.image_file("scene_seed3.png")


def test_the_scripted_experimenter_picks_the_rising_mid_skill_over_mastered_hopeless_and_flat():
    rows = (history("reach_red", [(4, 10), (20, 40), (19, 20)])          # mastered now
            + history("reach_blue", [(0, 10), (0, 20), (0, 20)])         # hopeless: flat at 0
            + history("open_gripper", FLAT_MID)                          # mid, flat (first in ties)
            + history("reach_green", RISING_MID))                        # mid and rising
    current = [r for r in rows if r["policy_version"] == "step-3"]
    request = stages.propose_request(LIBRARY, current, PNG, 2, history=rows)
    assert request.context["progress"]["reach_green"]["slope"] == 0.1, "the slope spans the policy's versions"
    assert "reach_green: learning progress 0.22: success 0.40" in request.messages[-1].text, "a real model reads it"
    tasks = json.loads(ScriptedVLM().complete(request).text)["tasks"]
    assert [t["skill"] for t in tasks] == ["reach_green", "open_gripper"]
    assert tasks[0]["rationale"].startswith("reach_green (4/10 successes) ranks 1 of 2 candidates by learning "
                                            "progress (0.22)")
    # scored from the summaries alone (no earlier versions), the two mid skills tie: library order
    alone = scripted.propose({"max_tasks": 1, "skills": LIBRARY.context(), "summaries": current})["tasks"]
    assert [t["skill"] for t in alone] == ["reach_green"]

    vlm = RecordingVLM(ScriptedVLM(), Sent(), "exp")
    [proposal, _] = stages.propose(vlm, request, LIBRARY, "round", 2)
    assert proposal.score == request.context["progress"]["reach_green"]["score"]
    assert proposal.progress == "learning progress 0.22: success 0.40 [0.17, 0.69], +0.10 per iteration over 3 iterations"


class Sent:
    """A producer that keeps what it is sent."""

    def __init__(self):
        self.batches = []

    def send(self, topic, key, batch):
        self.batches.append(batch)

    def flush(self, timeout_s=None):
        pass


def proposal_row(**extra) -> dict:
    return {"proposal_id": "p1", "experiment_id": "exp", "proposer": "scripted/frontier-rules-v3",
            "task": "reach the green block", "rationale": "it is rising", "time": T0, **extra}


def line(event_type, row: dict) -> str:
    batch = decode(*encode(build(event_type, [row])))
    return describe(Delivery("robolake.curriculum", 0, 0, None, batch, 0))


def test_tail_shows_the_score_and_its_numbers_and_old_proposals_still_print():
    reason = learning_progress(RISING_MID).reason
    shown = line(CURRICULUM_PROPOSAL_V3, proposal_row(call_id=None, score=0.22, progress=reason))
    assert shown == (f'[00:00:00] scripted/frontier-rules-v3: I propose "reach the green block" — it is rising '
                     f"[{reason}]")
    for old, extra in ((CURRICULUM_PROPOSAL, {}), (CURRICULUM_PROPOSAL_V2, {"call_id": "c1"})):
        assert line(old, proposal_row(**extra)).endswith('I propose "reach the green block" — it is rising')
    # a task no library skill does has no score: the v3 fields stay null
    assert line(CURRICULUM_PROPOSAL_V3, proposal_row(call_id=None, score=None, progress=None)).endswith("it is rising")
