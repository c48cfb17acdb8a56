"""The curriculum consumer on the embedded lake: the scripted experimenter's frontier rules, the
prompts as files, a round from the lake's summaries to events, the library the lake announced,
missing and unsure skills, reruns that send nothing new, exact replay, and the command line."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import pytest

from consumers.curriculum import scripted
from consumers.curriculum.consumer import Curriculum, OnlyNew, load_library
from consumers.curriculum.prompts import prompts
from consumers.curriculum.recorder import RecordedReplies, RecordingVLM
from consumers.curriculum.replies import parse, proposals, steps, choice
from consumers.curriculum.retrieval import Match
from consumers.curriculum.scripted import ScriptedVLM
from consumers.curriculum.vlm import VLMReply
from consumers.lake_sink.sink import LakeSink
from infra.bus.backend import open_bus
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.sim.announce import announce_skills
from producers.sim.skills import LIBRARY
from producers.synthetic import SyntheticConfig, produce
from robolake.cli import main
from schemas import topics
from schemas.codec import build
from schemas.events import SKILL_ADDED
from schemas.stats import wilson

PNG = prompts.image_file("scene_seed3.png")  # a real scene picture, without rendering one per test


def summary(skill: str, n: int, wins: int, policy: str = "scripted") -> dict:
    low, high = wilson(wins, n)
    return {"summary_id": f"{skill}-{policy}-{n}-{wins}", "skill_id": skill, "policy_id": policy, "policy_version": "1",
            "episodes": n, "successes": wins, "success_rate": wins / n if n else 0.0, "ci_low": low, "ci_high": high,
            "recent_rate": wins / n if n else None, "trend": "flat"}


def library_context(ids=None) -> list[dict]:
    from producers.rollout import task_for

    return [{"id": s.id, "caption": s.caption, "sequence": list(task_for(s.id))}
            for s in LIBRARY.values() if ids is None or s.id in ids]


# --- the scripted experimenter --------------------------------------------------------------------

def test_scripted_proposes_the_frontier_and_skips_mastered_hopeless_and_unready_skills():
    rows = [summary("reach_red", 60, 59), summary("grasp_red", 60, 58),        # mastered
            summary("lift_red", 20, 9),                                          # in the band, ready
            summary("reach_green", 40, 12),                                      # in the band (0.3), ready
            summary("build_tower", 40, 0),                                       # hopeless
            summary("reach_blue", 50, 50), summary("grasp_blue", 8, 8)]          # mastered / tight interval missing
    tasks = scripted.propose({"max_tasks": 10, "skills": library_context(), "summaries": rows})["tasks"]
    proposed = [t["skill"] for t in tasks]
    assert proposed[:2] == ["lift_red", "reach_green"], "most learning progress first: nearest to 0.5, none moving"
    assert not {"reach_red", "grasp_red", "reach_blue", "build_tower"} & set(proposed)
    assert "place_red_on_blue" not in proposed and "none" not in proposed, "lift_red (9/20) is not learned"
    assert "lift_blue" in proposed, "grasp_blue (8/8) is not mastered yet, but learned: what builds on it is ready"
    assert "grasp_blue" not in proposed, "lift_blue, a candidate, builds on it: it is practised through lift_blue"
    assert "grasp_green" not in proposed, "reach_green (0.3) is not learned"
    assert {"open_gripper", "go_home"} <= set(proposed), "never tried, nothing to build on"
    assert "9/20" in tasks[0]["rationale"] and tasks[0]["task"] == "lift the red block"
    assert "ranks 1 of 5 candidates by learning progress (0.12)" in tasks[0]["rationale"]
    assert len(scripted.propose({"max_tasks": 2, "skills": library_context(), "summaries": rows})["tasks"]) == 2


def test_scripted_practises_a_skill_through_the_candidates_that_build_on_it():
    # the policy's summaries after a placing was grown: grasp and lift learned but not mastered, the
    # placings at the bottom of the frontier (0 and 1 of 12), where the expert demonstrates them
    rows = [summary("reach_red", 12, 12), summary("grasp_red", 20, 15), summary("lift_red", 12, 10),
            summary("place_red_on_green", 12, 0), summary("place_red_on_blue", 12, 1)]
    skills = library_context({"reach_red", "grasp_red", "lift_red", "place_red_on_green", "place_red_on_blue"})
    tasks = scripted.propose({"max_tasks": 3, "skills": skills, "summaries": rows})["tasks"]
    assert [t["skill"] for t in tasks] == ["place_red_on_blue", "place_red_on_green"], \
        "a placing runs reach, grasp and lift: they get no episodes of their own while it is a candidate"
    hopeless = rows[:3] + [summary("place_red_on_green", 40, 0), summary("place_red_on_blue", 40, 1)]
    tasks = scripted.propose({"max_tasks": 3, "skills": skills, "summaries": hopeless})["tasks"]
    assert [t["skill"] for t in tasks] == ["lift_red"], "no placing is a candidate: lift is again, and grasp runs in it"
    before = scripted.propose({"max_tasks": 3, "skills": skills[:3], "summaries": rows[:3]})["tasks"]
    assert [t["skill"] for t in before] == ["none", "none"] and "red block on the green" in before[0]["task"], \
        "the ideas a learned lift makes ready, not the lift and grasp they run"


def test_scripted_decomposes_a_task_into_its_natural_sequence_and_retrieves_by_caption():
    plan = scripted.decompose({"task": "put the red block on the blue block", "skill": "place_red_on_blue",
                               "skills": library_context()})
    assert plan["steps"] == ["reach the red block", "grasp the red block", "lift the red block",
                             "put the red block on the blue block"]
    assert scripted.decompose({"task": "dance", "skill": "nope", "skills": []})["steps"] == ["dance"]
    candidates = [{"id": "lift_red", "caption": "lift the red block", "similarity": 0.7},
                  {"id": "grasp_red", "caption": "grasp the red block", "similarity": 0.68}]
    assert scripted.retrieve({"step": "Grasp the red block", "candidates": candidates})["skill"] == "grasp_red"
    assert scripted.retrieve({"step": "raise it", "candidates": candidates})["skill"] == "lift_red"
    low = [dict(c, similarity=0.4) for c in candidates]
    assert scripted.retrieve({"step": "push it", "candidates": low})["skill"] == "none"


# --- prompts are files ----------------------------------------------------------------------------

def test_prompts_are_files_with_exemplars_and_images_that_pass_the_reply_checks():
    library = {s.id: s.caption for s in LIBRARY.values()}
    request = prompts.request("decompose", {"task": "lift the blue block"}, {}, PNG)
    assert request.system == prompts.system() and "red, green and blue" in request.system
    assert request.messages[-1].role == "user" and "lift the blue block" in request.messages[-1].text
    assert request.messages[-1].images == (PNG,)
    exemplar_images = [i for m in request.messages[:-1] for i in m.images]
    assert exemplar_images and all(i.png.startswith(b"\x89PNG") and len(i.png) < 60_000 for i in exemplar_images)
    from PIL import Image as PILImage
    import io

    assert PILImage.open(io.BytesIO(exemplar_images[0].png)).size == (256, 256)
    for stage, check in (("propose", lambda r: proposals(r, library, 3)), ("decompose", steps),
                         ("retrieve", lambda r: choice(r, ["place_red_on_green", "place_green_on_red", "lift_red"]))):
        replies = [m.text for m in prompts.exemplars(stage) if m.role == "model"]
        assert replies, stage
        for text in replies:
            check(parse(text))  # our own examples must be replies we accept
        assert prompts.schema(stage)["type"] == "object"


# --- rounds on a lake -----------------------------------------------------------------------------

class CaptionRetriever:
    """Stands in for the embedding retriever: a step that is a caption is confident, a step listed in
    `unsure` is unsure between the given candidates, anything else is missing."""

    unsure: dict[str, tuple] = {}

    def __init__(self, library):
        self.by_caption = {c: s for s, c in library.captions.items()}

    def match_all(self, steps):
        out = []
        for step in steps:
            if step in self.by_caption:
                out.append(Match(step, self.by_caption[step], 1.0, "confident", ((self.by_caption[step], 1.0),)))
            elif step in self.unsure:
                out.append(Match(step, None, 0.7, "unsure", self.unsure[step]))
            else:
                out.append(Match(step, None, 0.3, "missing", (("lift_red", 0.3),)))
        return out


class Model(ScriptedVLM):
    """The scripted experimenter, but the first replies of a stage can be given (text or exception)."""

    def __init__(self, **first):
        self.first = {stage: list(items) for stage, items in first.items()}
        self.asked: list[str] = []

    def complete(self, request):
        self.asked.append(request.stage)
        queue = self.first.get(request.stage)
        if queue:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return VLMReply(item, "hostile", 0.0)
        return super().complete(request)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Announced skills and synthetic episodes of experiment 'synth' (reach/grasp/lift red, place red on blue)."""
    settings = Settings(lake=f"file://{tmp_path_factory.mktemp('curriculum')}/lake")
    producer = open_bus(settings).producer()
    announce_skills(producer)
    produce(producer, SyntheticConfig(episodes=12, steps=8, experiment_id="synth"))
    producer.flush()
    LakeSink(settings, flush_seconds=0.5).run(until_idle_s=0.2)
    return settings


