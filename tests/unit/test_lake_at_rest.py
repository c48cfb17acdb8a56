"""Damage at rest: bytes of a steps data file changed after the commit. `robolake verify` finds
the episodes whose steps no longer match their recorded digests, and a read that hits a file that
no longer decodes fails with one line naming the file (not NaN, not a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings
from robolake.cli import main


@pytest.fixture
def lake(tmp_path, monkeypatch) -> Path:
    """Three episodes in a local lake, its Parquet pages uncompressed (so a flipped byte still decodes)."""
    from infra.lake_catalog import LakeTables

    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    tables = LakeTables(Settings.load(), "test")
    tables.con.execute("CALL lake.set_option('parquet_compression', 'uncompressed')")
    tables.close()
    assert main(["produce", "--synthetic", "3", "--steps", "120", "--experiment", "exp-a"]) == 0
    assert main(["produce", "--synthetic", "1", "--steps", "120", "--experiment", "exp-b"]) == 0
    return tmp_path / "lake"


def _steps_file(lake: Path, experiment: str) -> Path:
    files = list((lake / "data").rglob(f"steps/experiment_id={experiment}/*.parquet"))
    assert len(files) == 1, files
    return files[0]


def test_an_intact_lake_verifies(lake, capsys):
    assert main(["verify"]) == 0
    assert "4 episodes verified" in capsys.readouterr().out


def test_verify_names_the_episode_whose_stored_steps_changed(lake, capsys):
    import pyarrow.parquet as pq

    path = _steps_file(lake, "exp-a")
    meta = pq.ParquetFile(path).metadata.row_group(0)
    column = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema.startswith("observation"))
    middle = column.data_page_offset + column.total_compressed_size // 2  # inside the values, past the levels
    data = bytearray(path.read_bytes())
    data[middle:middle + 4] = bytes(b ^ 0x5A for b in data[middle:middle + 4])
    path.write_bytes(bytes(data))  # same size, still decodes: only a digest can tell
    assert main(["sql", "SELECT count(*) FROM steps"]) == 0
    capsys.readouterr()

    assert main(["verify"]) == 1
    out, err = capsys.readouterr()
    damaged = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(damaged) == 1 and "steps differ from its digest" in damaged[0] and str(path) in damaged[0]
    assert "1 of 4 episodes do not match" in err and len(err.strip().splitlines()) == 1
    assert main(["verify", "--experiment", "exp-b"]) == 0, "the filter checks only that experiment"


def test_verify_names_the_episode_whose_kept_status_its_rows_do_not_bear_out(lake, capsys):
    from infra.lake_catalog import attach
    from tests.lake_helpers import count

    con = attach(Settings.load(), read_only=False)
    episode = con.execute("SELECT min(episode_id) FROM lake.episode_status WHERE experiment_id = 'exp-b'").fetchone()[0]
    con.execute("UPDATE lake.episode_status SET problem = 'no end' WHERE episode_id = ?", [episode])
    con.close()
    assert count(Settings.load(), "SELECT count(*) FROM episodes") == 3, "the table is what the views read"

    assert main(["verify"]) == 1
    out, err = capsys.readouterr()
    damaged = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(damaged) == 1 and episode in damaged[0]
    assert "episode_status says no end, its rows say complete" in damaged[0]
    assert main(["verify", "--experiment", "exp-a"]) == 0


def test_a_read_that_hits_an_undecodable_file_is_one_line_naming_it(lake, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _steps_file(lake, "exp-b")
    table = pq.read_table(path)  # one reward changed, written back under the same name
    rewards = table["reward"].to_pylist()
    rewards[3] = 99.0
    table = table.set_column(table.schema.get_field_index("reward"), table.schema.field("reward"),
                             pa.array(rewards, pa.float32()))
    pq.write_table(table, path)  # valid Parquet, but not the file the catalog recorded: no read decodes it
    assert main(["sql", "SELECT sum(reward) FROM steps"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"data file {path} is damaged" in err
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    unreadable = [line for line in out.splitlines() if "unreadable" in line]
    assert len(unreadable) == 1 and str(path) in unreadable[0], "only exp-b's one episode is in that file"
