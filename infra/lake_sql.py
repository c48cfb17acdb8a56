"""Read-only SQL over the lake: DuckDB views over the lake's tables, local or on S3 alike.

Views:
    episodes          one row per episode proven complete: one start, one end, and chunks that
                      match the end's num_chunks, length and checksum exactly once; of a decision's
                      episode (decision_id, seed) run more than once, the first complete run
    steps, frames     steps / camera frames of complete episodes only; steps.obs names the
                      observation's fields (`SELECT obs.hand_xyz, obs.red_xyz[3] FROM steps`)
    episode_status    every episode id seen, with `problem` (NULL when complete), as the commits that
                      added its rows found it (infra/episode_status.py)
    partial_episodes  the others, with the reason: no start, no end, duplicate start or end,
                      duplicate chunks, missing chunks, length mismatch, checksum mismatch,
                      repeat of a decision episode (complete, but a run of that seed came first)
    partial_steps     their steps, for inspection
    events            every other event (curriculum, skills, metrics, verdicts), raw and as JSON
    rewards           what `robolake relabel` computed: one row per dataset, step and reward function version
    achievements      per dataset, episode and reward function version: achieved or not, first step achieved
    episode_starts, episode_ends, steps_all, chunks, frames_all, lake_offsets   the tables

Read-only by construction: the lake is attached READ_ONLY, and after that the connection loses
all file access but reading the data files (`enable_external_access = false` with
`allowed_directories` = <lake>/data/: no COPY, EXPORT, ATTACH or reading files elsewhere), has no
temporary directory, a memory cap (setting sql_memory_limit) and a locked configuration. DuckLake
reads only the files its catalog lists: a file dropped there is never part of a table. Only
SELECT statements (and EXPLAIN of one) are accepted, and only if they name nothing but the views,
their own CTEs and vetted functions (infra.sql_guard): DuckDB's sandbox must leave the data files
and the catalog reachable, and DuckLake's maintenance functions write and delete there even on a
read-only attachment.
"""

from __future__ import annotations

import re

from infra import episode_status
from infra.duck import sql_str
from infra.lake_catalog import LakeNotFound, attach, data_path
from infra.sql_guard import QueryLimitError, ReadOnlyError, check_select, query_limits
from schemas import lake, observation

__all__ = ["VIEWS", "QueryLimitError", "ReadOnlyError", "check_read_only", "limits", "open_lake", "query"]  # re-exports

_EXPLAIN = re.compile(r"^(\s+|--[^\n]*\n|/\*.*?\*/)*EXPLAIN\s+(ANALYZE\s+)?", re.IGNORECASE | re.DOTALL)

_TABLES = {"episode_starts": lake.EPISODE_STARTS, "episode_ends": lake.EPISODE_ENDS, "steps_all": lake.STEPS,
           "chunks": lake.CHUNKS, "frames_all": lake.FRAMES, "events": lake.EVENTS, "lake_offsets": lake.OFFSETS,
           "rewards": lake.REWARDS}

# `obs`: the observation's named fields (schemas/observation.py), e.g. obs.hand_xyz, NULL where the
# row's version lacks one; computed only when a query reads it.
_OBS = observation.sql_struct("observation")

