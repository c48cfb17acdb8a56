"""Event batches <-> Arrow IPC bytes; the type and version travel in message headers.

`decode` never crashes on bad input: it raises DecodeError with a reason code that the bus
puts on the dead-letter topic (undecodable, unknown_type, unknown_version, schema_violation).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

import pyarrow as pa

from schemas.events import REGISTRY, EventType, Registry

HEADER_TYPE = "robolake.type"
HEADER_VERSION = "robolake.version"
CONTENT_TYPE = ("content-type", b"application/vnd.apache.arrow.stream")

Headers = list[tuple[str, bytes]]
EXPERIMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_EXPERIMENT_ID = re.compile(EXPERIMENT_ID_PATTERN)


@dataclass(frozen=True)
class EventBatch:
    """Rows of one event type and version."""

    type: str
    version: int
    table: pa.Table

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def rows(self) -> list[dict]:
        return self.table.to_pylist()


class DecodeError(ValueError):
    REASONS = ("undecodable", "unknown_type", "unknown_version", "schema_violation")

    def __init__(self, reason: str, detail: str):
        assert reason in self.REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def build(event_type: EventType, rows: list[dict] | pa.Table) -> EventBatch:
    """An EventBatch from Python rows (or a table), validated like a consumer would validate it."""
    try:
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=event_type.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, TypeError) as exc:
        raise DecodeError("schema_violation", f"{event_type.name} v{event_type.version}: {exc}") from None
    return EventBatch(event_type.name, event_type.version, _conform(table, event_type))


def encode(batch: EventBatch) -> tuple[bytes, Headers]:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.table.schema) as writer:
        writer.write_table(batch.table)
    headers = [(HEADER_TYPE, batch.type.encode()), (HEADER_VERSION, str(batch.version).encode()), CONTENT_TYPE]
    return sink.getvalue().to_pybytes(), headers


def decode(payload: bytes, headers: Headers | None, registry: Registry = REGISTRY,
           read_as: dict[str, int] | None = None) -> EventBatch:
    """Decode and validate one message. `read_as` maps a type to the version this reader was
    written for; newer versions of that type are projected down to it."""
    found = {k: v for k, v in (headers or [])}
    if HEADER_TYPE not in found or HEADER_VERSION not in found:
        raise DecodeError("undecodable", f"headers {HEADER_TYPE!r} and {HEADER_VERSION!r} are required")
    name = found[HEADER_TYPE].decode(errors="replace")
    version_text = found[HEADER_VERSION].decode(errors="replace")
    if not re.fullmatch(r"[0-9]{1,9}", version_text):  # not str.isdigit(): it accepts '²', int() does not
        raise DecodeError("undecodable", f"version header {version_text!r} is not an integer")
    version = int(version_text)
    if name not in registry.names():
        raise DecodeError("unknown_type", f"{name!r} is not a known event type")
    event_type = registry.get(name, version)
    if event_type is None:
        known = sorted(v for n, v in registry.types if n == name)
        raise DecodeError("unknown_version", f"{name} v{version} is unknown (known: {known})")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    except Exception as exc:  # whatever pyarrow raises on garbage
        raise DecodeError("undecodable", f"not an Arrow IPC stream: {exc}") from None
    try:  # full validation: invalid UTF-8 in a string column, offsets out of bounds, ...
        table.validate(full=True)
    except Exception as exc:
        raise DecodeError("undecodable", f"invalid Arrow data: {exc}") from None
    try:
        table = _conform(table, event_type)
    except DecodeError:
        raise
    except Exception as exc:  # a payload hostile in a way no check foresaw is still only poison
        raise DecodeError("schema_violation", f"{name} v{version}: {type(exc).__name__}: {exc}") from None
    wanted = (read_as or {}).get(name)
    if wanted is not None and wanted < version:
        reader = registry.get(name, wanted)
        if reader is None:
            raise DecodeError("unknown_version", f"reader asks for {name} v{wanted}, which is unknown")
        return EventBatch(name, wanted, table.select(reader.schema.names))
    return EventBatch(name, version, table)


def _conform(table: pa.Table, event_type: EventType) -> pa.Table:
    """`table` with exactly the event type's fields and types, or a schema_violation."""
    label = f"{event_type.name} v{event_type.version}"
    expected = event_type.schema
    if not table.schema.equals(expected):  # what our own writers send needs neither checks nor a cast
        extra = [n for n in table.schema.names if n not in expected.names]
        missing = [n for n in expected.names if n not in table.schema.names]
        if extra or missing:
            raise DecodeError("schema_violation", f"{label}: missing fields {missing}, unexpected fields {extra}")
        for f in expected:
            actual = table.schema.field(f.name).type
            if actual != f.type:
                raise DecodeError("schema_violation", f"{label}: field {f.name!r} is {actual}, expected {f.type}")
        table = table.select(expected.names).cast(expected)
    for f in expected:
        column = table.column(f.name)
        if not f.nullable and column.null_count:
            raise DecodeError("schema_violation", f"{label}: required field {f.name!r} has nulls")
        inner = (next((name for chunk in column.chunks for name in _nested_nulls(chunk, f.name)), None)
                 if _holds_required(f.type) else None)
        if inner is not None:  # Arrow leaves nested nullability unchecked; the lake's cast refuses it, too late
            raise DecodeError("schema_violation", f"{label}: required field {inner!r} has nulls")
    if "experiment_id" in expected.names and table.num_rows:
        for experiment_id in table.column("experiment_id").unique().to_pylist():
            if experiment_id is not None and not _EXPERIMENT_ID.fullmatch(experiment_id):
                raise DecodeError("schema_violation", f"{label}: experiment_id {experiment_id!r} must match "
                                                      f"{EXPERIMENT_ID_PATTERN} (it names a lake partition)")
    if event_type.check is not None:
        problem = event_type.check(table)
        if problem:
            raise DecodeError("schema_violation", f"{label}: {problem}")
    return table


