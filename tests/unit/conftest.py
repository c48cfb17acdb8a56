"""Unit tests run on the embedded default whatever the shell says: `make test` exports the test
stack's ROBOLAKE_* settings for the integration tests, and no unit test may reach a service."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def embedded_default():
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("ROBOLAKE_")]:
            patch.delenv(name)
        yield


@dataclass(frozen=True)
class SmallRun:
    root: Path    # small.toml, lake/ and report/
    lake: Path
    code: int     # what `robolake run` returned
    out: str      # what it printed


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> SmallRun:
    """One scripted `robolake run --config small.toml` (tests/run_checks.small_config_file) on the
    in-process bus, run once for the tests that read what it left (each minute-and-a-half run
    once, not once per test): test_run.py's report-and-rerun test, whose reruns change nothing
    (it asserts so), and test_recorded_model.py, which plays back its model replies."""
    pytest.importorskip("torch")
    from robolake.cli import main
    from tests.run_checks import small_config_file

    root = tmp_path_factory.mktemp("small-run")
    lake = root / "lake"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        for name in [n for n in os.environ if n.startswith("ROBOLAKE_")]:  # the embedded default, as above
            patch.delenv(name)
        code = main(["run", "--config", small_config_file(root / "small.toml", lake), "--bus", "memory"])
    return SmallRun(root, lake, code, out.getvalue())
