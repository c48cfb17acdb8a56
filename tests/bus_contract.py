"""The bus contract, written once and run against every backend.

A backend's test module provides a `bus` fixture and does `from tests.bus_contract import *`.
Each test works on fresh topics, so the suite also runs against a long-lived Kafka.
"""

from __future__ import annotations

import math
import time
import uuid

import pyarrow as pa
import pytest

from infra.bus.interface import BusError, MessageTooLarge
from producers.synthetic import SyntheticConfig, produce
from schemas import topics
from schemas.codec import build, encode
from schemas.events import EPISODE_STEPS, LEARNER_METRICS
from producers.episode_writer import utc_now


@pytest.fixture
def topic(bus) -> str:
    name = f"test.{uuid.uuid4().hex[:10]}"
    bus.ensure_topics([name])
    return name


@pytest.fixture
def group() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def metrics(n: int, run: str = "r", start: int = 0):
    rows = [{"experiment_id": "x", "run_id": run, "step": start + i, "name": "loss", "value": 1.0 / (i + 1),
             "skill_id": None, "time": utc_now()} for i in range(n)]
    return build(LEARNER_METRICS, rows)


def steps(episode: str = "e", n: int = 3, **override):
    rows = [{"episode_id": episode, "experiment_id": "x", "chunk": 0, "step": i, "sim_time": 0.1 * i, "observation": [0.0, 1.0, 2.0],
             "action": [0.1, 0.2, 0.3, 1.0], "reward": 0.0, "task_reward": 0.0, "skill_id": "reach_red",
             "skill_caption": "reach the red block", "terminated": False, "truncated": False, "frame": None}
            for i in range(n)]
    for i, row in enumerate(rows):
        row.update({k: (v(i) if callable(v) else v) for k, v in override.items()})
    return rows


def drain(consumer, n: int, timeout_s: float = 30.0, raw: bool = False) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += consumer.poll_raw(0.5) if raw else consumer.poll(0.5)
    return got


def _settle(consumer, timeout_s: float = 1.5) -> list:
    """Poll once more to catch anything that should not be there."""
    return drain(consumer, 1, timeout_s)


def test_roundtrip_keeps_rows_key_and_order(bus, topic, group):
    producer = bus.producer()
    for i in range(5):
        producer.send(topic, "run-1", metrics(3, start=3 * i))
    producer.flush()
    consumer = bus.consumer(group, [topic])
    got = drain(consumer, 5)
    consumer.close()
    assert [d.batch.type for d in got] == ["learner.metrics"] * 5
    assert {d.key for d in got} == {"run-1"}
    assert len({d.partition for d in got}) == 1, "one key must map to one partition"
    assert [d.offset for d in got] == list(range(5))
    assert [r["step"] for d in got for r in d.batch.rows()] == list(range(15))


def test_commit_resumes_and_uncommitted_is_redelivered(bus, topic, group):
    producer = bus.producer()
    for i in range(4):
        producer.send(topic, "k", metrics(1, start=i))
    producer.flush()
    first = bus.consumer(group, [topic])
    assert len(drain(first, 4)) == 4
    first.commit()
    producer.send(topic, "k", metrics(1, start=4))
    producer.flush()
    assert len(drain(first, 1)) == 1  # polled, never committed
    first.close()

    second = bus.consumer(group, [topic])
    again = drain(second, 1)
    assert [r["step"] for d in again for r in d.batch.rows()] == [4]
    second.commit()
    assert sum(second.committed().values()) == 5
    assert _settle(second) == []
    second.close()


def test_lag_counts_what_is_left_to_read(bus, topic, group):
    producer = bus.producer()
    for i in range(3):
        producer.send(topic, "k", metrics(1, start=i))
    producer.flush()
    consumer = bus.consumer(group, [topic])
    assert consumer.lag() in (None, 3)  # None: a Kafka group may not be assigned yet
    assert len(drain(consumer, 3)) == 3
    assert consumer.lag() == 0
    consumer.close()