def make(settings, experiment, inner=None, replay=None, retriever=CaptionRetriever, **options):
    producer = OnlyNew(open_bus(settings).producer(), set())
    vlm = RecordingVLM(inner or Model(), producer, experiment, replay)
    return Curriculum(producer, vlm, experiment, retriever, replay=replay is not None, **options)


def sent(settings, experiment, kind: str) -> list[dict]:
    reader = open_bus(settings).consumer(None, [topics.CURRICULUM, topics.VLM])
    rows = [r for d in reader.poll(0.2, max_records=100_000) if d.batch.type == kind for r in d.batch.rows()
            if r["experiment_id"] == experiment]
    reader.close()
    return rows


def sink(settings):
    LakeSink(settings, flush_seconds=0.5).run(until_idle_s=0.2)


def test_a_round_turns_the_lakes_summaries_into_proposals_and_decisions(lake):
    con = open_lake(lake)
    result = make(lake, "synth", max_tasks=2, episodes=4).round(con, image=PNG)
    con.close()
    assert result.proposals and result.decisions
    decisions = sent(lake, "synth", "curriculum.decision")
    assert {d["decision_id"] for d in decisions} == {d.decision_id for d in result.decisions}
    for d in decisions:
        assert d["episodes"] == 4 and set(d["skill_sequence"]) <= set(LIBRARY)
        assert d["steps"] and d["call_id"] and d["proposal_id"] in {p.proposal_id for p in result.proposals}
    calls = sent(lake, "synth", "vlm.call")
    assert [c["stage"] for c in calls][:2] == ["propose", "decompose"]
    proposals_sent = sent(lake, "synth", "curriculum.proposal")
    assert all(p["call_id"] == calls[0]["call_id"] for p in proposals_sent)
    scored = [p for p in proposals_sent if p["score"] is not None]  # a task no library skill does has none
    assert scored and all(p["progress"].startswith(f"learning progress {p['score']:.2f}: ") for p in scored)
    assert "Expected learning progress per skill" in calls[0]["prompt"]
    assert "episodes" in calls[0]["prompt"] and calls[0]["images"][-1]["sha256"] == PNG.sha256



