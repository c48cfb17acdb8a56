"""The report and the dashboard on the real stack: an experiment's events through Kafka into a MinIO
lake; the report reads it there, and the dashboard's timeline follows new commits on S3."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid

from consumers.lake_sink.sink import LakeSink
from infra.bus.kafka import KafkaBus
from robolake.cli import main
from schemas import events, topics
from tests.unit.test_report import build_experiment, emit


def test_report_and_dashboard_read_a_minio_lake_written_through_kafka(stack, tmp_path, capsys):
    from robolake.report.dashboard import serve

    experiment = f"report-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}")
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)

    def drain(_settings) -> None:
        LakeSink(settings, bus=bus, group=f"sink-{experiment}", flush_seconds=0.5).run(until_idle_s=2)

    ids = build_experiment(settings, drain=drain, experiment=experiment)
    flags = ["--lake", settings.lake, "--s3-endpoint", stack.s3_endpoint, "--bus", stack.bus]
    assert main(["report", "--experiment", experiment, "-o", str(tmp_path), *flags]) == 0
    page = (tmp_path / f"{experiment}.html").read_text()
    for key in ("proposal", "decision", "decompose_call", "verdict", "run"):
        assert ids[key] in page
    assert all(episode in page for episode in ids["episodes"])

    server = serve(settings, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/timeline?experiment={experiment}"
    try:
        first = json.load(urllib.request.urlopen(url, timeout=30))
        # ours, and the library's skill.added (global: other tests on this stack announce skills too)
        assert len([e for e in first["events"] if e["type"] != "skill.added"]) == 11
        emit(settings, topics.ANALYSIS, events.ANALYSIS_VERDICT_V2, [{
            "verdict_id": "verdict-s3", "experiment_id": experiment, "skill_id": "reach_red", "verdict": "stop",
            "rationale": "enough", "run_id": None, "method": "statistical", "converged_at": None, "slope": None,
            "slope_low": None, "slope_high": None, "call_id": None}])
        drain(settings)
        new = json.load(urllib.request.urlopen(f"{url}&cursor={first['cursor']}", timeout=30))
        assert [e["ids"] for e in new["events"]] == [["verdict-s3"]]
    finally:
        server.shutdown()
        server.server_close()
