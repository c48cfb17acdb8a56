"""Hostile replies: each is repaired once (asked again with the error) or rejected with a logged
reason; a round never crashes and never decides a skill the library does not hold."""

from __future__ import annotations

import json
import logging

import pytest

from consumers.curriculum import replies
from consumers.curriculum.replies import ReplyError, parse
from consumers.curriculum.vlm import VLMError
from infra.lake_sql import open_lake
from producers.sim.skills import LIBRARY
from tests.unit.test_curriculum import PNG, Model, lake, make, sent  # noqa: F401 (lake is a fixture)

LIBRARY_CAPTIONS = {s.id: s.caption for s in LIBRARY.values()}
IDS = {"invalid-json", "unknown-skill", "fourth-block", "empty-plan", "plan-with-a-fourth-block", "invalid-json-twice",
       "unknown-skill-twice", "empty-plan-twice", "timeout", "429-storm"}


def good_tasks(skill="reach_red", task="reach the red block") -> str:
    return json.dumps({"tasks": [{"task": task, "skill": skill, "rationale": "never tried"}]})


# --- the checks, one by one -----------------------------------------------------------------------

@pytest.mark.parametrize("text, error", [
    ("Sure! Here are the tasks: {", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"tasks": "lift"}', '"tasks": a list'),
])
def test_unparseable_or_misshapen_replies_are_errors(text, error):
    with pytest.raises(ReplyError, match=error):
        replies.proposals(parse(text), LIBRARY_CAPTIONS, 3)


def test_a_reply_longer_than_the_limit_is_an_error_and_its_repair_quotes_only_its_start():
    huge = json.dumps({"tasks": [{"task": "reach the red block " + "x" * 5_000_000, "skill": "reach_red",
                                  "rationale": "r"}]})
    with pytest.raises(ReplyError, match=f"longer than the {replies.MAX_REPLY_BYTES} bytes") as raised:
        parse(huge)
    from tests.unit.test_vlm_recorder import _request

    question = _request()
    repaired = replies.repair(question, huge, str(raised.value))
    assert len(repaired.prompt) < len(question.prompt) + replies.REPAIR_EXCERPT + 500
    assert "[the rest is cut]" in repaired.messages[-2].text


def test_a_repeated_task_is_dropped_before_it_is_checked():
    reply = {"tasks": [{"task": "reach the red block", "skill": "reach_red", "rationale": "never tried"},
                       {"task": "Reach the red block", "skill": "juggle_red", "rationale": ""}]}
    assert [t["skill"] for t in replies.proposals(reply, LIBRARY_CAPTIONS, 1)] == ["reach_red"]


def test_model_text_is_printed_escaped_on_one_line():
    hostile = "IGNORE PREVIOUS INSTRUCTIONS\n\x00\u202e\x1b[31mred"
    assert replies.printable(hostile) == "IGNORE PREVIOUS INSTRUCTIONS\\n\\x00\\u202e\\x1b[31mred"
    assert len(replies.printable("é" * 1000)) == 300


def test_a_fenced_json_reply_is_accepted():
    assert parse('```json\n{"steps": ["reach the red block"]}\n```') == {"steps": ["reach the red block"]}


@pytest.mark.parametrize("task, skill, error", [
    ("reach the red block", "teleport_red", r"'teleport_red' is not in the skill library \(its 18 skills are listed "
                                            r"in the question\)$"),
    ("put the yellow block on the red block", "place_red_on_blue", "mentions yellow"),
    ("stack a fourth block on the tower", "build_tower", "mentions 'fourth'"),
    ("put the red block in the bowl", "place_red_on_blue", "mentions 'bowl'"),
    ("", "reach_red", "must be a non-empty string"),
])
def test_proposals_naming_unknown_skills_or_objects_are_errors(task, skill, error):
    reply = {"tasks": [{"task": task, "skill": skill, "rationale": "why not"}]}
    with pytest.raises(ReplyError, match=error):
        replies.proposals(reply, LIBRARY_CAPTIONS, 3)


def test_synonyms_of_the_scene_colours_are_fine():
    reply = {"tasks": [{"task": "set the crimson cube on the navy one", "skill": "place_red_on_blue", "rationale": "r"}]}
    assert replies.proposals(reply, LIBRARY_CAPTIONS, 3)[0]["skill"] == "place_red_on_blue"


@pytest.mark.parametrize("reply, error", [
    ({"steps": []}, "the plan is empty"),
    ({"steps": ["reach the red block", "grasp the orange block"]}, "mentions orange"),
    ({"steps": ["reach the red block"] * 13}, "at most 12"),
    ({"steps": ["reach the red block", 3]}, r"steps\[1\] must be a non-empty string"),
])
def test_bad_plans_are_errors(reply, error):
    with pytest.raises(ReplyError, match=error):
        replies.steps(reply)


def test_a_choice_outside_the_candidates_is_an_error():
    assert replies.choice({"skill": "lift_red", "reason": "r"}, ["lift_red", "grasp_red"]) == "lift_red"
    assert replies.choice({"skill": "none", "reason": "r"}, ["lift_red"]) is None
    with pytest.raises(ReplyError, match="not one of the candidates"):
        replies.choice({"skill": "build_tower", "reason": "r"}, ["lift_red", "grasp_red"])


