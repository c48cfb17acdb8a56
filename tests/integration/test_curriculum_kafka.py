"""The curriculum on the real stack: skills announced and episodes produced through Kafka into a
MinIO lake; `curriculum --once` turns the lake's summaries into proposals and a decision on Kafka
(every model call a vlm.call event); `produce --from-decisions` executes it; and the consumer
without --once runs a round when `summaries --emit` puts new summaries on the log."""

from __future__ import annotations

import json
import uuid

from consumers.lake_sink.sink import LakeSink
from infra.bus.kafka import KafkaBus
from infra.lake_sql import open_lake
from robolake.cli import main


def _events(settings, kind: str, experiment: str) -> list[dict]:
    con = open_lake(settings)
    try:
        found = con.execute("SELECT payload_json FROM events WHERE type = ? AND experiment_id = ? "
                            "ORDER BY _log, _partition, _offset", [kind, experiment]).fetchall()
    finally:
        con.close()
    return [row for (payload,) in found for row in json.loads(payload)]


def test_curriculum_decides_and_the_workers_execute_on_kafka_and_minio(stack, capsys):
    experiment = f"curriculum-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}")
    flags = ["--bus", stack.bus, "--lake", settings.lake, "--s3-endpoint", stack.s3_endpoint]
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)

    def sink():
        LakeSink(settings, bus=bus, group=f"sink-{experiment}", flush_seconds=0.5).run(until_idle_s=2)

    assert main(["skills", "--announce", *flags]) == 0
    assert main(["produce", "--episodes", "2", "--task", "reach_red", "--experiment", experiment, *flags]) == 0
    sink()

    assert main(["curriculum", "--once", "--tasks", "1", "--episodes", "2", "--experiment", experiment, *flags]) == 0
    assert "1 proposals, 1 decisions" in capsys.readouterr().out
    sink()
    [proposal] = _events(settings, "curriculum.proposal", experiment)
    [decision] = _events(settings, "curriculum.decision", experiment)
    calls = _events(settings, "vlm.call", experiment)
    assert decision["proposal_id"] == proposal["proposal_id"] and decision["episodes"] == 2
    assert [c["stage"] for c in calls] == ["propose", "decompose"] and all(c["reply"] for c in calls)
    assert proposal["call_id"] == calls[0]["call_id"] and decision["call_id"] == calls[1]["call_id"]
    assert calls[0]["images"][-1]["name"].startswith("episode/"), "the scene of one of the experiment's episodes"

    assert main(["produce", "--from-decisions", "--until-idle", "3", *flags]) == 0
    sink()
    con = open_lake(settings)
    ran = con.execute("SELECT skill_sequence, experiment_id FROM episodes WHERE decision_id = ?",
                      [decision["decision_id"]]).fetchall()
    con.close()
    assert ran == [(decision["skill_sequence"], experiment)] * 2

    # The consumer proper: new summaries on the log start a round (the lake changed: new episodes).
    assert main(["summaries", "--emit", "--experiment", experiment, *flags]) == 0
    assert main(["curriculum", "--until-idle", "4", "--tasks", "1", "--episodes", "1", "--experiment", experiment,
                 *flags]) == 0
    assert "ran 1 rounds" in capsys.readouterr().out
    sink()
    decisions = _events(settings, "curriculum.decision", experiment)
    assert len(decisions) == 2 and decisions[0] == decision
    assert len(_events(settings, "vlm.call", experiment)) == 4
