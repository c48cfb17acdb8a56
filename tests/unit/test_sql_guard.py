"""User SQL over the lake (`robolake sql`, the dashboard): an allowlist of views and functions,
a statement timeout and a memory cap. One lake with history (three runs, compacted, and one more) serves every
test: a refused statement must leave every file of it byte-identical, catalog included."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from infra.lake_sql import QueryLimitError, ReadOnlyError, limits, open_lake, query
from infra.settings import Settings
from infra.sql_guard import allowed_functions
from robolake.cli import main

# 192^5 rows: minutes of work, unless the timeout ends it
CROSS_JOIN = "SELECT sum(a.step + b.step + c.step + d.step + e.step) FROM steps a, steps b, steps c, steps d, steps e"
# a list of 192^4 values, far past a small memory cap
HUNGRY = "SELECT max(len(l)) FROM (SELECT list(a.step + b.step + c.step + d.step) AS l FROM steps a, steps b, steps c, steps d)"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("ROBOLAKE_BUS", "memory")
        mp.setenv("ROBOLAKE_LAKE", f"file://{root}/lake")
        def produce(seed: str) -> None:
            assert main(["produce", "--synthetic", "4", "--steps", "12", "--experiment", "exp-a", "--seed", seed]) == 0

        for seed in "123":
            produce(seed)
        assert main(["compact"]) == 0  # the replaced files stay for --keep-seconds: history to clean up
        produce("4")
        (root / ".tmp").mkdir()
        (root / ".tmp" / "secret.txt").write_text("secret")
        settings = Settings.load()
        open_lake(settings).close()  # a reader's first visit adds the catalog's WAL files: from here on, nothing changes
        yield settings


def _files(settings) -> dict[str, str]:
    root = Path(settings.lake_root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


C = "{root}/catalog.sqlite"
HOSTILE = [  # (statement, what the one-line refusal names)
    # the three reported: serialized SQL cleaning up files still in the catalog's history,
    # a checkpoint writing Parquet files, reading the catalog itself
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM ducklake_cleanup_old_files"
     "(''lake'', cleanup_all => true)'))", "json_execute_serialized_sql()"),
    ("SELECT * FROM checkpoint('lake')", "checkpoint()"),
    (f"SELECT octet_length(content) FROM read_blob('{C}')", "read_blob()"),
    # reading files, the data files included, or the catalog's tables
    ("SELECT content FROM read_text('.tmp/secret.txt')", "read_text()"),
    ("SELECT * FROM read_parquet('{root}/data/**/*.parquet')", "read_parquet()"),
    ("SELECT * FROM '{root}/data/main/steps/**/*.parquet'", "table {root}/data/main/steps/**/*.parquet"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv()"),
    ("SELECT * FROM glob('{root}/**')", "glob()"),
    ("SELECT * FROM parquet_metadata('{root}/data/**/*.parquet')", "parquet_metadata()"),
    (f"SELECT * FROM sqlite_scan('{C}', 'ducklake_data_file')", "sqlite_scan()"),
    ("SELECT * FROM __ducklake_metadata_lake.ducklake_data_file", "table __ducklake_metadata_lake.ducklake_data_file"),
    ("SELECT * FROM lake.steps", "table lake.steps"),
    ("SELECT * FROM information_schema.tables", "table information_schema.tables"),
    ("SELECT * FROM duckdb_databases()", "duckdb_databases()"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings()"),
    ("SELECT * FROM which_secret('s3://robolake/x', 's3')", "which_secret()"),
    ("SHOW databases", "SHOW databases"),
    # SQL given as text, planned or run
    (f"SELECT * FROM query('SELECT * FROM read_blob(''{C}'')')", "query()"),
    ("SELECT * FROM query_table('steps')", "query_table()"),
    ("SELECT json_serialize_plan('SELECT * FROM read_blob(''x'')')", "json_serialize_plan()"),
    ("SELECT json_deserialize_sql(json_serialize_sql('SELECT 1'))", "json_deserialize_sql()"),
    # the lake's maintenance, even its read-only functions (table functions all)
    ("SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)", "ducklake_cleanup_old_files()"),
    ("SELECT * FROM ducklake_merge_adjacent_files('lake')", "ducklake_merge_adjacent_files()"),
    ("SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())", "ducklake_expire_snapshots()"),
    ("SELECT * FROM ducklake_flush_inlined_data('lake')", "ducklake_flush_inlined_data()"),
    ("SELECT * FROM ducklake_list_files('lake', 'steps')", "ducklake_list_files()"),
    ("SELECT * FROM lake.snapshots()", "lake.snapshots()"),
    # nested: subqueries, CTEs, lateral joins, set operations, scalar subqueries, windows, EXPLAIN, DESCRIBE
    ("SELECT * FROM episodes WHERE episode_id IN (SELECT content FROM read_text('.tmp/secret.txt'))", "read_text()"),
    ("WITH c AS (SELECT * FROM checkpoint('lake')) SELECT * FROM c", "checkpoint()"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r, glob('/*') WHERE n < 3) SELECT * FROM r", "glob()"),
    (f"SELECT * FROM episodes e, LATERAL (SELECT size FROM read_blob('{C}')) b", "read_blob()"),
    ("SELECT episode_id FROM episodes UNION ALL SELECT file FROM glob('{root}/*')", "glob()"),
    ("SELECT (SELECT count(*) FROM ducklake_cleanup_old_files('lake', cleanup_all => true))", "ducklake_cleanup_old_files()"),
    ("SELECT sum(reward) OVER (PARTITION BY (SELECT 1 FROM checkpoint('lake'))) FROM steps", "checkpoint()"),
    ("SELECT * FROM steps WHERE EXISTS (FROM query('CHECKPOINT'))", "query()"),
    ("SELECT * FROM (WITH duckdb_settings AS (SELECT 1) FROM duckdb_settings), duckdb_settings", "table duckdb_settings"),
    ("EXPLAIN ANALYZE SELECT * FROM checkpoint('lake')", "checkpoint()"),
    (f"DESCRIBE SELECT * FROM read_blob('{C}')", "read_blob()"),
    ("SUMMARIZE SELECT * FROM read_text('.tmp/secret.txt')", "read_text()"),
    (f"PIVOT (FROM read_blob('{C}')) ON size IN (1) USING count(*)", "read_blob()"),
    # functions off the list: configuration, session state, side effects, pg macros, qualified names
    ("SELECT current_setting('allowed_directories')", "current_setting()"),
    ("SELECT getvariable('x')", "getvariable()"),
    ("SELECT getenv('HOME')", "getenv()"),
    ("SELECT nextval('s')", "nextval()"),
    ("SELECT write_log('x')", "write_log()"),
    ("SELECT sleep_ms(100000)", "sleep_ms()"),
    ("SELECT get_block_size('lake')", "get_block_size()"),  # a macro over a table function
    ("SELECT pg_get_viewdef(1)", "pg_get_viewdef()"),
    ("SELECT pg_catalog.pg_get_viewdef(1)", "pg_catalog.pg_get_viewdef()"),
    ("SELECT memory.main.abs(-1)", "memory.main.abs()"),
    ("SELECT * FROM range(3)", "range()"),  # pure, but a table function: only as a scalar
    ("SELECT * FROM unnest([1, 2])", "unnest()"),
    # statements that are no SELECT (macros included)
    ("CREATE MACRO m() AS TABLE SELECT * FROM read_blob('x')", "CREATE statements"),
    ("CALL ducklake_merge_adjacent_files('lake')", "CALL statements"),
    ("CHECKPOINT lake", "CALL statements"),
    ("COPY (SELECT * FROM steps) TO '{root}/data/main/steps/forged.parquet'", "COPY statements"),
    ("EXPORT DATABASE '{root}/dump'", "EXPORT statements"),
    (f"ATTACH '{C}' AS cat (TYPE sqlite)", "ATTACH statements"),
    ("DETACH lake", "DETACH statements"),
    ("PRAGMA enable_profiling", "PRAGMA statements"),
    ("SET enable_external_access = true", "SET statements"),
    ("RESET lock_configuration", "SET statements"),
    ("INSTALL httpfs", "LOAD statements"),
    ("LOAD httpfs", "LOAD statements"),
    ("DELETE FROM steps_all", "DELETE statements"),
    ("-- comment\nDELETE FROM steps_all", "DELETE statements"),
    ("INSERT INTO episodes VALUES (1)", "INSERT statements"),
    ("WITH x AS (SELECT 1) INSERT INTO episode_starts SELECT * FROM x", "INSERT statements"),
    ("UPDATE lake.steps SET reward = 1", "UPDATE statements"),
    ("CREATE TABLE t (a INT)", "CREATE statements"),
    ("DROP VIEW episodes", "DROP statements"),
    ("SET VARIABLE x = 1", "SET statements"),
    ("/* a comment */ EXPLAIN ANALYZE INSERT INTO steps_all SELECT * FROM steps_all", "EXPLAIN INSERT statements"),
    ("SELECT 1; DROP VIEW steps", "DROP statements"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/data/x.parquet'", "EXPLAIN COPY statements"),
]


@pytest.mark.parametrize("statement, refused", HOSTILE, ids=[f"{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_statements_are_refused_in_one_line_and_change_no_byte(lake, statement, refused):
    root = lake.lake_root
    before = _files(lake)
    con = open_lake(lake)
    with pytest.raises(ReadOnlyError) as error:
        with limits(con, lake):
            query(con, statement.format(root=root)).fetchall()
    message = str(error.value)
    assert "\n" not in message
    assert re.search(r"(read-only here: |cannot check the query)" + re.escape(refused.format(root=root)), message)
    con.close()
    assert _files(lake) == before


def test_the_table_of_hostile_statements_covers_the_issue():
    assert len(HOSTILE) >= 40


def test_the_three_reported_attacks_get_past_duckdbs_own_sandbox(lake, tmp_path):
    """Why the allowlist: run directly on the locked-down connection, DuckLake's cleanup deletes
    files, a checkpoint writes some, and the catalog reads like any file."""
    import shutil

    import duckdb

    def run_unchecked(name: str, sql: str, fresh: bool = False) -> tuple[set, set]:
        copy = lake.replace(lake=f"file://{tmp_path / name}")
        if fresh:  # one run: its small tables still inline in the catalog
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("ROBOLAKE_LAKE", copy.lake)
                assert main(["produce", "--synthetic", "2", "--steps", "5"]) == 0
        else:
            shutil.copytree(lake.lake_root, copy.lake_root)
        open_lake(copy).close()
        before, con = _files(copy), open_lake(copy)
        try:
            con.execute(sql.format(root=copy.lake_root)).fetchall()
        except duckdb.Error:
            pass  # each fails on the read-only catalog: after the files changed
        con.close()
        after = _files(copy)
        return set(before) - set(after), set(after) - set(before)

    deleted, _ = run_unchecked("cleanup", HOSTILE[0][0])
    assert deleted, "files the catalog's history still lists were deleted"
    _, written = run_unchecked("checkpoint", HOSTILE[1][0], fresh=True)
    assert written, "a checkpoint wrote files"
    con = open_lake(lake)
    assert con.execute(HOSTILE[2][0].format(root=lake.lake_root)).fetchone()[0] > 0, "the catalog reads like any file"


@pytest.mark.parametrize("sql", [
    "SELECT task, count(*) AS n, avg(task_success::INT) AS success, sum(length) FROM episodes GROUP BY ALL ORDER BY ALL",
    "SELECT episode_id, step, sum(reward) OVER (PARTITION BY episode_id ORDER BY step) AS ret, "
    "row_number() OVER w, lag(reward) OVER w, first_value(step) OVER w FROM steps WINDOW w AS (PARTITION BY episode_id ORDER BY step)",
    "WITH r AS (SELECT episode_id, max(step) AS last FROM steps GROUP BY ALL) "
    "SELECT e.task, r.last FROM episodes e JOIN r USING (episode_id) QUALIFY row_number() OVER (ORDER BY r.last) = 1",
    "SELECT list(step ORDER BY step)[1:3], list_transform([1, 2], lambda x: x * 2), len([1, 2]), "
    "list_filter(list(reward), lambda r: r > 0) FROM steps GROUP BY episode_id",
    "SELECT {'a': 1, 'b': [1, 2]}.b[2], struct_pack(x := 1).x, map([1], ['a'])[1], [1, 2, 3][-1]",
    "SELECT date_trunc('hour', started_at), strftime(started_at, '%Y'), epoch_ms(started_at), "
    "started_at + INTERVAL 1 DAY, extract(year FROM started_at), age(ended_at, started_at) FROM episodes",
    "SELECT regexp_matches(episode_id, '^ep'), regexp_replace(task, 'a', 'b'), episode_id LIKE '%', "
    "episode_id ILIKE 'X%', episode_id SIMILAR TO '.*', lower(task) || upper(task), split_part(task, '_', 1) FROM episodes",
    "SELECT quantile_cont(reward, 0.5), median(reward), stddev(reward), arg_max(step, reward), histogram(step // 4), "
    "count(*) FILTER (WHERE reward > 0), approx_count_distinct(episode_id), string_agg(DISTINCT episode_id, ',') FROM steps",
    "SELECT type, count(*), any_value(payload::JSON ->> '$.type') FROM events GROUP BY ALL",
    "SELECT unnest([1, 2]) AS x, unnest(generate_series(1, 2)), range(3), coalesce(NULL, 1), nullif(1, 2), "
    "CASE WHEN random() < 2 THEN 'yes' END, greatest(1, 2), round(pi(), 2), hash(1) IS NOT NULL",
    "SELECT * FROM steps a JOIN steps b ON a.episode_id = b.episode_id AND a.step + 1 = b.step, "
    "LATERAL (SELECT max(step) AS m FROM steps c WHERE c.episode_id = a.episode_id) LIMIT 3",
    "SELECT episode_id FROM episodes UNION SELECT episode_id FROM partial_episodes EXCEPT SELECT 'x'",
    "FROM episode_status SELECT problem, count(*) GROUP BY ROLLUP (problem) HAVING grouping(problem) >= 0",
    "SELECT COLUMNS('^(step|reward)$') FROM steps USING SAMPLE 10 ROWS",
    "PIVOT episodes ON task IN ('pick', 'place') USING count(*)",
    "DESCRIBE steps",
    "SUMMARIZE SELECT reward FROM steps",
    "SHOW TABLES",
    "EXPLAIN SELECT count(*) FROM steps",
    "SELECT * FROM (VALUES (1, 'a')) t(x, y), achievements, rewards, frames, chunks, lake_offsets LIMIT 1",
])
def test_ordinary_analytics_still_runs(lake, sql):
    con = open_lake(lake)
    with limits(con, lake):
        query(con, sql).fetchall()
    con.close()


def test_the_vetted_functions_are_builtins_that_read_no_table_and_hold_no_state():
    import duckdb

    allowed = allowed_functions()
    assert {"sum", "row_number", "regexp_matches", "list_transform", "json_extract", "date_trunc"} <= allowed
    con = duckdb.connect(config={"autoload_known_extensions": "false"})
    macros = con.execute("SELECT function_name, macro_definition FROM duckdb_functions() "
                         "WHERE function_type = 'macro'").fetchall()
    assert not [name for name, body in macros if name in allowed and re.search(r"\bFROM\b", body, re.I)]
    volatile = {r[0] for r in con.execute("SELECT function_name FROM duckdb_functions() WHERE has_side_effects").fetchall()}
    assert allowed & volatile <= {"random", "uuid", "uuidv4", "uuidv7", "gen_random_uuid"}


def test_a_query_past_the_timeout_ends_in_one_line_and_the_connection_lives_on(lake):
    settings = lake.replace(sql_timeout_s=1.0)
    con = open_lake(settings)
    started = time.monotonic()
    with pytest.raises(QueryLimitError, match=r"^query exceeded the statement timeout of 1 s \(setting sql_timeout_s"):
        with limits(con, settings):
            query(con, CROSS_JOIN).fetchall()
    assert time.monotonic() - started < 5
    with limits(con, settings):
        assert query(con, "SELECT count(*) FROM steps").fetchone() == (192,)


def test_a_query_past_the_memory_cap_ends_in_one_line(lake):
    settings = lake.replace(sql_memory_limit="64MB")
    con = open_lake(settings)
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0].startswith("61.")  # MiB
    with pytest.raises(QueryLimitError) as error:
        with limits(con, settings):
            query(con, HUNGRY).fetchall()
    assert str(error.value) == ("query exceeded the memory limit of 64MB (setting sql_memory_limit, "
                                "ROBOLAKE_SQL_MEMORY_LIMIT or --memory-limit)")


def test_the_cli_ends_a_query_past_its_limits_with_one_line_and_exit_1(lake, capsys, monkeypatch):
    started = time.monotonic()
    assert main(["sql", "--timeout", "1", CROSS_JOIN]) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "statement timeout of 1 s" in err
    monkeypatch.setenv("ROBOLAKE_SQL_MEMORY_LIMIT", "64MB")
    assert main(["sql", HUNGRY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory limit of 64MB" in err
    assert main(["sql", "--memory-limit", "lots", "SELECT 1"]) == 2
    assert "sql_memory_limit must be a size" in capsys.readouterr().err
    assert main(["sql", "SELECT * FROM read_blob('x')"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_dashboard_answers_a_query_past_the_timeout_with_400(lake, monkeypatch):
    from robolake.report import dashboard

    monkeypatch.setitem(dashboard._API, "/api/slow", lambda con, params: {"rows": con.execute(CROSS_JOIN).fetchall()})
    server = dashboard.serve(lake.replace(sql_timeout_s=1.0), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/api/slow", timeout=30)
        assert answer.value.code == 400
        assert "statement timeout of 1 s" in json.loads(answer.value.read())["error"]
    finally:
        server.shutdown()
        server.server_close()
