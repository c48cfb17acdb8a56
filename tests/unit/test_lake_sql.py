"""`robolake sql`: views over the lake, read-only three ways, output formats."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from infra.lake_sql import VIEWS, ReadOnlyError, open_lake, query
from robolake.cli import main
from robolake.settings import Settings


@pytest.fixture
def lake(tmp_path, monkeypatch):
    """A small local lake made the way a user makes one: `robolake produce` on the embedded default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    assert main(["produce", "--synthetic", "4", "--steps", "12", "--experiment", "exp-a"]) == 0
    return Settings.load()


def test_every_view_binds_on_an_empty_lake(tmp_path):
    con = open_lake(Settings.load(env={}, lake=f"file://{tmp_path}/nothing-yet"))
    for view in VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)


@pytest.mark.parametrize("statement", [
    "INSERT INTO episodes VALUES (1)",
    "COPY (SELECT 1) TO 'out.csv'",
    "ATTACH 'other.db'",
    "CREATE TABLE t (a INT)",
    "DROP VIEW episodes",
    "PRAGMA enable_profiling",
    "SET threads = 1",
    "INSTALL httpfs",
    "EXPORT DATABASE 'dump'",
    "SELECT 1; DROP VIEW steps",
])
def test_anything_but_a_read_is_refused(lake, statement):
    con = open_lake(lake)
    with pytest.raises(ReadOnlyError, match="read-only here: [A-Z_]+ statements are refused"):
        query(con, statement)
    assert con.execute("SELECT count(*) FROM episodes").fetchone() == (4,)


def test_queries_cannot_reach_files_outside_the_lake_or_unlock_that(lake):
    import duckdb

    con = open_lake(lake)
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        query(con, "SELECT * FROM read_csv('/etc/hostname')").fetchall()
    with pytest.raises(ReadOnlyError):
        query(con, "SET enable_external_access = true")
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")  # even bypassing our check


def test_cli_formats(lake, tmp_path, capsys):
    sql = "SELECT experiment_id, count(*) AS n, sum(length) AS steps FROM episodes GROUP BY ALL"
    assert main(["sql", sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"experiment_id": "exp-a", "n": 4, "steps": 48}
    assert main(["sql", sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ['"experiment_id","n","steps"', '"exp-a",4,48']
    assert main(["sql", sql]) == 0
    assert "exp-a" in capsys.readouterr().out
    out = tmp_path / "result.parquet"
    assert main(["sql", "SELECT * FROM steps", "--format", "parquet", "--output", str(out)]) == 0
    assert pq.read_table(out).num_rows == 48
    assert main(["sql", "SELECT count(*) FROM steps WHERE reward > 0", "--explain"]) == 0
    assert "UNGROUPED_AGGREGATE" in capsys.readouterr().out


def test_cli_errors_are_one_line(lake, capsys):
    assert main(["sql", "DELETE FROM steps"]) == 2
    assert "DELETE statements are refused" in capsys.readouterr().err
    assert main(["sql", "SELECT * FROM no_such_view"]) == 1
    assert "no_such_view" in capsys.readouterr().err
    assert main(["sql", "SELECT 1", "--format", "parquet"]) == 2
    assert "--format parquet needs --output" in capsys.readouterr().err


def test_hive_partitions_are_columns(lake):
    con = open_lake(lake)
    assert con.execute("SELECT DISTINCT experiment_id FROM steps").fetchall() == [("exp-a",)]
    assert con.execute("SELECT typeof(date) FROM episodes LIMIT 1").fetchone() == ("DATE",)


def test_producing_twice_in_two_processes_keeps_both_runs(tmp_path):
    """Offsets of the embedded bus continue across processes, so lake names never collide."""
    import subprocess
    import sys

    env = {"ROBOLAKE_BUS": "memory", "ROBOLAKE_LAKE": f"file://{tmp_path}/lake", "PATH": "/usr/bin:/bin"}
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-m", "robolake.cli", "produce", "--synthetic", "3", "--steps", "5",
                        "--seed", seed], env=env, check=True, capture_output=True)
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    con = open_lake(settings)
    assert con.execute("SELECT count(*), count(DISTINCT episode_id) FROM episodes").fetchone() == (6, 6)
    assert con.execute("SELECT count(*) FROM steps").fetchone() == (30,)
