"""A growing library: the scripted experimenter proposes a composite task the announced library
lacks, its step becomes a missing skill, growth finds the built-in skill for it, announcing it
makes the next round decide on it; a second call adds nothing, an unrelated step adds nothing."""

from __future__ import annotations

import json

import pytest

from consumers.curriculum import growth, scripted
from consumers.curriculum.consumer import Curriculum, OnlyNew, load_library
from consumers.curriculum.prompts import prompts
from consumers.curriculum.recorder import RecordingVLM
from consumers.curriculum.replies import proposals
from consumers.curriculum.retrieval import CONFIDENT, SkillRetriever
from consumers.curriculum.scripted import ScriptedVLM
from consumers.curriculum.vlm import VLMReply
from consumers.lake_sink.sink import LakeSink
from infra.bus.backend import open_bus
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.sim.announce import BASE_SKILLS, announce_skills
from producers.sim.skills import LIBRARY, UnknownSkill
from schemas import topics
from schemas.stats import wilson

PNG = prompts.image_file("scene_seed3.png")


def summary(skill: str, n: int, wins: int) -> dict:
    low, high = wilson(wins, n)
    return {"summary_id": f"{skill}-{n}-{wins}", "skill_id": skill, "policy_id": "scripted", "policy_version": "1",
            "episodes": n, "successes": wins, "success_rate": wins / n, "ci_low": low, "ci_high": high,
            "recent_rate": wins / n, "trend": "flat"}


# Every base skill mastered but lifting green and blue, which are hopeless: no frontier candidate
# is left, and only the red block can be put on another.
SUMMARIES = [summary(s, 60, 0 if s in ("lift_green", "lift_blue") else 60) for s in BASE_SKILLS]


class Model(ScriptedVLM):
    """The scripted experimenter, but the first decompose replies can be given."""

    def __init__(self, *decompose: str):
        self.decompose = list(decompose)

    def complete(self, request):
        if request.stage == "decompose" and self.decompose:
            return VLMReply(self.decompose.pop(0), "given", 0.0)
        return super().complete(request)


@pytest.fixture(scope="module")
def retriever_for():
    """The curriculum's real retriever: the caption encoder, the calibrated thresholds."""
    from learner.captions import CaptionEncoder

    encoder = CaptionEncoder()
    return lambda library: SkillRetriever(list(library.captions.items()), embed=encoder.encode)


@pytest.fixture
def lake(tmp_path):
    """A lake whose library is the base skills only."""
    settings = Settings(lake=f"file://{tmp_path}/lake")
    assert announce_skills(open_bus(settings).producer(), BASE_SKILLS) == len(BASE_SKILLS)
    sink(settings)
    return settings


def sink(settings):
    LakeSink(settings, flush_seconds=0.5).run(until_idle_s=0.2)


def run_round(settings, experiment, retriever_for, model=None, summaries=SUMMARIES, max_tasks=3):
    producer = OnlyNew(open_bus(settings).producer(), set())
    curriculum = Curriculum(producer, RecordingVLM(model or Model(), producer, experiment), experiment, retriever_for,
                            max_tasks=max_tasks)
    con = open_lake(settings)
    try:
        result = curriculum.round(con, summaries=summaries, image=PNG)
    finally:
        con.close()
    sink(settings)
    return result


def grow(settings, experiment, retriever_for) -> list[growth.Addition]:
    con = open_lake(settings)
    try:
        return growth.skills_to_add(con, experiment, retriever_for)
    finally:
        con.close()


def sent(settings, experiment, kind):
    reader = open_bus(settings).consumer(None, [topics.CURRICULUM])
    rows = [r for d in reader.poll(0.2, max_records=100_000) if d.batch.type == kind for r in d.batch.rows()
            if r["experiment_id"] == experiment]
    reader.close()
    return rows


