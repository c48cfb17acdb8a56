"""Whether each episode is complete, kept as a lake table (`episode_status`) by the commits themselves.

An episode is complete when it has one start, one end, and chunks that match the end's num_chunks,
length and checksum exactly once. Of a decision's episode (decision_id, seed) run more than once (a
worker that died or lost its partitions mid-decision has the decision run again), only the first
complete run by end time counts; the later ones are repeats. Proving that in every query, for every
episode, was most of a query's time (an aggregate over every chunk and a SHA-256 per episode).
Instead each commit that adds rows of an episode recomputes its status with the same SQL, in the
same catalog transaction as the rows (infra/lake_catalog.py): from the commit's own rows for an
episode new to the lake, from the lake's rows otherwise. At every snapshot the table says exactly
what the full computation (`LIVE`) would. The other runs of a decision's episode are recomputed
with it, since a run that ended earlier can arrive later.

A lake made before the table gets it filled from all its rows by the first writer that opens it,
and is read with the full computation until then. So is a lake that an older writer (one that
does not keep the table) committed to, until the next commit, which finds that out and computes
the whole table again. A reader decides which when it opens: one opened before an older writer's
commit reads the table, without that commit's episodes, until a writer that keeps the table
commits (or the reader opens again). `robolake compact` computes the table again where its files
carry deletes, so they do not pile up with the rows each commit replaces.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from schemas import lake
from schemas.codec import CHECKSUM_SCHEME

REPEAT = "repeat of a decision episode"
SOURCES = (lake.EPISODE_STARTS, lake.EPISODE_ENDS, lake.CHUNKS)
_LISTED = 1000  # a commit's episodes named in the SQL itself; more are registered as a table and joined


def _base(prefix: str, scope: str) -> str:
    """Each episode's problem before the repeat rule, over the rows of `prefix`-named tables that
    `scope` (a WHERE clause, or '') selects."""
    return f"""
    WITH s AS (SELECT episode_id, count(*) AS n, any_value(experiment_id) AS experiment_id,
                      any_value(decision_id) AS decision_id, any_value(seed) AS seed
               FROM {prefix}{lake.EPISODE_STARTS} {scope} GROUP BY ALL),
         e AS (SELECT episode_id, count(*) AS n, any_value(experiment_id) AS experiment_id,
                      any_value(num_chunks) AS num_chunks, any_value(length) AS length,
                      any_value(checksum) AS checksum, min(time) AS ended_at
               FROM {prefix}{lake.EPISODE_ENDS} {scope} GROUP BY ALL),
         c AS (SELECT episode_id, count(*) AS n, any_value(experiment_id) AS experiment_id,
                      count(DISTINCT chunk) AS distinct_chunks, max(chunk) AS last_chunk, sum(rows) AS rows,
                      '{CHECKSUM_SCHEME}' || sha256(string_agg(digest, '' ORDER BY chunk)) AS checksum
               FROM {prefix}{lake.CHUNKS} {scope} GROUP BY ALL)
    SELECT episode_id, coalesce(s.experiment_id, e.experiment_id, c.experiment_id) AS experiment_id,
           s.decision_id, s.seed, e.ended_at, CASE
        WHEN s.n IS NULL THEN 'no start'
        WHEN e.n IS NULL THEN 'no end'
        WHEN s.n > 1 OR e.n > 1 THEN 'duplicate start or end'
        WHEN coalesce(c.n, 0) > coalesce(c.distinct_chunks, 0) THEN 'duplicate chunks'
        WHEN coalesce(c.distinct_chunks, 0) <> e.num_chunks OR coalesce(c.last_chunk, -1) <> e.num_chunks - 1
            THEN 'missing chunks'
        WHEN coalesce(c.rows, 0) <> e.length THEN 'length mismatch'
        WHEN coalesce(c.checksum, '{CHECKSUM_SCHEME}' || sha256('')) <> e.checksum THEN 'checksum mismatch'
    END AS problem
    FROM s FULL JOIN e USING (episode_id) FULL JOIN c USING (episode_id)"""


def _with_repeats(members: str) -> str:
    """`members` (rows of _base) with the repeat rule applied: the table's rows."""
    return f"""
    SELECT episode_id, experiment_id, CASE
        WHEN problem IS NULL AND decision_id IS NOT NULL AND row_number() OVER (
            PARTITION BY decision_id, seed, problem IS NULL ORDER BY ended_at, episode_id) > 1 THEN '{REPEAT}'
        ELSE problem END AS problem, decision_id, seed, ended_at
    FROM ({members})"""


