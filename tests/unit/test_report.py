"""`robolake report` and the read models behind it and the dashboard, on a lake with a hand-made
experiment: a proposal from a model call, a decision, episodes with frames run by a learner's
checkpoint, metrics, a summary, a verdict, written through the bus and the real lake sink."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from infra.settings import Settings
from robolake.cli import main
from tests.signals import sigint_default

EXPERIMENT = "exp-report"


def _png(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 40, 200 - shade)).save(out, format="PNG")
    return out.getvalue()


def emit(settings, topic: str, event_type, rows: list[dict]) -> None:
    from infra.bus.backend import open_bus
    from schemas.codec import build

    time.sleep(0.002)  # the log's clock has milliseconds: one event per tick keeps the order certain
    now = datetime.now(timezone.utc)
    producer = open_bus(settings).producer()
    producer.send(topic, rows[0]["experiment_id"], build(event_type, [{"time": now, **r} for r in rows]))
    producer.flush()


def sink(settings) -> None:
    from consumers.lake_sink.sink import LakeSink

    LakeSink(settings, flush_seconds=0.2).run(until_idle_s=0.1)


def call(call_id: str, stage: str, reply: str, experiment: str = EXPERIMENT) -> dict:
    return {"call_id": call_id, "experiment_id": experiment, "stage": stage, "backend": "scripted", "model": "rules",
            "temperature": 0.0, "prompt_hash": "ab" * 32, "prompt": f"please {stage}", "images": [],
            "reply": reply, "latency_s": 0.01, "input_tokens": 10, "output_tokens": 5, "error": None, "attempt": 1}


def build_experiment(settings, episodes: int = 3, drain=sink, experiment: str = EXPERIMENT) -> dict:
    """Every kind of event of one experiment, drained into the lake (`drain(settings)`); returns the ids."""
    from infra.bus.backend import open_bus
    from producers.episode_writer import EpisodeWriter
    from schemas import events, topics

    ids = {"propose_call": "call-propose-1", "decompose_call": "call-decompose-1", "analyze_call": "call-analyze-1",
           "proposal": "proposal-1", "decision": "decision-1", "missing": "missing-1", "summary": "summary-1",
           "verdict": "verdict-1", "run": "run-1", "episodes": []}
    emit(settings, topics.VLM, events.VLM_CALL,
         [call(ids["propose_call"], "propose", '{"task": "stack red on blue"}', experiment)])
    emit(settings, topics.CURRICULUM, events.CURRICULUM_PROPOSAL_V2, [{
        "proposal_id": ids["proposal"], "experiment_id": experiment, "proposer": "scripted/rules",
        "task": "put the red block on the blue block", "rationale": "red is reached reliably",
        "call_id": ids["propose_call"]}])
    emit(settings, topics.VLM, events.VLM_CALL,
         [call(ids["decompose_call"], "decompose", '["reach red", "lift red"]', experiment)])
    emit(settings, topics.CURRICULUM, events.CURRICULUM_DECISION_V2, [{
        "decision_id": ids["decision"], "experiment_id": experiment, "proposal_id": ids["proposal"],
        "task": "put the red block on the blue block", "skill_sequence": ["reach_red", "lift_red"], "episodes": episodes,
        "steps": ["reach red", "lift red"], "call_id": ids["decompose_call"]}])
    emit(settings, topics.CURRICULUM, events.CURRICULUM_MISSING_SKILL, [{
        "missing_id": ids["missing"], "experiment_id": experiment, "proposal_id": ids["proposal"],
        "step": "wiggle the red block", "best_skill": "lift_red", "similarity": 0.41}])
    writer = EpisodeWriter(open_bus(settings).producer(), chunk_steps=4)
    for i in range(episodes):
        episode = writer.start(experiment_id=experiment, worker_id="w0", env_name="panda_block_stacking",
                               env_version=1, seed=i, initial_state=[0.0], task="put the red block on the blue block",
                               skill_sequence=["reach_red", "lift_red"], decision_id=ids["decision"],
                               policy_id=f"pac:{ids['run']}", policy_version="step-100")
        for step in range(6):
            writer.step(step=step, sim_time=step * 0.1, observation=[0.0] * 43, action=[0.0, 0.0, 0.0, 1.0],
                        reward=0.0, task_reward=0.0, skill_id="reach_red" if step < 3 else "lift_red",
                        skill_caption="reach", terminated=False, truncated=step == 5, frame=_png(40 * step))
        writer.end("timeout", task_success=i == 0, skill_success={"reach_red": True, "lift_red": i == 0})
        ids["episodes"].append(episode)
    metrics = [{"experiment_id": experiment, "run_id": ids["run"], "step": step, "name": "loss", "value": 1.0 / step,
                "skill_id": None} for step in (10, 20, 30)]
    for row in metrics:
        emit(settings, topics.LEARNER, events.LEARNER_METRICS, [row])
    emit(settings, topics.SUMMARIES, events.SKILL_SUMMARY, [{
        "summary_id": ids["summary"], "experiment_id": experiment, "skill_id": "lift_red", "policy_id": "pac:run-1",
        "policy_version": "step-100", "episodes": episodes, "successes": 1, "success_rate": 1 / episodes,
        "ci_low": 0.06, "ci_high": 0.79, "recent_rate": None, "trend": "unknown", "hindsight_episodes": None,
        "hindsight_successes": None}])
    emit(settings, topics.VLM, events.VLM_CALL,
         [call(ids["analyze_call"], "analyze", '{"verdict": "improving"}', experiment)])
    emit(settings, topics.ANALYSIS, events.ANALYSIS_VERDICT_V2, [{
        "verdict_id": ids["verdict"], "experiment_id": experiment, "skill_id": "lift_red", "verdict": "improving",
        "rationale": "success still rising", "run_id": ids["run"], "method": "vlm", "converged_at": None, "slope": 0.2,
        "slope_low": 0.1, "slope_high": 0.3, "call_id": ids["analyze_call"]}])
    drain(settings)
    return ids


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    return settings, build_experiment(settings)


def test_the_report_is_one_self_contained_page_that_links_every_number_to_its_source(lake, tmp_path, capsys):
    settings, ids = lake
    assert main(["relabel", "--rewards", "reach_red", "--name", "hindsight"]) == 0  # lineage of derived rows
    relabel_id = _one(settings, "SELECT DISTINCT relabel_id FROM rewards")
    assert main(["report", "--experiment", EXPERIMENT, "-o", str(tmp_path / "out")]) == 0
    assert "3 episodes" in capsys.readouterr().out
    page = (tmp_path / "out" / f"{EXPERIMENT}.html").read_text()
    # self-contained: nothing is fetched from anywhere (no scripts, no external src/href)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page
    assert page.count('src="data:image/png;base64,') == 1  # the learning curves (no iteration: no success chart)
    # per task, its two latest episodes with frames as inline MP4s; every model call in full, folded
    videos = re.findall(r'<figure id="episode-([^"]+)"><video [^>]*src="data:video/mp4;base64,', page)
    assert videos == ids["episodes"][1:]
    assert page.count('<details class="exchange"') == 3 and "<pre>please decompose</pre>" in page
    assert page.count(f'href="#exchange-{ids["decompose_call"]}"') == 1
    assert "Code: <code>robolake 0.1.0 (no commit recorded)</code>" in page
    # each id of the chain has an anchor, and what refers to it links there
    for kind, key in [("proposal", "proposal"), ("decision", "decision"), ("call", "propose_call"),
                      ("call", "decompose_call"), ("call", "analyze_call"), ("verdict", "verdict"),
                      ("summary", "summary"), ("run", "run"), ("missing", "missing")]:
        assert f'id="{kind}-{ids[key]}"' in page, kind
    assert page.count(f'href="#call-{ids["decompose_call"]}"') >= 2  # from the decision and its conversation line
    assert f'href="#proposal-{ids["proposal"]}"' in page and f'href="#run-{ids["run"]}"' in page
    for episode in ids["episodes"]:
        assert episode in page
    # the numbers: the checkpoint's reach_red 3/3, lift_red 1/3 with Wilson intervals, its verdict linked
    assert re.search(r"<td>lift_red</td><td class=\"n\">–</td><td class=\"n\">–</td><td>pac:run-1@step-100</td>"
                     r"<td class=\"n\">1/3</td><td class=\"n\">33%</td>", page)
    assert f'improving <a class="id" href="#verdict-{ids["verdict"]}"' in page
    assert "[6, 79]%" in page  # wilson(1, 3)
    assert "I propose" in page and "success still rising" in page
    assert f'id="relabel-{relabel_id}"' in page and "into dataset hindsight" in page
    markdown = (tmp_path / "out" / f"{EXPERIMENT}.md").read_text()
    for key in ("proposal", "decision", "propose_call", "verdict", "summary", "run"):
        assert ids[key] in markdown
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / "out" / image).read_bytes().startswith(b"\x89PNG"), image
    clips = re.findall(r"\[video\]\(([^)]+\.mp4)\)", markdown)
    assert len(clips) == 2 and all((tmp_path / "out" / clip).read_bytes()[4:8] == b"ftyp" for clip in clips)


def test_timeline_is_in_time_order_and_its_cursor_returns_only_what_is_new(lake):
    from infra.lake_sql import open_lake
    from robolake.report.queries import timeline
    from schemas import events, topics

    settings, ids = lake
    con = open_lake(settings)
    first = timeline(con, EXPERIMENT)
    con.close()
    types = [e["type"] for e in first["events"]]
    assert types[:4] == ["vlm.call", "curriculum.proposal", "vlm.call", "curriculum.decision"]
    assert types.count("learner.metrics") == 3 and types[-1] == "analysis.verdict"
    assert [e["ts"] for e in first["events"]] == sorted(e["ts"] for e in first["events"])
    decision = next(e for e in first["events"] if e["type"] == "curriculum.decision")
    assert decision["ids"] == [ids["decision"]]
    assert {"kind": "proposal", "id": ids["proposal"]} in decision["refs"]

    emit(settings, topics.ANALYSIS, events.ANALYSIS_VERDICT_V2, [{
        "verdict_id": "verdict-2", "experiment_id": EXPERIMENT, "skill_id": "reach_red", "verdict": "converged",
        "rationale": "flat", "run_id": "run-1", "method": "statistical", "converged_at": 30, "slope": 0.0,
        "slope_low": -0.1, "slope_high": 0.1, "call_id": None}])
    sink(settings)
    con = open_lake(settings)
    again = timeline(con, EXPERIMENT, first["cursor"])
    empty = timeline(con, EXPERIMENT, again["cursor"])
    con.close()
    assert [e["ids"] for e in again["events"]] == [["verdict-2"]]
    assert empty["events"] == []
    with pytest.raises(ValueError, match="not a timeline cursor"):
        timeline(open_lake(settings), EXPERIMENT, "garbage!")


def test_tail_all_prints_the_experiment_conversation(lake, capsys):
    assert main(["tail", "all", "--experiment", EXPERIMENT]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11 and "I propose" in lines[1] and "analyst: lift_red is improving" in lines[-1]
    assert main(["tail", "all", "--experiment", EXPERIMENT, "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["tail", "all", "--experiment", "nope"]) == 1
    assert "no episodes or events of experiment 'nope'" in capsys.readouterr().err
    assert main(["tail", "all"]) == 2


def test_a_missing_experiment_fails_and_a_bad_id_is_a_usage_error(lake, tmp_path, capsys):
    assert main(["report", "--experiment", "not-there", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no episodes or events of experiment 'not-there'" in err and EXPERIMENT in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exited:
        main(["report", "--experiment", "../etc"])
    assert exited.value.code == 2
    assert "--experiment" in capsys.readouterr().err


def test_no_lake_is_a_clear_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/none")
    assert main(["report", "--experiment", EXPERIMENT, "-o", str(tmp_path / "out")]) == 1
    assert "no lake at" in capsys.readouterr().err


def _one(settings, sql: str):
    from infra.lake_sql import open_lake

    con = open_lake(settings)
    try:
        (value,), = con.execute(sql).fetchall()
        return value
    finally:
        con.close()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_dashboard_api_answers_reads_and_refuses_everything_else(lake):
    from robolake.report.dashboard import serve

    settings, ids = lake
    server = serve(settings, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, page = _get(base + "/")
        assert status == 200 and b"/api/timeline" in page and b"http" not in page.replace(b"http-equiv", b"")
        status, body = _get(base + "/api/experiments")
        assert status == 200 and json.loads(body)["experiments"][0]["experiment_id"] == EXPERIMENT
        status, body = _get(f"{base}/api/skills?experiment={EXPERIMENT}")
        skills = {s["skill_id"]: s for s in json.loads(body)["learned"]}
        assert (skills["lift_red"]["successes"], skills["lift_red"]["attempts"]) == (1, 3)
        assert skills["lift_red"]["verdict_id"] == ids["verdict"]
        status, body = _get(f"{base}/api/timeline?experiment={EXPERIMENT}")
        assert len(json.loads(body)["events"]) == 11
        status, body = _get(f"{base}/api/videos?experiment={EXPERIMENT}")
        shown = [e["episode_id"] for e in json.loads(body)["episodes"]]
        assert shown == ids["episodes"][1:]
        status, mp4 = _get(f"{base}/api/video?episode={shown[0]}")
        assert status == 200 and mp4[4:8] == b"ftyp"
        assert _get(f"{base}/api/video?episode={shown[0]}") == (200, mp4)  # the second time from memory
        assert _get(f"{base}/api/video?episode=no-such-episode")[0] == 404
        assert _get(f"{base}/api/video?episode=../x")[0] == 400
        assert _get(f"{base}/api/skills?experiment=../x")[0] == 400
        assert _get(f"{base}/api/timeline?experiment={EXPERIMENT}&cursor=zzz")[0] == 400
        assert _get(base + "/nothing")[0] == 404
        for method in ("POST", "PUT", "DELETE"):
            request = urllib.request.Request(base + "/api/skills", method=method, data=b"x")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 405
    finally:
        server.shutdown()
        server.server_close()


def test_dashboard_command_prints_its_url_and_stops_cleanly_on_ctrl_c(lake):
    import os
    import signal
    import subprocess
    import sys

    settings, _ = lake
    process = subprocess.Popen([sys.executable, "-m", "robolake.cli", "dashboard", "--port", "0"],
                               env={**os.environ, "ROBOLAKE_LAKE": settings.lake}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    url = re.search(r"http://127\.0\.0\.1:\d+/", process.stdout.readline()).group(0)
    assert _get(url + "api/experiments")[0] == 200
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0 and err == ""


def test_a_dashboard_started_before_the_lake_exists_finds_it_once_it_does(tmp_path):
    from robolake.report.dashboard import serve

    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")
    server = serve(settings, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = _get(base + "/api/experiments")
        assert status == 200 and json.loads(body)["lake"] is False and "no lake at" in json.loads(body)["message"]
        assert not (tmp_path / "lake").exists(), "the dashboard creates nothing"
        build_experiment(settings)
        status, body = _get(base + "/api/experiments")
        assert [e["experiment_id"] for e in json.loads(body)["experiments"]] == [EXPERIMENT]
    finally:
        server.shutdown()
        server.server_close()


def test_tail_all_follow_shows_events_as_another_process_writes_them(lake):
    import os
    import signal
    import subprocess
    import sys

    from schemas import events, topics

    settings, _ = lake
    process = subprocess.Popen([sys.executable, "-m", "robolake.cli", "tail", "all", "--experiment", EXPERIMENT,
                                "--follow"], env={**os.environ, "ROBOLAKE_LAKE": settings.lake},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        existing = [process.stdout.readline() for _ in range(11)]
        assert "I propose" in existing[1]
        emit(settings, topics.ANALYSIS, events.ANALYSIS_VERDICT_V2, [{
            "verdict_id": "verdict-followed", "experiment_id": EXPERIMENT, "skill_id": "reach_red",
            "verdict": "stop", "rationale": "done here", "run_id": None, "method": "statistical",
            "converged_at": None, "slope": None, "slope_low": None, "slope_high": None, "call_id": None}])
        sink(settings)
        assert "analyst: reach_red is stop — done here" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0 and err == ""


def test_tail_all_follow_started_before_the_lake_exists_waits_for_it(tmp_path):
    import os
    import subprocess
    import sys

    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")
    # the README starts it beside a sink that has not created the lake yet
    process = subprocess.Popen([sys.executable, "-m", "robolake.cli", "tail", "all", "--experiment", EXPERIMENT,
                                "--follow", "--limit", "1"], env={**os.environ, "ROBOLAKE_LAKE": settings.lake},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert process.poll() is None, process.communicate()
    build_experiment(settings)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and err == "" and out.count("\n") == 1