def test_a_task_the_library_lacks_grows_it_and_the_next_round_decides_on_it(lake, retriever_for):
    first = run_round(lake, "grow", retriever_for)
    assert [(p.task, p.skill) for p in first.proposals] == [("put the red block on the green block", None),
                                                            ("put the red block on the blue block", None)]
    assert not first.decisions
    missing = sent(lake, "grow", "curriculum.missing_skill")
    assert sorted(m["step"] for m in missing) == ["put the red block on the blue block",
                                                  "put the red block on the green block"]

    added = grow(lake, "grow", retriever_for)
    assert [a.skill_id for a in added] == ["place_red_on_green", "place_red_on_blue"]
    by_step = {m["step"]: m["missing_id"] for m in missing}
    for a in added:
        assert a.caption == LIBRARY[a.skill_id].caption and a.needed_by == ()
        assert a.steps == (a.caption,) and a.missing_ids == (by_step[a.caption],)
        assert a.similarity >= CONFIDENT
        assert a.skill_id in a.describe() and by_step[a.caption][:8] in a.describe()

    assert growth.announce_additions(open_bus(lake).producer(), added) == 2
    sink(lake)
    con = open_lake(lake)
    assert list(load_library(con).captions) == [s for s in LIBRARY if s in {*BASE_SKILLS, *(a.skill_id for a in added)}]
    con.close()

    second = run_round(lake, "grow", retriever_for)
    assert [p.skill for p in second.proposals] == ["place_red_on_green", "place_red_on_blue"]
    assert not second.missing
    # The decompose question names only the task, so it is the first round's, whose recorded answer
    # (one step, the task) is recalled: that step now has a skill.
    assert second.calls == 1, "only the proposals are asked again"
    assert [d.skill_sequence for d in second.decisions] == [("place_red_on_green",), ("place_red_on_blue",)]
    assert grow(lake, "grow", retriever_for) == [], "announced skills are never added again"


def test_an_unrelated_missing_step_adds_nothing(lake, retriever_for):
    result = run_round(lake, "juggle", retriever_for, Model(json.dumps({"steps": ["juggle the blocks"]})),
                       summaries=[], max_tasks=1)
    assert [m.step for m in result.missing] == ["juggle the blocks"]
    con = open_lake(lake)
    assert [step for _, step in growth.missing_steps(con, "juggle")] == ["juggle the blocks"]
    con.close()
    assert grow(lake, "juggle", retriever_for) == []


def test_a_skill_comes_with_the_unannounced_skills_it_builds_on(retriever_for):
    base = load_library_of(BASE_SKILLS)
    added = growth.additions_for([("m1", "build a tower of the three blocks")], base, retriever_for)
    assert [(a.skill_id, a.missing_ids, a.needed_by) for a in added] == [
        ("place_red_on_green", (), ("build_tower",)), ("place_green_on_blue", (), ("build_tower",)),
        ("build_tower", ("m1",), ())]
    assert added[0].similarity is None and added[2].similarity >= CONFIDENT
    alone = growth.additions_for([("m1", "build a tower of the three blocks")], base, retriever_for,
                                 prerequisites=False)
    assert [a.skill_id for a in alone] == ["build_tower"]


def test_nothing_to_match_asks_no_retriever():
    def no_retriever(library):
        raise AssertionError("no retriever is needed")

    assert growth.additions_for([], load_library_of(BASE_SKILLS), no_retriever) == []
    assert growth.additions_for([("m1", "stack the blocks")], load_library_of(list(LIBRARY)), no_retriever) == []


def load_library_of(ids):
    from consumers.curriculum.stages import Library
    from producers.rollout import task_for

    return Library({s: LIBRARY[s].caption for s in ids}, {s: task_for(s) for s in ids})


# --- the parts: the scripted ideas, a proposal of no skill, announcing some skills ---------------

def context(ids, rows, max_tasks=3):
    from producers.rollout import task_for

    return {"max_tasks": max_tasks, "summaries": rows,
            "skills": [{"id": s, "caption": LIBRARY[s].caption, "sequence": list(task_for(s))} for s in ids]}


