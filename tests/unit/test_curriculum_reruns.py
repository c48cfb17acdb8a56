"""Reruns of the curriculum: a round whose model calls failed or whose replies were rejected is asked
again, an interrupted round is completed without duplicates, a finished one asks nothing; one
curriculum per experiment at a time; the exit status and the serve loop when the model fails."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone

import pytest

from consumers.curriculum.vlm import VLMError
from infra.bus.backend import open_bus
from infra.lake_sql import open_lake
from infra.settings import Settings
from robolake.cli import main
from schemas import topics
from schemas.codec import build
from schemas.events import SKILL_SUMMARY
from tests.unit.test_curriculum import PNG, Model, make, sink, summary
from tests.unit.test_curriculum import lake  # noqa: F401 (fixture)
from tests.vlm_servers import OpenAIServer

STORM = VLMError("openai m: gave up after 5 attempts in 10.3s: HTTP 500: boom")


def lake_events(settings, experiment: str) -> dict[str, list[dict]]:
    con = open_lake(settings)
    found = con.execute("SELECT type, payload_json FROM events WHERE experiment_id = ?", [experiment]).fetchall()
    con.close()
    by_type: dict[str, list[dict]] = {}
    for kind, payload in found:
        by_type.setdefault(kind, []).extend(json.loads(payload))
    return by_type


def run(settings, experiment, model, rows=()):
    con = open_lake(settings)
    try:
        return make(settings, experiment, model, max_tasks=1).round(con, summaries=list(rows), image=PNG)
    finally:
        con.close()
        sink(settings)


@pytest.mark.parametrize("first", [[STORM], ["not json", "still not json"]], ids=["500-storm", "rejected"])
def test_a_round_whose_calls_failed_or_were_rejected_is_asked_again(lake, first):  # noqa: F811
    experiment = f"again-{len(first)}"
    failed = run(lake, experiment, Model(propose=first))
    good = Model()
    again = run(lake, experiment, good)
    assert not failed.proposals and failed.failed == (first == [STORM])
    assert again.proposals and again.decisions and not again.skipped
    assert good.asked[0] == "propose", "the question is asked again, not taken as done"
    calls = lake_events(lake, experiment)["vlm.call"]
    assert len({c["call_id"] for c in calls}) == len(calls), "the new call has a new id"
    assert run(lake, experiment, Model()).skipped, "a third run finds the round done"


def test_a_round_killed_after_its_call_is_completed_by_the_rerun_without_duplicates(lake):  # noqa: F811
    class Killed(BaseException):  # kill -9: nothing after the call runs
        pass

    class DiesAtDecompose(Model):
        def complete(self, request):
            if request.stage == "decompose":
                raise Killed
            return super().complete(request)

    rows = [summary("reach_red", 30, 10)]
    with pytest.raises(Killed):
        run(lake, "killed", DiesAtDecompose(), rows)
    assert "curriculum.proposal" not in lake_events(lake, "killed"), "killed before its events were sent"
    model = Model()
    rerun = run(lake, "killed", model, rows)
    assert model.asked == ["decompose"], "the recorded propose answer is taken, not bought again"
    assert rerun.proposals and len(rerun.decisions) == len(rerun.proposals)
    events = lake_events(lake, "killed")
    assert [p["proposal_id"] for p in events["curriculum.proposal"]] == [p.proposal_id for p in rerun.proposals]
    assert [d["decision_id"] for d in events["curriculum.decision"]] == [d.decision_id for d in rerun.decisions]
    assert run(lake, "killed", Model(), rows).sent == 0
    assert len(lake_events(lake, "killed")["curriculum.decision"]) == len(rerun.decisions), "no duplicate"


def test_once_exits_1_naming_the_failed_calls_after_recording_them(lake, capsys, monkeypatch):  # noqa: F811
    with OpenAIServer() as server:
        server.default = server.error(400, "model 'm' does not exist")
        monkeypatch.setenv("ROBOLAKE_VLM_BASE_URL", server.url + "/v1")
        code = main(["curriculum", "--once", "--vlm", "openai", "--model", "m", "--experiment", "cli-fail",
                     "--lake", lake.lake])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert line.startswith("robolake curriculum: the model calls failed: 1 of 1 (1 propose); the last: propose: ")
    assert "HTTP 400" in line
    assert len(lake_events(lake, "cli-fail")["vlm.call"]) == 1, "recorded before exiting"


def test_a_second_curriculum_of_the_experiment_refuses_while_the_first_runs(tmp_path, capsys):
    from robolake.commands.curriculum import _only_curriculum_of

    settings = Settings(lake=f"file://{tmp_path}/lake")
    held, release, done = threading.Event(), threading.Event(), []

    def first():
        with _only_curriculum_of(settings, "exp-lock"):
            held.set()
            release.wait(30)
        done.append(True)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(30)
    try:
        assert main(["curriculum", "--once", "--experiment", "exp-lock", "--lake", settings.lake]) == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert "another curriculum of experiment 'exp-lock' is running" in line
    finally:
        release.set()
        thread.join()
    with _only_curriculum_of(settings, "exp-lock"):  # released with its holder
        pass


def test_two_concurrent_summary_emitters_send_each_summary_once(tmp_path, capsys):
    lake = f"file://{tmp_path}/lake"
    assert main(["produce", "--episodes", "2", "--skills", "go_home", "--lake", lake, "--experiment", "twice"]) == 0
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(main(["summaries", "--emit", "--lake", lake])))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0]
    summaries = lake_events(Settings(lake=lake), "twice")["skill.summary"]
    assert summaries and len(summaries) == len({s["summary_id"] for s in summaries})


def test_serve_backs_off_and_runs_the_round_again_when_every_call_failed(lake, caplog):  # noqa: F811
    rows = [dict(summary("reach_red", 30, 10), experiment_id="serve-retry", hindsight_episodes=None,
                 hindsight_successes=None, time=datetime.now(timezone.utc))]
    bus = open_bus(lake)
    bus.producer().send(topics.SUMMARIES, "serve-retry", build(SKILL_SUMMARY, rows))
    curriculum = make(lake, "serve-retry", Model(propose=[STORM]), max_tasks=1)
    results = []
    with caplog.at_level(logging.WARNING):
        rounds = curriculum.serve(bus, lambda: open_lake(lake), threading.Event(), until_idle_s=2.5,
                                  group="serve-retry", on_round=results.append, backoff_s=0.05)
    assert rounds == 2 and results[0].failed and results[1].proposals
    assert "all 1 model calls of the round failed" in caplog.text and "trying again in" in caplog.text
    consumer = bus.consumer("serve-retry", [topics.SUMMARIES])
    assert consumer.poll(0.2) == [], "the summaries were committed once the round got through"
    consumer.close()


def test_the_report_prints_the_models_words_escaped_and_counts_the_calls(capsys):
    from consumers.curriculum.consumer import RoundResult
    from consumers.curriculum.stages import Proposal
    from robolake.commands.curriculum import _report

    proposal = Proposal("p" * 32, "lift the red block\x1b[2J", "lift_red", "IGNORE\n\x00\u202eevil", "m", "c")
    _report(RoundResult("k" * 32, [proposal], sent=3, calls=2), Settings())
    out = capsys.readouterr().out
    assert "'lift the red block\\x1b[2J' (lift_red) — IGNORE\\n\\x00\\u202eevil" in out
    assert "3 new events on memory (2 model calls, 0 failed)" in out
    assert not any(c in out for c in "\x1b\x00\u202e")
