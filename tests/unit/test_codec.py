import math

import pyarrow as pa
import pytest

from schemas.codec import DecodeError, EventBatch, build, decode, encode, steps_checksum
from schemas.events import EPISODE_STEPS, REGISTRY, EventType, Registry
from tests.bus_contract import steps


def _thing(version: int, *fields: pa.Field) -> EventType:
    return EventType("test.thing", version, pa.schema([pa.field("a", pa.int64(), nullable=False), *fields]), "t")


def test_every_registered_type_roundtrips_an_empty_batch():
    for (name, version), event_type in REGISTRY.types.items():
        payload, headers = encode(build(event_type, []))
        assert dict(headers)["robolake.type"] == name.encode()
        batch = decode(payload, headers)
        assert (batch.type, batch.version, batch.num_rows) == (name, version, 0)
        assert batch.table.schema == event_type.schema


def test_steps_roundtrip_preserves_values():
    batch = build(EPISODE_STEPS, steps(n=4, frame=b"\x89PNG..."))
    again = decode(*encode(batch))
    assert again.rows() == batch.rows()


def test_adding_an_optional_field_is_a_version_older_readers_still_read():
    v1 = _thing(1)
    v2 = _thing(2, pa.field("b", pa.string(), nullable=True))
    registry = Registry()
    registry.register(v1), registry.register(v2)
    payload, headers = encode(build(v2, [{"a": 1, "b": "new"}, {"a": 2, "b": None}]))

    as_written = decode(payload, headers, registry)
    assert as_written.version == 2 and as_written.rows()[0] == {"a": 1, "b": "new"}
    old_reader = decode(payload, headers, registry, read_as={"test.thing": 1})
    assert old_reader.version == 1 and old_reader.rows() == [{"a": 1}, {"a": 2}]
    # v1 data read by a v2-aware reader stays v1: nothing is invented.
    assert decode(*encode(build(v1, [{"a": 3}])), registry).rows() == [{"a": 3}]


@pytest.mark.parametrize("bad, message", [
    (_thing(2, pa.field("b", pa.string(), nullable=False)), "adds required field 'b'"),
    (EventType("test.thing", 2, pa.schema([pa.field("a", pa.int32(), nullable=False)]), "t"), "changes or removes"),
    (EventType("test.thing", 2, pa.schema([pa.field("z", pa.int64())]), "t"), "changes or removes"),
])
def test_only_additive_optional_changes_are_accepted(bad, message):
    registry = Registry()
    registry.register(_thing(1))
    with pytest.raises(ValueError, match=message):
        registry.register(bad)


def test_a_version_without_its_predecessor_is_refused():
    with pytest.raises(ValueError, match="register v1 first"):
        Registry().register(_thing(2))


def test_unknown_version_from_a_newer_writer_is_a_decode_error_not_a_crash():
    registry = Registry()
    registry.register(_thing(1))
    newer = Registry()
    newer.register(_thing(1)), newer.register(_thing(2, pa.field("b", pa.string())))
    payload, headers = encode(build(newer.get("test.thing", 2), [{"a": 1, "b": "x"}]))
    with pytest.raises(DecodeError) as error:
        decode(payload, headers, registry)
    assert error.value.reason == "unknown_version" and "known: [1]" in error.value.detail


@pytest.mark.parametrize("override, reason_text", [
    ({"action": lambda i: [math.inf, 0.0, 0.0, 0.0]}, "NaN or infinite"),
    ({"observation": lambda i: []}, "empty"),
    ({"episode_id": lambda i: f"e{i}"}, "exactly one episode"),
    ({"chunk": lambda i: i}, "one chunk number"),
    ({"skill_id": None}, "required field 'skill_id' has nulls"),
    ({"experiment_id": "../../etc"}, "experiment_id '../../etc' must match"),
])
def test_build_refuses_what_a_consumer_would_dead_letter(override, reason_text):
    with pytest.raises(DecodeError, match=reason_text) as error:
        build(EPISODE_STEPS, steps(**override))
    assert error.value.reason == "schema_violation"


def test_checksum_depends_on_content_and_order():
    a = build(EPISODE_STEPS, steps(n=3)).table
    b = build(EPISODE_STEPS, steps(n=3, reward=1.0)).table
    assert steps_checksum([a, b]) == steps_checksum([a, b])
    assert steps_checksum([a, b]) != steps_checksum([b, a])
    assert steps_checksum([a]) != steps_checksum([b])


def test_an_initial_observation_with_nan_is_refused():
    from datetime import datetime, timezone

    from schemas.events import EPISODE_STARTED_V2

    row = {"episode_id": "e", "experiment_id": "x", "worker_id": "w", "env_name": "panda", "env_version": 1,
           "seed": 0, "initial_state": [0.0], "task": "t", "skill_sequence": ["reach_red"], "decision_id": None,
           "policy_id": "p", "policy_version": "1", "time": datetime.now(timezone.utc), "initial_observation": [0.0]}
    assert build(EPISODE_STARTED_V2, [row]).num_rows == 1
    assert build(EPISODE_STARTED_V2, [dict(row, initial_observation=None)]).num_rows == 1  # optional
    with pytest.raises(DecodeError, match="initial_observation contains NaN"):
        build(EPISODE_STARTED_V2, [dict(row, initial_observation=[math.nan])])


def _ended(skills) -> pa.Table:
    from datetime import datetime, timezone

    from schemas.events import EPISODE_ENDED

    row = {"episode_id": "e", "experiment_id": "x", "length": 1, "task_return": 0.0, "task_success": False,
           "termination": "truncated", "num_chunks": 1, "skills": None, "checksum": "c",
           "time": datetime.now(timezone.utc)}
    table = pa.Table.from_pylist([row], schema=EPISODE_ENDED.schema)
    member = EPISODE_ENDED.schema.field("skills").type.value_type
    items = pa.StructArray.from_arrays([pa.array(skills, pa.string()), pa.array([0.0] * len(skills)),
                                        pa.array([True] * len(skills))], fields=list(member))
    column = pa.ListArray.from_arrays(pa.array([0, len(skills)], pa.int32()), items,
                                      type=EPISODE_ENDED.schema.field("skills").type)
    return table.set_column(table.schema.get_field_index("skills"), EPISODE_ENDED.schema.field("skills"), column)


def test_nulls_in_a_required_member_of_a_nested_field_are_refused_at_decode():
    """Arrow does not enforce a struct member's nullability; the lake's cast does, at the sink's
    commit, where one such message stalled its partition: it must be dead-lettered at decode."""
    from schemas.events import EPISODE_ENDED

    fine = _ended(["reach_red"])
    assert fine.schema.equals(EPISODE_ENDED.schema)
    assert decode(*encode(build(EPISODE_ENDED, fine))).table.column("skills").to_pylist()[0][0]["skill_id"] == "reach_red"
    hostile = _ended([None])
    assert hostile.schema.equals(EPISODE_ENDED.schema)  # the fast path's schema, exactly
    payload, headers = encode(EventBatch("episode.ended", 1, hostile))  # as a hostile producer would send it
    with pytest.raises(DecodeError, match=r"required field 'skills\[\].skill_id' has nulls") as error:
        decode(payload, headers)
    assert error.value.reason == "schema_violation"
