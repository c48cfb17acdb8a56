"""The stack is real: Kafka round trip with acks=all, MinIO round trip, Parquet on MinIO via DuckDB."""

from __future__ import annotations

import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq


def test_kafka_produce_and_consume_with_acks_all(stack):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from infra.topics import ensure_topics

    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    assert ensure_topics(stack.kafka_bootstrap, [topic], partitions=2) == [topic]
    assert ensure_topics(stack.kafka_bootstrap, [topic], partitions=2) == []  # idempotent

    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    sent = [producer.send(topic, key=b"episode-1", value=f"step {i}".encode()).get(timeout=30) for i in range(5)]
    producer.close()
    assert len({m.partition for m in sent}) == 1  # one key, one partition
    assert [m.offset for m in sent] == list(range(5))

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, sent[0].partition)])
    received, deadline = [], time.monotonic() + 30
    while len(received) < 5 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received.extend(r.value.decode() for r in records)
    consumer.close()
    assert received == [f"step {i}" for i in range(5)]


def test_minio_object_roundtrip(stack):
    from infra.object_store import ensure_bucket, get_bytes, put_bytes, s3_client

    bucket = stack.lake_bucket
    ensure_bucket(stack, bucket)
    assert ensure_bucket(stack, bucket) is False  # already there
    client = s3_client(stack)
    key = f"tests/{uuid.uuid4().hex}.bin"
    payload = bytes(range(256)) * 1000
    put_bytes(client, bucket, key, payload)
    assert get_bytes(client, bucket, key) == payload
    client.remove_object(bucket, key)


def test_parquet_on_minio_queried_by_duckdb_over_s3(stack):
    from infra.duck import connect
    from infra.object_store import put_bytes, s3_client

    table = pa.table({"episode": [f"e{i % 7}" for i in range(1000)], "reward": [float(i) for i in range(1000)]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    key = f"tests/{uuid.uuid4().hex}/steps.parquet"
    put_bytes(s3_client(stack), stack.lake_bucket, key, sink.getvalue().to_pybytes())

    con = connect(stack)
    rows = con.execute(
        f"SELECT episode, count(*), sum(reward) FROM read_parquet('s3://{stack.lake_bucket}/{key}') "
        "GROUP BY episode ORDER BY episode").fetchall()
    expected = {}
    for i in range(1000):
        n, s = expected.get(f"e{i % 7}", (0, 0.0))
        expected[f"e{i % 7}"] = (n + 1, s + i)
    assert rows == [(k, *v) for k, v in sorted(expected.items())]