# Every episode's row computed from all the rows, over the views (infra/lake_sql.py); LIVE is what
# the `episode_status` view shows when the table is missing or not kept up to date.
COMPUTED = _with_repeats(_base("", ""))
LIVE = f"SELECT episode_id, problem FROM ({COMPUTED})"


def is_kept(con) -> bool:
    """Whether the table says what the rows say: it exists and every commit since it was filled kept it
    (`lake_commits.status_at`, moved with `commits` by every writer that keeps it; an older writer
    moves only `commits`)."""
    try:  # binding fails without the table or the column (a lake from before them); ~5 ms, duckdb_tables() ~15
        return bool(con.execute(f"SELECT commits = status_at FROM lake.lake_commits, "
                                f"(SELECT count(*) FROM (SELECT 1 FROM lake.{lake.STATUS} LIMIT 0))").fetchone()[0])
    except Exception:
        return False


def rebuild(con) -> None:
    """In the caller's transaction: the whole table computed again from every row of the lake, and
    marked kept."""
    con.execute(f"DELETE FROM lake.{lake.STATUS}")
    con.execute(f"INSERT INTO lake.{lake.STATUS} BY NAME SELECT * FROM ({_with_repeats(_base('lake.', ''))}) "
                "ORDER BY episode_id")
    con.execute("UPDATE lake.lake_commits SET status_at = commits")


def refresh(con, tables: dict[str, pa.Table]) -> None:
    """In the caller's transaction, after `tables` were inserted into a kept table's lake (is_kept):
    the status of every episode they add rows to, and of the other runs of those episodes'
    decisions, computed again."""
    ids = [t.column("episode_id") for name, t in tables.items() if name in SOURCES and t.num_rows]
    if not ids:
        return
    touched, params = _listed(con, "_touched", pa.chunked_array(ids).unique())
    stored = con.execute(f"SELECT episode_id, decision_id FROM lake.{lake.STATUS} WHERE episode_id IN {touched}",
                         params).fetchall()
    # Kept, the table has a row for every episode with rows in the lake: one it lacks has no rows but
    # these, and is computed from them alone; only the others' earlier rows are read from the lake.
    for name in SOURCES:
        con.register(f"_new_{name}", tables.get(name, lake.SCHEMAS[name].empty_table()))
    base = con.execute(_base("_new_", "")).to_arrow_table()
    for name in SOURCES:
        con.unregister(f"_new_{name}")
    if stored:
        seen = pa.array([e for e, _ in stored], pa.string())
        known, values = _listed(con, "_known", seen)
        base = pa.concat_tables([
            base.filter(pc.invert(pc.is_in(base["episode_id"], seen))),
            con.execute(_base("lake.", f"WHERE episode_id IN {known}"), values * len(SOURCES)).to_arrow_table()
            .cast(base.schema)])
    # The decisions they are runs of now, and those the table has them under (a second start may name another).
    decisions = sorted({d for d in base.column("decision_id").to_pylist() if d is not None}
                       | {d for _, d in stored if d is not None})
    parts = [base]
    if decisions:  # their other runs, as they were before the repeat rule
        parts.append(con.execute(f"""
            SELECT episode_id, experiment_id, decision_id, seed, ended_at,
                   CASE WHEN problem = '{REPEAT}' THEN NULL ELSE problem END AS problem
            FROM lake.{lake.STATUS}
            WHERE decision_id IN ({', '.join('?' * len(decisions))}) AND episode_id NOT IN {touched}""",
                                 decisions + params).to_arrow_table().cast(base.schema))
    con.register("_members", pa.concat_tables(parts))
    rows = con.execute(_with_repeats("SELECT * FROM _members")).to_arrow_table()
    con.unregister("_members")
    replaced = [e for e, _ in stored] + (parts[1].column("episode_id").to_pylist() if decisions else [])
    if replaced:
        where, values = _listed(con, "_replaced", pa.array(replaced, pa.string()))
        con.execute(f"DELETE FROM lake.{lake.STATUS} WHERE episode_id IN {where}", values)
    con.register("_status", rows)
    con.execute(f"INSERT INTO lake.{lake.STATUS} BY NAME SELECT * FROM _status ORDER BY episode_id")
    for name in ("_status", "_touched", "_known", "_replaced"):
        con.unregister(name)


def _listed(con, name: str, ids: pa.Array) -> tuple[str, list]:
    """(SQL for `IN`, its parameters): the values themselves, which DuckDB pushes into the scans, or
    for many, a table registered as `name`."""
    if len(ids) <= _LISTED:
        return f"({', '.join('?' * len(ids))})", ids.to_pylist()
    con.register(name, pa.table({"episode_id": ids}))
    return f"(SELECT episode_id FROM {name})", []