def test_ideas_rank_with_the_skills_by_learning_progress_once_what_they_build_on_is_learned():
    tasks = scripted.propose(context(BASE_SKILLS, SUMMARIES, max_tasks=1))["tasks"]
    assert tasks == [{"task": "put the red block on the green block", "skill": "none",
                      "rationale": "no skill of the library does this yet; never tried, it ranks 1 of 2 candidates "
                                   "by learning progress (0.10, the exploration value); it builds on lift_red "
                                   "(60/60), learned"}]
    in_band = [r for r in SUMMARIES if r["skill_id"] != "lift_green"] + [summary("lift_green", 20, 10)]
    tasks = scripted.propose(context(BASE_SKILLS, in_band, max_tasks=2))["tasks"]
    assert [t["skill"] for t in tasks] == ["lift_green", "none"], "at 0.5 (0.12) before an idea (0.10)"
    nearly = [r for r in SUMMARIES if r["skill_id"] != "lift_green"] + [summary("lift_green", 12, 11)]
    tasks = scripted.propose(context(BASE_SKILLS, nearly, max_tasks=5))["tasks"]
    assert [t["task"] for t in tasks][:4] == ["put the red block on the green block",
                                              "put the red block on the blue block",
                                              "put the green block on the red block",
                                              "put the green block on the blue block"], \
        "lift_green at 11/12 is learned, so its placings are ready, and a never-tried idea (0.10) outranks it (0.07)"
    assert len(tasks) == 4, "lift_green gets no episodes of its own: the green placings run it"
    untried = scripted.propose(context(BASE_SKILLS, [], max_tasks=20))["tasks"]
    assert [t["skill"] for t in untried] == ["reach_red", "reach_green", "reach_blue", "open_gripper", "go_home"], \
        "nothing learned: no idea is ready"


def test_the_tower_idea_waits_for_its_placings_and_ideas_the_library_holds_are_dropped():
    ids = [*BASE_SKILLS, "place_green_on_blue", "place_red_on_green"]
    rows = [summary(s, 60, 60) for s in ids]
    tasks = scripted.propose(context(ids, rows, max_tasks=10))["tasks"]
    assert [t["task"] for t in tasks] == [
        "put the red block on the blue block", "put the green block on the red block",
        "put the blue block on the red block", "put the blue block on the green block",
        "build a tower of the three blocks"]
    assert all(t["skill"] == "none" for t in tasks)
    rows = [r for r in rows if r["skill_id"] != "place_red_on_green"]
    assert "build a tower of the three blocks" not in [t["task"] for t in
                                                       scripted.propose(context(ids, rows, max_tasks=10))["tasks"]]


def test_a_proposal_may_name_no_skill():
    library = {s: LIBRARY[s].caption for s in BASE_SKILLS}
    reply = {"tasks": [{"task": "put the red block on the blue block", "skill": "none", "rationale": "r"}]}
    assert proposals(reply, library, 3) == [{"task": "put the red block on the blue block", "skill": None,
                                             "rationale": "r"}]
    assert scripted.decompose({"task": "put the red block on the blue block", "skill": None,
                               "skills": []})["steps"] == ["put the red block on the blue block"]


def test_announce_some_skills_or_all(tmp_path):
    settings = Settings(lake=f"file://{tmp_path}/lake")
    producer = open_bus(settings).producer()
    with pytest.raises(UnknownSkill):
        announce_skills(producer, ["lift_red", "juggle"])
    assert announce_skills(producer, []) == 0
    assert announce_skills(producer, ["go_home", "lift_red", "go_home"]) == 2
    reader = open_bus(settings).consumer(None, [topics.SKILLS])
    batches = [d.batch for d in reader.poll(0.2, max_records=1000)]
    reader.close()
    assert [[r["skill_id"] for r in b.rows()] for b in batches] == [["go_home", "lift_red"]]
    assert announce_skills(producer) == len(LIBRARY)


def test_a_skill_begun_stays_a_candidate_when_what_it_builds_on_dips():
    ids = [*BASE_SKILLS, "place_red_on_blue"]
    rows = [summary(s, 60, 60) for s in BASE_SKILLS if s != "lift_red"] + [summary("lift_red", 12, 7),
                                                                           summary("place_red_on_blue", 12, 2)]
    tasks = scripted.propose(context(ids, rows, max_tasks=10))["tasks"]
    place = next(t for t in tasks if t["skill"] == "place_red_on_blue")
    assert "practised already, it stays a candidate while lift_red is not learned" in place["rationale"]
    fresh = scripted.propose(context(ids, [r for r in rows if r["skill_id"] != "place_red_on_blue"], 10))["tasks"]
    assert "place_red_on_blue" not in [t["skill"] for t in fresh], "never begun: it waits until lift_red is learned"
