"""The Python API: `robolake.run` takes a run config file's keys and raises what the command prints;
`robolake.open_lake(...).sql` reads the lake as `robolake sql` does; `import robolake` is cheap.
(tests/unit/test_run.py runs an experiment through robolake.run.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import robolake
from robolake.cli import main
from robolake.commands.common import UsageError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "experiment.toml"


def test_the_python_api_takes_the_same_keys_and_raises_what_the_command_prints(tmp_path):
    with pytest.raises(UsageError, match=r"robolake.run\(\): unknown key 'iteratons' \(did you mean 'iterations'\?\)"):
        robolake.run(experiment="x", iteratons=2)
    bad = tmp_path / "bad.toml"
    bad.write_text('nope = 1\n')
    with pytest.raises(UsageError, match=rf"{bad}: unknown key 'nope'"):
        robolake.run(bad)
    with pytest.raises(UsageError, match=r"robolake.run\(\): train_steps must be an integer, got 1.5"):
        robolake.run(EXAMPLE, train_steps=1.5)
    with pytest.raises(UsageError, match="--external-learner needs a shared log"):  # the command's own checks
        robolake.run(EXAMPLE, external_learner=True, bus="memory", lake=f"file://{tmp_path}/lake")
    assert not (tmp_path / "lake").exists()


def test_importing_robolake_loads_nothing_heavy():
    heavy = ("torch", "mujoco", "duckdb", "pyarrow", "numpy", "infra.settings")
    code = f"import sys, robolake; robolake.run, robolake.open_lake; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_open_lake_queries_read_only(tmp_path):
    from infra.lake_catalog import LakeNotFound
    from infra.sql_guard import ReadOnlyError

    url = f"file://{tmp_path}/lake"
    assert main(["produce", "--synthetic", "3", "--lake", url, "--bus", "memory"]) == 0
    with robolake.open_lake(tmp_path / "lake") as lake:  # a directory, or a URL
        assert lake.sql("SELECT count(*) AS n FROM episodes").to_pylist() == [{"n": 3}]
        assert "episodes" in lake.views and "rewards" in lake.views
        for statement in ("DELETE FROM episodes", f"SELECT * FROM read_parquet('{tmp_path}/lake/data/**')",
                          f"COPY (SELECT 1) TO '{tmp_path}/out.csv'"):
            with pytest.raises(ReadOnlyError):
                lake.sql(statement)
        assert main(["produce", "--synthetic", "2", "--lake", url, "--bus", "memory"]) == 0
        assert lake.sql("SELECT count(*) AS n FROM episodes").to_pylist() == [{"n": 5}]  # sees what lands
    with robolake.open_lake(url) as lake:
        assert lake.sql("SELECT count(*) AS n FROM steps").column("n")[0].as_py() > 0
    with pytest.raises(LakeNotFound):
        robolake.open_lake(tmp_path / "no-lake")