def test_a_rounds_budget_is_spread_over_the_decisions_it_makes(lake):
    """`robolake run`'s rounds collect tasks x episodes whatever the frontier's size: equal budgets."""
    con = open_lake(lake)
    try:
        fixed = make(lake, "spread-a", max_tasks=2, episodes=4).round(con, image=PNG)
        spread = make(lake, "spread-b", max_tasks=2, episodes=4, round_episodes=9).round(con, image=PNG)
    finally:
        con.close()
    assert len(spread.decisions) == len(fixed.decisions) == 2
    assert [d.episodes for d in fixed.decisions] == [4, 4] and [d.episodes for d in spread.decisions] == [5, 4]
    assert make(lake, "x", round_episodes=9)._shares(1) == [9] and make(lake, "x", round_episodes=2)._shares(3) == [1, 1, 1]

def test_a_rerun_on_the_same_lake_sends_nothing_new(lake):
    con = open_lake(lake)
    first = make(lake, "rerun", max_tasks=1).round(con, summaries=[], image=PNG)
    con.close()
    sink(lake)
    con = open_lake(lake)
    model = Model()
    again = make(lake, "rerun", model, max_tasks=1).round(con, summaries=[], image=PNG)
    con.close()
    assert first.sent == 4, "a proposal, a decision and the two model calls behind them"
    assert again.skipped and again.sent == 0 and again.calls == 0
    assert model.asked == [], "the question was answered before: the log holds its answer"
    assert [p.proposal_id for p in again.proposals] == [p.proposal_id for p in first.proposals]