def _members(kind: pa.DataType) -> list[tuple[pa.Field, str]]:
    """The fields nested one level inside `kind` (struct members, a list's item), with their path suffix."""
    if pa.types.is_struct(kind):
        return [(member, f".{member.name}") for member in kind]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return [(kind.value_field, "[]")]
    return []


@functools.lru_cache(maxsize=None)
def _holds_required(kind: pa.DataType) -> bool:
    """Whether a required field is nested anywhere inside `kind` (most columns: no, and are not walked)."""
    return any(not member.nullable or _holds_required(member.type) for member, _ in _members(kind))


def _nested_nulls(array: pa.Array, path: str):
    """The paths of required fields inside `array` (struct members, list items) that hold nulls where
    their parent holds a value."""
    if pa.types.is_struct(array.type):
        valid = array.is_valid() if array.null_count else None
        # the raw children: their own validity, not merged with the parent's
        children = [array.field(i) if valid is None else array.field(i).filter(valid) for i in range(array.type.num_fields)]
    else:
        children = [array.flatten()]  # the items of the lists that are there
    for child, (member, suffix) in zip(children, _members(array.type)):
        if not member.nullable and child.null_count:
            yield path + suffix
        if _holds_required(member.type):
            yield from _nested_nulls(child, path + suffix)


# An episode's checksum is a hash over the digests of its chunks in order, so a consumer that
# stores one digest per chunk (the lake's `chunks` table) can verify a whole episode in SQL:
#   'chunks-sha256:' || sha256(string_agg(digest, '' ORDER BY chunk)) = checksum
CHECKSUM_SCHEME = "chunks-sha256:"


def chunk_digest(steps: pa.Table) -> str:
    """SHA-256 (hex) over the content of one steps chunk: step numbers, rewards, observations, actions."""
    import pyarrow.compute as pc

    digest = hashlib.sha256()
    for name in ("step", "reward"):
        digest.update(steps.column(name).to_numpy().tobytes())
    for name in ("observation", "action"):
        digest.update(pc.list_flatten(steps.column(name)).to_numpy().tobytes())
    return digest.hexdigest()


def episode_checksum(chunk_digests: Iterable[str]) -> str:
    """What `episode.ended` carries so a consumer can prove it holds every step exactly once."""
    return CHECKSUM_SCHEME + hashlib.sha256("".join(chunk_digests).encode()).hexdigest()


def steps_checksum(chunks: Iterable[pa.Table]) -> str:
    return episode_checksum(chunk_digest(table) for table in chunks)
