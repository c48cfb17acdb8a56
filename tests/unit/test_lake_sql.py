"""`robolake sql`: views over the lake, read-only by how the lake is opened, output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infra.lake_catalog import LakeNotFound, LakeTables
from infra.lake_sql import VIEWS, ReadOnlyError, open_lake, query
from infra.settings import Settings
from robolake.cli import main


@pytest.fixture
def lake(tmp_path, monkeypatch):
    """A small local lake made the way a user makes one: `robolake produce` on the embedded default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    assert main(["produce", "--synthetic", "4", "--steps", "12", "--experiment", "exp-a"]) == 0
    return Settings.load()


def test_no_lake_is_a_clear_error_and_an_empty_lake_binds_every_view(tmp_path):
    missing = Settings.load(env={}, lake=f"file://{tmp_path}/nothing-yet")
    with pytest.raises(LakeNotFound, match="no lake at"):
        open_lake(missing)
    assert not (tmp_path / "nothing-yet").exists(), "a reader creates nothing"
    LakeTables(missing, "test").close()  # what a sink does first
    con = open_lake(missing)
    for view in VIEWS:
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 1) TO '{root}/out.csv'",
    "COPY (SELECT * FROM lake.episode_starts) TO '{root}/data/main/episode_starts/forged.parquet'",
    "EXPORT DATABASE '{root}/dump'",
    "ATTACH '{root}/catalog.sqlite' AS cat (TYPE sqlite)",
    "ATTACH '{root}/other.duckdb' AS other",
    "INSERT INTO lake.episode_starts SELECT * FROM lake.episode_starts",
    "DELETE FROM lake.steps",
    "CREATE TABLE lake.forged (a INT)",
    "CALL ducklake_merge_adjacent_files('lake')",
    "CHECKPOINT lake",
    "SET enable_external_access = true",
    "SELECT * FROM read_text('{root}/catalog.sqlite')",
])
def test_the_connection_itself_cannot_write_even_past_the_statement_check(lake, statement):
    """Executed directly, as if the statement check had a hole: the read-only attachment, the
    lost file access and the locked configuration still stop it, and nothing changes."""
    import duckdb

    before = _state(lake)
    con = open_lake(lake)
    try:
        con.execute(statement.format(root=lake.lake_root)).fetchall()
    except duckdb.Error:
        pass
    assert con.execute("SELECT count(*) FROM episodes").fetchone() == (4,)
    con.close()
    after = _state(lake)
    assert after["snapshots"] == before["snapshots"] and after["catalog"] == before["catalog"]
    assert after["counts"] == before["counts"]
    # At most new files that no table lists (DuckLake reads only listed files; compact deletes them).
    assert all(f.startswith("data/") for f in set(after["files"]) - set(before["files"]))
    assert all(after["files"][f] == digest for f, digest in before["files"].items()), "a data file changed"


def _state(settings) -> dict:
    """Everything a write could change: catalog bytes, snapshots, every file's digest, row counts."""
    import hashlib
    from pathlib import Path

    root = Path(settings.lake_root)
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file() and "catalog.sqlite" not in p.name}
    con = open_lake(settings, read_only=False)  # through DuckDB's SQLite: one SQLite per open file
    catalog = "__ducklake_metadata_lake"
    state = {"files": files,
             "catalog": con.execute(f"SELECT (SELECT max(snapshot_id) FROM {catalog}.ducklake_snapshot), "
                                    f"(SELECT count(*) FROM {catalog}.ducklake_data_file)").fetchone(),
             "snapshots": con.execute("SELECT max(snapshot_id) FROM lake.snapshots()").fetchone(),
             "counts": [con.execute(f"SELECT count(*) FROM {v}").fetchone() for v in VIEWS]}
    con.close()
    return state


def test_queries_cannot_reach_files_outside_the_lake_or_unlock_that(lake):
    import duckdb

    con = open_lake(lake)
    with pytest.raises(ReadOnlyError, match=r"read_csv\(\) is refused"):
        query(con, "SELECT * FROM read_csv('/etc/hostname')")
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        con.execute("SELECT * FROM read_csv('/etc/hostname')").fetchall()  # even bypassing our check
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
    assert main(["sql", "SELECT * FROM no_such_view"]) == 2
    assert "table no_such_view is refused (only the lake's views can be read: achievements, " in capsys.readouterr().err
    assert main(["sql", "SELECT no_such_column FROM steps"]) == 1
    assert "no_such_column" in capsys.readouterr().err
    assert main(["sql", "SELECT 1", "--format", "parquet"]) == 2
    assert "--format parquet needs --output" in capsys.readouterr().err


def test_data_files_are_partitioned_by_experiment(lake):
    con = open_lake(lake)
    assert con.execute("SELECT DISTINCT experiment_id FROM steps").fetchall() == [("exp-a",)]
    paths = [r[0] for r in con.execute("SELECT data_file FROM ducklake_list_files('lake', 'steps')").fetchall()]
    assert paths and all("experiment_id=exp-a" in p for p in paths)


def test_producing_twice_in_two_processes_keeps_both_runs(tmp_path):
    """Each process's in-process bus is a log of its own: its offsets never meet another's."""
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


def test_a_moved_lake_opens_with_robolake_sql_and_with_a_plain_duckdb(tmp_path, capsys, monkeypatch):
    import shutil

    import duckdb

    from infra.duck import load_extension
    from robolake.cli import main

    assert main(["produce", "--synthetic", "3", "--steps", "50", "--lake", f"file://{tmp_path}/lake", "--bus", "memory"]) == 0
    (tmp_path / "elsewhere").mkdir()
    moved = Path(shutil.move(tmp_path / "lake", tmp_path / "elsewhere" / "lake"))
    assert list((moved / "data").rglob("*.parquet")), "the rows are in data files, not inlined in the catalog"
    capsys.readouterr()
    # sum(step) reads the data files (a count is answered from the catalog's statistics alone)
    assert main(["sql", "SELECT sum(step) AS s FROM steps", "--format", "csv", "--lake", f"file://{moved}"]) == 0
    assert capsys.readouterr().out.split() == ['"s"', str(3 * sum(range(50)))]
    monkeypatch.chdir(moved)  # a plain DuckDB in the lake's directory: no robolake, no override of the data path
    con = duckdb.connect()
    load_extension(con, "ducklake")
    load_extension(con, "sqlite_scanner")
    con.execute("ATTACH 'ducklake:sqlite:catalog.sqlite' AS lake (READ_ONLY)")
    assert con.execute("SELECT sum(step) FROM lake.steps").fetchone()[0] == 3 * sum(range(50))