def test_replay_gives_the_same_events_and_never_calls_the_model(lake):
    CaptionRetriever.unsure = {"lift the scarlet cube": (("lift_red", 0.7), ("lift_green", 0.69))}
    try:
        original = Model(decompose=[json.dumps({"steps": ["reach the red block", "grasp the red block",
                                                          "lift the scarlet cube"]})])
        con = open_lake(lake)
        recorded = make(lake, "replayed", original, max_tasks=2).round(con, summaries=[summary("reach_red", 30, 30)],
                                                                       image=PNG)
        con.close()
        assert "retrieve" in original.asked
        sink(lake)
        con = open_lake(lake)
        calls_before = sent(lake, "replayed", "vlm.call")
        silent = Model()
        replay = RecordedReplies.from_lake(con, "replayed")
        replayed = make(lake, "replayed", silent, replay=replay, max_tasks=2).round(
            con, summaries=[summary("reach_red", 30, 30)], image=PNG)
        con.close()
    finally:
        CaptionRetriever.unsure = {}
    assert silent.asked == []
    assert [p.proposal_id for p in replayed.proposals] == [p.proposal_id for p in recorded.proposals]
    assert [(d.decision_id, d.skill_sequence, d.call_id) for d in replayed.decisions] == \
        [(d.decision_id, d.skill_sequence, d.call_id) for d in recorded.decisions]
    assert recorded.decisions[0].skill_sequence == ("reach_red", "grasp_red", "lift_red")
    assert replayed.sent == 0, "every event is in the lake already"
    assert sent(lake, "replayed", "vlm.call") == calls_before, "nor are the replayed calls sent again"


def test_the_library_is_what_the_lake_announced_and_other_summaries_are_ignored(tmp_path, caplog):
    settings = Settings(lake=f"file://{tmp_path}/lake")
    producer = open_bus(settings).producer()
    rows = [{"skill_id": s, "caption": LIBRARY[s].caption, "version": 1, "reward_fn": s, "reward_version": 1,
             "time": datetime.now(timezone.utc)} for s in ("reach_red", "grasp_red", "lift_red", "go_home")]
    producer.send(topics.SKILLS, "library", build(SKILL_ADDED, rows))
    producer.flush()
    sink(settings)
    con = open_lake(settings)
    assert list(load_library(con).captions) == ["reach_red", "grasp_red", "lift_red", "go_home"]
    caplog.set_level(logging.WARNING)
    summaries = [summary("reach_red", 40, 40), summary("grasp_red", 40, 40), summary("lift_green", 20, 10)]
    result = make(settings, "announced", max_tasks=3).round(con, summaries=summaries, image=PNG)
    con.close()
    assert [p.skill for p in result.proposals] == ["lift_red", "go_home"]
    assert "lift_green" not in {p.skill for p in result.proposals}
    assert "ignoring summaries of skills outside the library: lift_green" in caplog.text
    for d in result.decisions:
        assert set(d.skill_sequence) <= {"reach_red", "grasp_red", "lift_red", "go_home"}


def test_no_announcement_means_the_whole_library_with_a_warning(tmp_path, caplog):
    settings = Settings(lake=f"file://{tmp_path}/lake")
    produce(open_bus(settings).producer(), SyntheticConfig(episodes=1, steps=4))
    sink(settings)
    con = open_lake(settings)
    with caplog.at_level(logging.WARNING):
        assert list(load_library(con).captions) == list(LIBRARY)
    con.close()
    assert "no skill.added events" in caplog.text


