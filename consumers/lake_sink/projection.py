"""One decoded message -> rows of the lake tables, tagged with where they came from."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from infra.bus.interface import Delivery
from schemas import lake
from schemas.codec import encode

_EVENT_FIELDS = pa.schema([f for f in lake.SCHEMAS[lake.EVENTS] if not f.name.startswith("_")])
_EPISODE_TABLES = {"episode.started": lake.EPISODE_STARTS, "episode.ended": lake.EPISODE_ENDS}


def project(delivery: Delivery) -> list[tuple[str, str, pa.Table]]:
    """(table, experiment_id, rows) for one message; rows follow schemas.lake.SCHEMAS."""
    batch = delivery.batch
    if batch.num_rows == 0:
        return []
    if batch.type in _EPISODE_TABLES:
        return _split_by_experiment(_EPISODE_TABLES[batch.type], batch.table, delivery)
    if batch.type == "episode.steps":
        out = _split_by_experiment(lake.STEPS, batch.table.drop_columns(["frame"]), delivery)
        framed = batch.table.filter(pc.is_valid(batch.table.column("frame")))
        if framed.num_rows:
            out += _split_by_experiment(lake.FRAMES, framed.select(["episode_id", "step", "frame", "experiment_id"]),
                                        delivery)
        return out
    return [(lake.EVENTS, _event_experiment(batch.table), _event_row(delivery))]


def _split_by_experiment(table_name: str, table: pa.Table, delivery: Delivery) -> list:
    experiments = table.column("experiment_id").unique().to_pylist()
    out = []
    for experiment in experiments:
        rows = table if len(experiments) == 1 else table.filter(pc.equal(table.column("experiment_id"), experiment))
        out.append((table_name, experiment, _with_source(table_name, rows.drop_columns(["experiment_id"]), delivery)))
    return out


def _with_source(table_name: str, rows: pa.Table, delivery: Delivery) -> pa.Table:
    """`rows` plus the source columns (cast to the table's schema once per file, by the writer)."""
    n = rows.num_rows
    columns = {
        "_topic": pa.array([delivery.topic] * n, pa.string()),
        "_partition": pa.array([delivery.partition] * n, pa.int32()),
        "_offset": pa.array([delivery.offset] * n, pa.int64()),
        "_timestamp": pa.array([delivery.timestamp_ms] * n, pa.timestamp("ms", tz="UTC")),
    }
    for name, column in columns.items():
        rows = rows.append_column(name, column)
    return rows


def _event_experiment(table: pa.Table) -> str:
    if "experiment_id" in table.column_names and table.column("experiment_id")[0].is_valid:
        return table.column("experiment_id")[0].as_py()
    return lake.NO_EXPERIMENT


def _event_row(delivery: Delivery) -> pa.Table:
    batch = delivery.batch
    payload, _ = encode(batch)
    row = {"type": batch.type, "version": batch.version, "key": delivery.key, "rows": batch.num_rows,
           "payload": payload, "payload_json": json.dumps(batch.rows(), default=str)}
    return _with_source(lake.EVENTS, pa.Table.from_pylist([row], schema=_EVENT_FIELDS), delivery)


def date_of(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%d")