def test_groups_are_independent_and_seek_replays(bus, topic):
    producer = bus.producer()
    for i in range(3):
        producer.send(topic, f"k{i}", metrics(1, start=i))
    producer.flush()
    a, b = bus.consumer("a-" + topic, [topic]), bus.consumer("b-" + topic, [topic])
    assert len(drain(a, 3)) == 3 and len(drain(b, 3)) == 3
    a.commit()
    a.seek_to_beginning()
    assert sorted(r["step"] for d in drain(a, 3) for r in d.batch.rows()) == [0, 1, 2]
    a.close(), b.close()


def test_one_group_splits_partitions_between_members(bus, topic, group):
    producer = bus.producer()
    for i in range(40):
        producer.send(topic, f"key-{i}", metrics(1, start=i))
    producer.flush()
    a = bus.consumer(group, [topic])
    b = bus.consumer(group, [topic])
    seen: dict[str, list[int]] = {"a": [], "b": []}
    deadline = time.monotonic() + 60
    while len(seen["a"]) + len(seen["b"]) < 40 and time.monotonic() < deadline:
        for name, consumer in (("a", a), ("b", b)):
            seen[name] += [r["step"] for d in consumer.poll(0.3) for r in d.batch.rows()]
    a.close(), b.close()
    assert sorted(seen["a"] + seen["b"]) == list(range(40)), "each message exactly once within a group"


def test_reader_without_group_reads_everything_and_cannot_commit(bus, topic):
    producer = bus.producer()
    for i in range(6):
        producer.send(topic, f"k{i}", metrics(1, start=i))
    producer.flush()
    reader = bus.consumer(None, [topic])
    assert sorted(r["step"] for d in drain(reader, 6) for r in d.batch.rows()) == list(range(6))
    with pytest.raises(BusError, match="without a group"):
        reader.commit()
    reader.close()


