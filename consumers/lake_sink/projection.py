"""Decoded messages -> rows of the lake tables, tagged with where they came from.

`project` runs once per message and does only what depends on the message; the columns that say
where rows came from are added by `with_source` once per partition and flush (a few NumPy calls
for thousands of messages, where appending them to each message's rows dominated the sink).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infra.bus.interface import Delivery
from schemas import lake
from schemas.codec import chunk_digest, encode

_EPISODE_TABLES = {"episode.started": lake.EPISODE_STARTS, "episode.ended": lake.EPISODE_ENDS}
_FIELDS = {name: pa.schema([f for f in schema if not f.name.startswith("_")]) for name, schema in lake.SCHEMAS.items()}

Rows = pa.Table | dict  # a message's rows of one table, or its one row


def project(delivery: Delivery) -> list[tuple[str, Rows]]:
    """(table, rows) for one message, without the source columns; rows carry the columns of
    schemas.lake.SCHEMAS (the writer casts them once per flush)."""
    batch = delivery.batch
    if batch.num_rows == 0:
        return []
    if batch.type in _EPISODE_TABLES:
        return [(_EPISODE_TABLES[batch.type], batch.table)]
    if batch.type == "episode.steps":
        steps = batch.table  # one episode per chunk (schemas.events checks it)
        chunk = {"episode_id": steps.column("episode_id")[0].as_py(),
                 "experiment_id": steps.column("experiment_id")[0].as_py(),
                 "chunk": steps.column("chunk")[0].as_py(), "rows": steps.num_rows, "digest": chunk_digest(steps)}
        out: list[tuple[str, Rows]] = [(lake.STEPS, steps.drop_columns(["frame"])), (lake.CHUNKS, chunk)]
        frames = steps.column("frame")
        if frames.null_count < steps.num_rows:
            framed = steps.filter(pc.is_valid(frames))
            out.append((lake.FRAMES, framed.select(["episode_id", "experiment_id", "step", "frame"])))
        return out
    return [(lake.EVENTS, _event_row(delivery))]


def size(rows: Rows) -> int:
    """Bytes `rows` hold, roughly: what the writer counts toward a flush."""
    if isinstance(rows, pa.Table):
        return rows.get_total_buffer_size()  # nbytes walks a slice's buffers: slower, and no truer here
    return 64 + sum(len(v) for v in rows.values() if isinstance(v, (str, bytes)))


def with_source(table_name: str, parts: list[tuple[Rows, int, int]], log_id: str, topic: str,
                partition: int) -> pa.Table:
    """One table of `parts` (rows, offset, timestamp_ms) of one partition, in order, with the
    columns that say where each row came from."""
    rows = [r for r, _, _ in parts]
    if isinstance(rows[0], dict):
        table = pa.Table.from_pylist(rows, schema=_FIELDS[table_name])
        counts = np.ones(len(rows), np.int64)
    else:
        table = pa.concat_tables(rows, promote_options="default")  # older versions lack later fields
        counts = np.fromiter((r.num_rows for r in rows), np.int64, len(rows))
    n = table.num_rows
    offsets = np.repeat(np.fromiter((o for _, o, _ in parts), np.int64, len(parts)), counts)
    stamps = np.repeat(np.fromiter((t for _, _, t in parts), np.int64, len(parts)), counts)
    columns = {
        "_log": pa.array([log_id], pa.string()).take(np.zeros(n, np.int32)),
        "_topic": pa.array([topic], pa.string()).take(np.zeros(n, np.int32)),
        "_partition": pa.array(np.full(n, partition, np.int32)),
        "_offset": pa.array(offsets),
        "_timestamp": pa.array(stamps.astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC")),
    }
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def _event_row(delivery: Delivery) -> dict:
    batch = delivery.batch
    experiment = lake.NO_EXPERIMENT
    if "experiment_id" in batch.table.column_names and batch.table.column("experiment_id")[0].is_valid:
        experiment = batch.table.column("experiment_id")[0].as_py()
    payload, _ = encode(batch)
    return {"experiment_id": experiment, "type": batch.type, "version": batch.version, "key": delivery.key,
            "rows": batch.num_rows, "payload": payload, "payload_json": json.dumps(batch.rows(), default=str)}