_DERIVED = {
    "episode_status": f"SELECT episode_id, problem FROM lake.{lake.STATUS}",  # kept by every commit
    "episodes": """
        SELECT s.experiment_id, s.episode_id, s.task, s.skill_sequence, e.task_success, e.task_return,
               e.length, e.termination, e.skills, s.worker_id, s.env_name, s.env_version, s.seed,
               s.policy_id, s.policy_version, s.decision_id, s.initial_state, s.time AS started_at,
               e.time AS ended_at, e.num_chunks, e.checksum
        FROM episode_starts s JOIN episode_ends e USING (episode_id)
        WHERE episode_id IN (SELECT episode_id FROM episode_status WHERE problem IS NULL)""",
    "steps": f"""
        SELECT *, {_OBS} AS obs FROM steps_all
        WHERE episode_id IN (SELECT episode_id FROM episode_status WHERE problem IS NULL)""",
    "frames": "SELECT * FROM frames_all WHERE episode_id IN (SELECT episode_id FROM episode_status WHERE problem IS NULL)",
    "partial_episodes": """
        SELECT st.episode_id, st.problem, s.experiment_id, s.task, s.worker_id, s.started_at,
               e.termination, e.length, e.num_chunks
        FROM episode_status st
        LEFT JOIN (SELECT episode_id, any_value(experiment_id) AS experiment_id, any_value(task) AS task,
                          any_value(worker_id) AS worker_id, min(time) AS started_at
                   FROM episode_starts GROUP BY ALL) s USING (episode_id)
        LEFT JOIN (SELECT episode_id, any_value(termination) AS termination, any_value(length) AS length,
                          any_value(num_chunks) AS num_chunks
                   FROM episode_ends GROUP BY ALL) e USING (episode_id)
        WHERE st.problem IS NOT NULL""",  # one row per episode, however often it was started or ended
    "partial_steps": f"""
        SELECT *, {_OBS} AS obs FROM steps_all
        WHERE episode_id IN (SELECT episode_id FROM episode_status WHERE problem IS NOT NULL)""",
    # per episode and reward function version: did it fire, and first on which step
    "achievements": """
        SELECT dataset, experiment_id, episode_id, reward_fn, reward_version, bool_or(success) AS achieved,
               min(step) FILTER (WHERE success) AS first_step, count(*) AS steps, sum(reward) AS return
        FROM rewards GROUP BY ALL""",
}
VIEWS = sorted([*_TABLES, *_DERIVED])


def open_lake(settings, read_only: bool = True):
    """A DuckDB connection with the lake's views; locked down unless read_only=False (tools).
    LakeNotFound if there is no lake yet."""
    con = attach(settings, read_only=True)
    existing = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").fetchall()}
    if lake.OFFSETS not in existing:  # attached between the catalog's creation and its tables'
        con.close()
        raise LakeNotFound(f"no lake at {settings.lake_root} yet (its tables are being created)")
    for view, table in _TABLES.items():
        if table not in existing and table in lake.SCHEMAS:  # a lake older than the table: empty until written
            con.register("_empty", lake.SCHEMAS[table].empty_table())
            con.execute(f"CREATE TABLE {view} AS SELECT * FROM _empty")
            con.unregister("_empty")
            continue
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM lake.{table}")
    for view, query in _DERIVED.items():
        if view == "episode_status" and not episode_status.is_kept(con):
            query = episode_status.LIVE  # no writer that keeps the table has committed since
        con.execute(f"CREATE VIEW {view} AS {query}")
    if read_only:
        con.execute(f"SET allowed_directories = [{sql_str(data_path(settings))}]")
        con.execute(f"SET memory_limit = '{settings.sql_memory_bytes}B'")
        con.execute("SET temp_directory = ''")  # nowhere to spill past the cap (nor a directory to read)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def check_read_only(con, sql: str) -> None:
    """Refuse anything but reads of the lake's views, naming what was refused (infra.sql_guard)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyError(f"cannot parse the query: {exc}") from None
    if not statements:
        raise ReadOnlyError("no statement given")
    for statement in statements:
        kind, text = statement.type.name, statement.query
        if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs what it explains: that must be a read too
            text = _EXPLAIN.sub("", statement.query, count=1)
            inner = con.extract_statements(text)
            kind = "EXPLAIN " + ",".join(s.type.name for s in inner)
            if len(inner) == 1 and inner[0].type.name == "SELECT":
                kind = "SELECT"
        if kind != "SELECT":
            raise ReadOnlyError(f"the lake is read-only here: {kind} statements are refused "
                                "(only SELECT, EXPLAIN of a SELECT, DESCRIBE, SHOW, SUMMARIZE)")
        check_select(con, text, VIEWS)


def limits(con, settings):
    """Around running a user's query on `con` (from open_lake): the statement timeout, and the
    memory cap's error, as one-line QueryLimitErrors."""
    memory = settings.sql_memory_limit
    if memory.strip().endswith("%"):
        memory += f" of RAM, {settings.sql_memory_bytes / 2**30:.1f} GiB"
    return query_limits(con, settings.sql_timeout_s, memory)


def query(con, sql: str):
    """A DuckDB relation for one read-only query (run it inside `limits`)."""
    check_read_only(con, sql)
    return con.sql(sql)
