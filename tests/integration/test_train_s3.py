"""Train and eval on the real stack: episodes through Kafka into a MinIO lake, relabelled, a tiny
PAC run with its checkpoints on MinIO and its metrics through Kafka, then eval episodes through
Kafka into the lake, tagged with the policy."""

from __future__ import annotations

import uuid

from consumers.lake_sink.sink import LakeSink
from infra.bus.kafka import KafkaBus
from robolake.cli import main
from tests.lake_helpers import count


def test_train_then_eval_on_kafka_and_minio(stack, capsys):
    experiment = f"train-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{experiment}")
    flags = ["--bus", stack.bus, "--lake", settings.lake, "--s3-endpoint", stack.s3_endpoint]
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)

    def sink():
        LakeSink(settings, bus=bus, group=f"sink-{experiment}", flush_seconds=0.5).run(until_idle_s=2)

    assert main(["produce", "--episodes", "2", "--task", "grasp_red", "--experiment", experiment, *flags]) == 0
    sink()
    assert main(["relabel", "--rewards", "reach_red", "grasp_red", "--name", experiment, *flags]) == 0
    run = f"run-{experiment}"
    assert main(["train", "--dataset", experiment, "--steps", "4", "--checkpoint-every", "2", "--run-id", run,
                 "--experiment", experiment, *flags]) == 0
    assert f"trained run {run} to step 4" in capsys.readouterr().out
    assert main(["eval", "--run-id", run, "--skills", "reach_red", "--episodes", "1", "--experiment", experiment,
                 *flags]) == 0
    sink()
    assert count(settings, f"SELECT count(*) FROM episodes WHERE policy_id = 'pac:{run}'") == 1
    assert count(settings, f"SELECT count(*) FROM events WHERE type = 'learner.metrics' AND key = '{experiment}'") >= 1
    from infra.object_store import s3_client  # the checkpoints are objects on MinIO

    keys = [o.object_name for o in s3_client(stack).list_objects(stack.lake_bucket, prefix=f"tests/{experiment}/checkpoints/",
                                                                 recursive=True)]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["latest", "step-000000002.pt", "step-000000004.pt"]
