"""Read-only SQL over the lake: DuckDB views of the sink's tables, local or on S3 alike.

Views (all read the Parquet objects directly; hive partitions experiment_id and date prune):
    episodes          one row per complete episode (started and ended), with task and outcome
    steps, frames     steps / camera frames of complete episodes only
    partial_episodes  episodes whose `episode.ended` never arrived (crashed workers), kept apart
    partial_steps     their steps, for inspection
    events            every other event (curriculum, skills, metrics, verdicts), raw and as JSON
    episode_starts, episode_ends, steps_all   the physical tables

Read-only three ways: only SELECT/EXPLAIN statements are accepted, file access is limited to the
lake, and the configuration is locked so a query cannot undo either.
"""

from __future__ import annotations

import pyarrow as pa

from robolake.settings import Settings
from schemas import lake


class ReadOnlyError(ValueError):
    pass


ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}

_DERIVED = {
    "episodes": """
        SELECT s.experiment_id, s.episode_id, s.task, s.skill_sequence, e.task_success, e.task_return,
               e.length, e.termination, e.skills, s.worker_id, s.env_name, s.env_version, s.seed,
               s.policy_id, s.policy_version, s.decision_id, s.initial_state, s.time AS started_at,
               e.time AS ended_at, e.num_chunks, e.checksum, s.date
        FROM episode_starts s JOIN episode_ends e USING (episode_id)""",
    "steps": "SELECT * FROM steps_all WHERE episode_id IN (SELECT episode_id FROM episode_ends)",
    "frames": "SELECT * FROM frames_all WHERE episode_id IN (SELECT episode_id FROM episode_ends)",
    "partial_episodes": "SELECT * FROM episode_starts WHERE episode_id NOT IN (SELECT episode_id FROM episode_ends)",
    "partial_steps": "SELECT * FROM steps_all WHERE episode_id NOT IN (SELECT episode_id FROM episode_ends)",
}
_PHYSICAL = {lake.EPISODE_STARTS: "episode_starts", lake.EPISODE_ENDS: "episode_ends",
             lake.STEPS: "steps_all", lake.FRAMES: "frames_all", lake.EVENTS: "events"}
VIEWS = sorted([*_PHYSICAL.values(), *_DERIVED])


def open_lake(settings: Settings, read_only: bool = True):
    """A DuckDB connection with the lake's views; locked down unless read_only=False (tools)."""
    from infra.duck import connect

    con = connect(settings)
    root = settings.lake_root
    for table, view in _PHYSICAL.items():
        pattern = f"{root}/{table}/*/*/*.parquet"
        files = [row[0] for row in con.execute("SELECT file FROM glob(?)", [pattern]).fetchall()]
        live = lake.live_files(files)
        if live:
            # A plain glob while nothing was compacted; else the live files only (schemas/lake.py).
            paths = f"'{pattern}'" if len(live) == len(files) else "[" + ", ".join(f"'{f}'" for f in live) + "]"
            source = (f"read_parquet({paths}, hive_partitioning = true, union_by_name = true, "
                      "hive_types = {'experiment_id': VARCHAR, 'date': DATE})")
        else:  # no objects yet: an empty relation with the right columns, so queries still bind
            con.register(f"_empty_{table}", _empty(table))
            source = f"_empty_{table}"
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM {source}")
    for view, query in _DERIVED.items():
        con.execute(f"CREATE VIEW {view} AS {query}")
    if read_only:
        lake_dir = root.rstrip("/") + "/"
        con.execute(f"SET allowed_directories = ['{lake_dir}']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def check_read_only(con, sql: str) -> None:
    """Refuse anything but reads, naming the statement type that was refused."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyError(f"cannot parse the query: {exc}") from None
    if not statements:
        raise ReadOnlyError("no statement given")
    for statement in statements:
        kind = statement.type.name
        if kind not in ALLOWED_STATEMENTS:
            raise ReadOnlyError(f"the lake is read-only here: {kind} statements are refused "
                                "(only SELECT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE)")


def query(con, sql: str):
    """A DuckDB relation for one read-only query."""
    check_read_only(con, sql)
    return con.sql(sql)


def _empty(table: str) -> pa.Table:
    schema = lake.SCHEMAS[table].append(pa.field("date", pa.date32())).append(pa.field("experiment_id", pa.string()))
    return schema.empty_table()