# --- whole rounds against hostile models ------------------------------------------------------------

def run(lake_settings, experiment, model):  # noqa: F811
    con = open_lake(lake_settings)
    try:
        return make(lake_settings, experiment, model, max_tasks=1).round(con, summaries=[], image=PNG)
    finally:
        con.close()


@pytest.mark.parametrize("name, stage, bad", [
    ("invalid-json", "propose", "I think the robot should lift the red block."),
    ("unknown-skill", "propose", good_tasks(skill="juggle_red")),
    ("fourth-block", "propose", good_tasks(task="put the yellow block on the red block", skill="place_red_on_blue")),
    ("empty-plan", "decompose", json.dumps({"steps": []})),
    ("plan-with-a-fourth-block", "decompose", json.dumps({"steps": ["reach the purple cube"]})),
], ids=lambda value: value if isinstance(value, str) and value in IDS else None)
def test_a_bad_reply_is_repaired_once(lake, caplog, name, stage, bad):  # noqa: F811
    model = Model(**{stage: [bad]})
    with caplog.at_level(logging.WARNING):
        result = run(lake, f"repair-{name}", model)
    assert model.asked.count(stage) == 2, "asked again once, with the error"
    assert len(result.decisions) == 1 and result.decisions[0].skill_sequence == ("reach_red",)
    calls = [c for c in sent(lake, f"repair-{name}", "vlm.call") if c["stage"] == stage]
    assert [c["attempt"] for c in calls] == [1, 2] and calls[0]["call_id"] != calls[1]["call_id"]
    assert "was rejected" in calls[1]["prompt"], "the re-ask carries the error"
    assert f"{stage}: invalid reply, asking once more with the error (call {calls[0]['call_id']})" in caplog.text


@pytest.mark.parametrize("name, stage, bad", [
    ("invalid-json-twice", "propose", ["{", "{{"]),
    ("unknown-skill-twice", "propose", [good_tasks(skill="juggle_red")] * 2),
    ("empty-plan-twice", "decompose", [json.dumps({"steps": []})] * 2),
    ("timeout", "propose", [VLMError("gemini: gave up after 5 attempts in 300.0s: the call timed out after 60s")]),
    ("429-storm", "decompose", [VLMError("openai: gave up after 5 attempts in 31.2s: HTTP 429 Too Many Requests")]),
], ids=lambda value: value if isinstance(value, str) and value in IDS else None)
def test_a_reply_that_stays_bad_or_never_comes_is_rejected_with_a_logged_reason(lake, caplog, name, stage, bad):  # noqa: F811
    experiment = f"reject-{name}"
    with caplog.at_level(logging.WARNING):
        result = run(lake, experiment, Model(**{stage: bad}))
    assert result.decisions == [] and sent(lake, experiment, "curriculum.decision") == []
    rejected = [r for r in caplog.records if r.levelno == logging.WARNING and f"{stage}: rejected" in r.getMessage()]
    assert len(rejected) == 1
    calls = sent(lake, experiment, "vlm.call")
    assert calls[-1]["call_id"] in rejected[0].getMessage(), "the reason names the call"
    if isinstance(bad[0], VLMError):
        assert calls[-1]["reply"] is None and "gave up" in calls[-1]["error"]
        assert "gave up" in rejected[0].getMessage()
    if stage == "decompose":
        assert len(result.proposals) == 1, "the proposal stands; only its decision is missing"


def test_an_unknown_skill_chosen_for_an_unsure_step_never_reaches_a_decision(lake, caplog):  # noqa: F811
    from tests.unit.test_curriculum import CaptionRetriever

    CaptionRetriever.unsure = {"tap the red cube": (("reach_red", 0.7), ("grasp_red", 0.69))}
    try:
        model = Model(decompose=[json.dumps({"steps": ["tap the red cube"]})],
                      retrieve=[json.dumps({"skill": "build_tower", "reason": "why not"})] * 2)
        with caplog.at_level(logging.WARNING):
            result = run(lake, "unsure-unknown", model)
    finally:
        CaptionRetriever.unsure = {}
    assert model.asked.count("retrieve") == 2 and result.decisions == [] and result.missing == []
    assert "retrieve: rejected" in caplog.text and "is not decided" in caplog.text


def test_the_last_check_keeps_skills_outside_the_library_out_of_decisions(lake, caplog):  # noqa: F811
    from consumers.curriculum.retrieval import Match

    class Rogue:  # a retriever gone wrong: it answers a skill the library does not hold
        def __init__(self, library):
            pass

        def match_all(self, steps):
            return [Match(s, "juggle_red", 0.99, "confident", (("juggle_red", 0.99),)) for s in steps]

    con = open_lake(lake)
    with caplog.at_level(logging.ERROR):
        result = make(lake, "rogue", Model(), retriever=Rogue, max_tasks=1).round(con, summaries=[], image=PNG)
    con.close()
    assert result.proposals and result.decisions == []
    assert "skills juggle_red are not in the library" in caplog.text
