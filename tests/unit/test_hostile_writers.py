"""Two writers where one is meant: a second trainer of a run, a curriculum beside a running
experiment, and a lake that cannot be written (a full disk) all end at once with one line."""

from __future__ import annotations

import errno

import pytest

from robolake.cli import main
from robolake.settings import Settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    return Settings.load()


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_second_trainer_of_a_run_refuses_before_any_work(settings, tmp_path, capsys):
    pytest.importorskip("torch", reason="the learner extra is not installed")
    from infra.lake_catalog import only_one

    with only_one(settings, "train-r1"):
        assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "r1"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "run r1 is being trained by another process" in line
    assert not (tmp_path / "lake" / "checkpoints").exists()


def test_curriculum_once_refuses_while_the_experiment_runs(settings, capsys):
    from infra.lake_catalog import only_one

    with only_one(settings, "run-exp"):
        assert main(["curriculum", "--once", "--experiment", "exp"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "`robolake run` of experiment 'exp' is running" in line