def test_a_step_no_skill_covers_is_a_missing_skill_and_no_decision(lake):
    model = Model(decompose=[json.dumps({"steps": ["reach the red block", "push the red block to the edge"]})])
    con = open_lake(lake)
    result = make(lake, "missing", model, max_tasks=1).round(con, summaries=[], image=PNG)
    con.close()
    assert not result.decisions and sent(lake, "missing", "curriculum.decision") == []
    [missing] = sent(lake, "missing", "curriculum.missing_skill")
    assert missing["step"] == "push the red block to the edge" and missing["best_skill"] == "lift_red"
    assert missing["proposal_id"] == result.proposals[0].proposal_id and missing["similarity"] == pytest.approx(0.3)
    from consumers.conversation import describe

    reader = open_bus(lake).consumer(None, [topics.CURRICULUM])
    lines = [describe(d) for d in reader.poll(0.2, max_records=100_000)
             if d.batch.type == "curriculum.missing_skill" and d.batch.rows()[0]["experiment_id"] == "missing"]
    reader.close()
    assert lines[0].endswith('curriculum: no skill in the library does "push the red block to the edge" '
                             "(closest: lift_red, similarity 0.30)")


def test_an_unsure_step_goes_to_the_model_which_may_declare_it_missing(lake):
    CaptionRetriever.unsure = {"nudge the red cube": (("reach_red", 0.7), ("grasp_red", 0.69))}
    try:
        model = Model(decompose=[json.dumps({"steps": ["nudge the red cube"]})],
                      retrieve=[json.dumps({"skill": "none", "reason": "nudging is not reaching"})])
        con = open_lake(lake)
        result = make(lake, "unsure", model, max_tasks=1).round(con, summaries=[], image=PNG)
        con.close()
    finally:
        CaptionRetriever.unsure = {}
    assert model.asked == ["propose", "decompose", "retrieve"]
    assert not result.decisions and [m.step for m in result.missing] == ["nudge the red cube"]


# --- the command line -----------------------------------------------------------------------------

def test_curriculum_once_execute_runs_its_decisions_on_the_embedded_default(tmp_path, capsys):
    lake = f"file://{tmp_path}/lake"
    assert main(["produce", "--episodes", "1", "--skills", "go_home", "--lake", lake]) == 0
    assert main(["curriculum", "--once", "--execute", "--tasks", "1", "--episodes", "1", "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert "1 proposals, 1 decisions" in out and "executed 1 episodes of 1 decisions" in out
    con = open_lake(Settings(lake=lake))
    decided = con.execute("SELECT payload_json FROM events WHERE type = 'curriculum.decision'").fetchall()
    [decision] = json.loads(decided[0][0])
    ran = con.execute("SELECT skill_sequence FROM episodes WHERE decision_id = ?", [decision["decision_id"]]).fetchall()
    calls = con.execute("SELECT count(*) FROM events WHERE type = 'vlm.call'").fetchone()[0]
    con.close()
    assert ran == [(decision["skill_sequence"],)] and calls >= 2


def test_curriculum_help_and_usage_errors(capsys, monkeypatch):
    with pytest.raises(SystemExit) as done:
        main(["curriculum", "--help"])
    assert done.value.code == 0 and "--from-decisions" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["curriculum", "--once", "--vlm", "claude"])
    assert done.value.code == 2
    assert "invalid choice: 'claude' (choose from 'scripted', 'gemini', 'openai')" in capsys.readouterr().err
    assert main(["curriculum"]) == 2
    assert "use --once" in capsys.readouterr().err
    assert main(["curriculum", "--execute", "--bus", "kafka://127.0.0.1:1"]) == 2
    assert "produce --from-decisions" in capsys.readouterr().err
    for key in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    assert main(["curriculum", "--once", "--vlm", "gemini"]) == 2
    assert "set GOOGLE_API_KEY" in capsys.readouterr().err


# Last: torch (the caption encoder, above) must load before a GL context exists in the process
# (Mesa llvmpipe and torch's LLVM crash each other the other way round).
def test_the_scene_image_comes_from_the_latest_simulated_episode(tmp_path):
    from consumers.curriculum.scene import scene_image

    settings = Settings(lake=f"file://{tmp_path}/lake")
    assert main(["produce", "--episodes", "1", "--skills", "open_gripper", "--lake", settings.lake,
                 "--experiment", "scene"]) == 0
    con = open_lake(settings)
    episode = con.execute("SELECT episode_id FROM episodes").fetchone()[0]
    image = scene_image(con, "scene")
    fallback = scene_image(con, "no-such-experiment")
    con.close()
    assert image.name == f"episode/{episode}/initial" and image.png.startswith(b"\x89PNG")
    assert fallback.name == "reset/seed-0" and fallback.png != image.png