def test_oversized_message_is_refused_with_its_size(bus, topic):
    rows = steps(n=1, observation=[0.5] * (bus.max_message_bytes // 4 + 10))
    with pytest.raises(MessageTooLarge, match="exceeds the"):
        bus.producer().send(topic, "e", build(EPISODE_STEPS, rows))


def _bad_messages():
    good_payload, good_headers = encode(build(EPISODE_STEPS, steps()))
    nan_rows = steps(action=lambda i: [math.nan, 0.0, 0.0, 1.0] if i == 1 else [0.0, 0.0, 0.0, 1.0])
    ragged_rows = steps(observation=lambda i: [0.0] * (3 if i else 4))
    missing = pa.Table.from_pylist(steps()).drop_columns(["skill_id"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, missing.schema) as w:
        w.write_table(missing)
    return {
        "undecodable": (b"\x00not arrow at all", good_headers),
        "unknown_type": (good_payload, [("robolake.type", b"episode.teleported"), ("robolake.version", b"1")]),
        "unknown_version": (good_payload, [("robolake.type", b"episode.steps"), ("robolake.version", b"99")]),
        "nan_action": (_raw_table(nan_rows), good_headers),
        "ragged_vector": (_raw_table(ragged_rows), good_headers),
        "missing_field": (sink.getvalue().to_pybytes(), good_headers),
        "no_headers": (good_payload, []),
    }


def _raw_table(rows) -> bytes:
    """Encode rows with the steps schema but without the codec's validation (a buggy producer)."""
    table = pa.Table.from_pylist(rows, schema=EPISODE_STEPS.schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


EXPECTED_REASON = {"undecodable": "undecodable", "unknown_type": "unknown_type",
                   "unknown_version": "unknown_version", "nan_action": "schema_violation",
                   "ragged_vector": "schema_violation", "missing_field": "schema_violation",
                   "no_headers": "undecodable"}


def test_poison_messages_go_to_the_dead_letter_topic_and_the_consumer_carries_on(bus, topic, group):
    dlq_before = _dlq_size(bus)
    producer = bus.producer()
    producer.send(topic, "e", build(EPISODE_STEPS, steps()))
    bad = _bad_messages()
    for name, (payload, headers) in bad.items():
        producer.send_raw(topic, b"e", payload, headers)
    producer.send(topic, "e", build(EPISODE_STEPS, steps()))
    producer.flush()

    consumer = bus.consumer(group, [topic])
    good = drain(consumer, 2)
    assert [d.offset for d in good] == [0, len(bad) + 1]
    assert _settle(consumer) == []
    assert consumer.dead_lettered == len(bad)
    consumer.commit()  # dead letters are durable before the offsets move
    consumer.close()

    reader = bus.consumer(None, [topics.DLQ])
    letters = [m for m in drain(reader, dlq_before + len(bad), raw=True) if m.header("dlq.source.topic") == topic]
    reader.close()
    by_offset = {int(m.header("dlq.source.offset")): m for m in letters}
    assert sorted(by_offset) == list(range(1, len(bad) + 1))
    for offset, name in enumerate(bad, start=1):
        letter = by_offset[offset]
        assert letter.header("dlq.reason") == EXPECTED_REASON[name], (name, letter.header("dlq.detail"))
        assert letter.value == bad[name][0], "the original bytes are kept"
        assert letter.header("dlq.consumer") == group
    assert "NaN" in by_offset[list(bad).index("nan_action") + 1].header("dlq.detail")
    assert "different lengths" in by_offset[list(bad).index("ragged_vector") + 1].header("dlq.detail")
    assert "skill_id" in by_offset[list(bad).index("missing_field") + 1].header("dlq.detail")


def test_a_reader_without_group_skips_poison_without_dead_lettering(bus, topic):
    dlq_before = _dlq_size(bus)
    producer = bus.producer()
    producer.send_raw(topic, b"e", b"garbage", [])
    producer.send(topic, "e", build(EPISODE_STEPS, steps()))
    producer.flush()
    reader = bus.consumer(None, [topic])
    assert [d.offset for d in drain(reader, 1)] == [1]
    assert reader.skipped == 1 and reader.dead_lettered == 0
    reader.close()
    assert _dlq_size(bus) == dlq_before


def _dlq_size(bus) -> int:
    reader = bus.consumer(None, [topics.DLQ])
    n = len(drain(reader, 10**9, timeout_s=2.0, raw=True))
    reader.close()
    return n


def test_synthetic_episodes_arrive_complete_and_ordered(bus, topic, group):
    producer = bus.producer()
    config = SyntheticConfig(episodes=4, steps=30, chunk_steps=8)
    produced = produce(producer, config, topic=topic)
    consumer = bus.consumer(group, [topic])
    events = drain(consumer, 4 * (1 + 4 + 1))
    consumer.close()
    from schemas.codec import steps_checksum

    for episode in produced:
        mine = [d.batch for d in events if d.key == episode]
        assert [b.type for b in mine] == ["episode.started"] + ["episode.steps"] * 4 + ["episode.ended"]
        ended = mine[-1].rows()[0]
        assert ended["num_chunks"] == 4 and ended["length"] == 30
        assert ended["checksum"] == steps_checksum(b.table for b in mine[1:-1])



def test_a_held_consumer_reads_nothing_then_goes_on_where_it_stood(bus, topic, group):
    producer = bus.producer()
    for i in range(3):
        producer.send(topic, "k", metrics(1, start=i))
    producer.flush()
    consumer = bus.consumer(group, [topic])
    first = []
    deadline = time.monotonic() + 30
    while not first and time.monotonic() < deadline:
        first = consumer.poll(0.5, max_records=1)
    with consumer.held(interval_s=0.2):  # long work: the consumer must not be used meanwhile
        producer.send(topic, "k", metrics(1, start=3))
        producer.flush()
        time.sleep(1.0)
    rest = drain(consumer, 3)
    consumer.commit()
    assert [d.offset for d in first + rest] == [0, 1, 2, 3]
    assert sum(consumer.committed().values()) == 4
    assert _settle(consumer) == []
    consumer.close()


__all__ = [name for name in dir() if name.startswith("test_")] + ["topic", "group"]
