"""Relabel on the real stack: episodes through Kafka into a MinIO lake, relabelled there, lineage
on Kafka landing in the lake, and the learner's dataset reading it back."""

from __future__ import annotations

import json
import uuid

from consumers.lake_sink.sink import LakeSink
from infra.bus.kafka import KafkaBus
from learner.dataset import DatasetConfig, LakeDataset
from producers.sim.rewards import REWARDS
from robolake.cli import main
from schemas import observation
from tests.lake_helpers import count


def test_produce_relabel_and_query_on_kafka_and_minio(stack, capsys):
    experiment = f"relabel-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}")
    flags = ["--bus", stack.bus, "--lake", settings.lake, "--s3-endpoint", stack.s3_endpoint]
    assert main(["produce", "--episodes", "2", "--task", "lift_red", "--experiment", experiment, *flags]) == 0
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)

    def sink():
        LakeSink(settings, bus=bus, group=f"sink-{experiment}", flush_seconds=0.5).run(until_idle_s=2)

    sink()
    where = f"experiment_id = '{experiment}'"
    steps = count(settings, f"SELECT count(*) FROM steps WHERE {where}")
    assert steps > 0
    assert main(["relabel", "--all", "--where", where, "--name", "s3", *flags]) == 0
    assert main(["relabel", "--all", "--where", where, "--name", "s3", *flags]) == 0  # adds nothing
    assert "already relabelled" in capsys.readouterr().out
    assert count(settings, "SELECT count(*) FROM rewards WHERE dataset = 's3'") == steps * len(REWARDS)
    assert count(settings, f"SELECT count(*) FROM achievements WHERE dataset = 's3' AND reward_fn = 'lift_red' "
                           "AND achieved") == 2
    sink()  # the lineage event, from Kafka into the lake
    payloads = count(settings, "SELECT list(payload_json) FROM events WHERE type = 'relabel.completed'")
    # the lineage topic is shared by every run on this stack: ours is the one with our predicate
    lineage = [row for p in payloads for row in json.loads(p) if row["dataset"] == "s3" and row["predicate"] == where]
    assert len(lineage) == 1 and lineage[0]["predicate"] == where and lineage[0]["rows"] == steps * len(REWARDS)
    assert main(["sql", "SELECT reward_fn, reward_version, avg(success::INT) FROM rewards GROUP BY ALL",
                 *flags]) == 0
    batch = next(iter(LakeDataset(settings, DatasetConfig(dataset="s3", batch_size=8))))
    assert batch["observation"].shape == (8, observation.size()) and len(batch["caption"]) == 8
