"""Summaries and the analyst on the real stack: episodes and learner metrics through Kafka into a
MinIO lake; skill.summary and analysis.verdict events back through Kafka into the lake, once."""

from __future__ import annotations

import json
import uuid

from consumers.lake_sink.sink import LakeSink
from infra.bus.kafka import KafkaBus
from producers.episode_writer import utc_now
from robolake.cli import main
from schemas import topics
from schemas.codec import build
from schemas.events import LEARNER_METRICS
from tests.lake_helpers import count


def test_summaries_and_verdicts_round_trip_through_kafka_and_minio(stack, tmp_path, capsys):
    experiment = f"summaries-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}")
    flags = ["--bus", stack.bus, "--lake", settings.lake, "--s3-endpoint", stack.s3_endpoint]
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)

    def sink():
        LakeSink(settings, bus=bus, group=f"sink-{experiment}", flush_seconds=0.5).run(until_idle_s=2)

    assert main(["produce", "--synthetic", "12", "--steps", "8", "--experiment", experiment, *flags]) == 0
    producer = bus.producer()
    for step in range(100, 1001, 100):  # a loss still falling, and no evaluation
        producer.send(topics.LEARNER, experiment, build(LEARNER_METRICS, [{
            "experiment_id": experiment, "run_id": f"run-{experiment}", "step": step, "name": "policy_loss",
            "value": 3.0 - step / 500, "skill_id": None, "time": utc_now()}]))
    producer.close()
    sink()
    capsys.readouterr()

    assert main(["summaries", "--experiment", experiment, "--emit", *flags]) == 0
    assert "emitted 4 new skill.summary events" in capsys.readouterr().out
    assert main(["analyze", "--experiment", experiment, "--out", str(tmp_path), *flags]) == 0
    out = capsys.readouterr().out
    assert "no evaluation yet" in out and "improving" not in out and "emitted 1 new analysis.verdict events" in out
    assert (tmp_path / experiment / f"run-{experiment}" / "policy_loss.png").stat().st_size > 1000
    sink()  # the new events, from Kafka into the lake

    def stored(event_type):
        payloads = count(settings, f"SELECT list(payload_json) FROM events WHERE type = '{event_type}' "
                                   f"AND experiment_id = '{experiment}'") or []
        return [row for p in payloads for row in json.loads(p)]

    summaries = stored("skill.summary")
    assert sorted(s["skill_id"] for s in summaries) == ["grasp_red", "lift_red", "place_red_on_blue", "reach_red"]
    assert {s["episodes"] for s in summaries if s["skill_id"] == "reach_red"} == {12}
    assert [(v["verdict"], v["method"]) for v in stored("analysis.verdict")] == [("no evaluation yet", "statistical")]
    assert main(["summaries", "--experiment", experiment, "--emit", *flags]) == 0
    assert main(["analyze", "--experiment", experiment, "--out", str(tmp_path), *flags]) == 0
    out = capsys.readouterr().out
    assert "emitted 0 new skill.summary events" in out and "emitted 0 new analysis.verdict events" in out
