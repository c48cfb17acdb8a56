"""The loop driven through a provider's real protocol: a scripted run's recorded replies, played
back by a local Gemini server (benchmarks/_recorded_model.py), drive a second `robolake run --vlm
gemini` to the same curriculum; when the recording runs out the server refuses, it never makes up."""

import json

import pytest

from benchmarks._recorded_model import Tape, question, serve, stage_of
from infra.settings import Settings
from robolake.cli import main
from tests.run_checks import query

pytest.importorskip("torch")

SMALL = ["--skills", "reach_red", "lift_red", "--iterations", "2", "--train-steps", "8", "--bootstrap-episodes", "1",
         "--eval-episodes", "1", "--episodes", "1", "--tasks", "1", "--workers", "1"]


def _run(tmp_path, name, vlm):
    lake = tmp_path / name
    return main(["run", "--experiment", "exp", "--lake", f"file://{lake}", "--bus", "memory", "--vlm", vlm,
                 "-o", str(tmp_path / f"{name}-report"), *SMALL]), f"file://{lake}"


def _events(lake, kind):
    rows = query(Settings.load(lake=lake, bus="memory"), f"SELECT payload_json FROM events WHERE type = '{kind}'")
    return [r for (payload,) in rows for r in json.loads(payload)]


@pytest.mark.timeout(900)
def test_recorded_replies_through_the_gemini_protocol_drive_the_same_curriculum(small_run, tmp_path, monkeypatch):
    # the scripted run recorded: conftest.small_run, SMALL from a config file (read here, never written)
    assert small_run.code == 0
    scripted = f"file://{small_run.lake}"
    assert {c["backend"] for c in _events(scripted, "vlm.call")} == {"scripted"}
    with serve("gemini", scripted, "exp") as (env, tape):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, replayed = _run(tmp_path, "gemini", "gemini")
        counts = tape.counts()
    assert code == 0
    assert counts["played"] == counts["recorded"] > 0 and counts["exact"] >= 1  # the first round is asked as recorded
    assert {c["backend"] for c in _events(replayed, "vlm.call")} == {"gemini"}

    def curriculum(lake):
        return sorted(d["skill_sequence"] for d in _events(lake, "curriculum.decision") if d["purpose"] == "curriculum")
    assert curriculum(replayed) == curriculum(scripted) and curriculum(scripted)


def test_the_tape_plays_each_stage_in_order_and_then_refuses():
    tape = Tape({"propose": [("q1", "r1"), ("q2", "r2")]})
    assert [tape.next("propose", "q1"), tape.next("propose", "other"), tape.next("propose", "q3")] == ["r1", "r2", None]
    assert tape.next("decompose", "q") is None
    assert tape.counts() == {"played": 2, "exact": 1, "recorded": 2}


def test_the_question_and_its_stage_are_read_from_either_protocol():
    from consumers.curriculum.prompts import prompts

    text = prompts.render("decompose", {"task": "lift the blue block"})
    assert question("gemini", {"contents": [{"role": "user", "parts": [{"text": text}]}]}) == text
    assert question("openai", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "data:"}}]}]}) == text
    assert stage_of(text) == "decompose" and stage_of("hello") is None
