"""One decoded message -> rows of the lake tables, tagged with where they came from."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from infra.bus.interface import Delivery
from schemas import lake
from schemas.codec import chunk_digest, encode

_EPISODE_TABLES = {"episode.started": lake.EPISODE_STARTS, "episode.ended": lake.EPISODE_ENDS}
_EVENT_FIELDS = pa.schema([f for f in lake.SCHEMAS[lake.EVENTS] if not f.name.startswith("_")])


def project(delivery: Delivery, log_id: str) -> list[tuple[str, pa.Table]]:
    """(table, rows) for one message; rows carry the columns of schemas.lake.SCHEMAS
    (the writer casts them once per flush)."""
    batch = delivery.batch
    if batch.num_rows == 0:
        return []
    source = (log_id, delivery)
    if batch.type in _EPISODE_TABLES:
        return [(_EPISODE_TABLES[batch.type], _with_source(batch.table, *source))]
    if batch.type == "episode.steps":
        steps = batch.table  # one episode per chunk (schemas.events checks it)
        first = steps.slice(0, 1).to_pylist()[0]
        chunk = pa.table({"episode_id": [first["episode_id"]], "experiment_id": [first["experiment_id"]],
                          "chunk": pa.array([first["chunk"]], pa.int32()),
                          "rows": pa.array([steps.num_rows], pa.int32()), "digest": [chunk_digest(steps)]})
        out = [(lake.STEPS, _with_source(steps.drop_columns(["frame"]), *source)),
               (lake.CHUNKS, _with_source(chunk, *source))]
        framed = steps.filter(pc.is_valid(steps.column("frame")))
        if framed.num_rows:
            out.append((lake.FRAMES, _with_source(framed.select(["episode_id", "experiment_id", "step", "frame"]),
                                                  *source)))
        return out
    return [(lake.EVENTS, _with_source(_event_row(delivery), *source))]


def _with_source(rows: pa.Table, log_id: str, delivery: Delivery) -> pa.Table:
    n = rows.num_rows
    columns = {
        "_log": pa.array([log_id] * n, pa.string()),
        "_topic": pa.array([delivery.topic] * n, pa.string()),
        "_partition": pa.array([delivery.partition] * n, pa.int32()),
        "_offset": pa.array([delivery.offset] * n, pa.int64()),
        "_timestamp": pa.array([delivery.timestamp_ms] * n, pa.timestamp("ms", tz="UTC")),
    }
    for name, column in columns.items():
        rows = rows.append_column(name, column)
    return rows


def _event_row(delivery: Delivery) -> pa.Table:
    batch = delivery.batch
    experiment = lake.NO_EXPERIMENT
    if "experiment_id" in batch.table.column_names and batch.table.column("experiment_id")[0].is_valid:
        experiment = batch.table.column("experiment_id")[0].as_py()
    payload, _ = encode(batch)
    row = {"experiment_id": experiment, "type": batch.type, "version": batch.version, "key": delivery.key,
           "rows": batch.num_rows, "payload": payload, "payload_json": json.dumps(batch.rows(), default=str)}
    return pa.Table.from_pylist([row], schema=_EVENT_FIELDS)
