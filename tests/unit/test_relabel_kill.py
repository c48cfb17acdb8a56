"""A relabel killed at any point (SIGKILL) ends, on rerun, with the rows of an uninterrupted run,
and no query ever sees an episode half-relabelled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from infra.lake_sql import open_lake
from infra.settings import Settings
from robolake.cli import main

# The child registers a function that, in the run to be killed, stalls after its first batch,
# so a kill after the first commit lands before the last one.
CHILD = """
import os, sys, time
from producers.sim import rewards

calls = 0
def slow(obs):
    global calls
    calls += 1
    if calls > 1:
        time.sleep(float(os.environ.get("STALL_S", "0")))
    return obs[:, 0] > 0

rewards.register("slow", 1, "wait", slow)
from robolake.cli import main
sys.exit(main(sys.argv[1:]))
"""
FUNCTIONS = ["slow", "reach_red", "place_red_on_blue@1", "place_red_on_blue@2", "two_block_tower"]


def _child(settings, dataset: str, stall_s: float = 0.0) -> subprocess.Popen:
    args = ["relabel", "--rewards", *FUNCTIONS, "--name", dataset, "--batch-steps", "1",
            "--lake", settings.lake, "--bus", "memory"]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=os.getcwd(),
                            env={**os.environ, "STALL_S": str(stall_s)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _query(settings, sql: str):
    con = open_lake(settings)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _rows(settings, dataset: str):
    return _query(settings, "SELECT episode_id, step, reward_fn, reward_version, source_hash, success, reward "
                            f"FROM rewards WHERE dataset = '{dataset}' ORDER BY ALL")


def _half_relabelled(settings) -> int:
    return _query(settings, "SELECT count(*) FROM achievements a JOIN episodes e USING (episode_id) "
                            "WHERE a.steps <> e.length")[0][0]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    url = f"file://{tmp_path_factory.mktemp('kill')}/lake"
    assert main(["produce", "--episodes", "4", "--task", "reach_red", "--lake", url, "--bus", "memory"]) == 0
    return Settings.load(env={}, lake=url, bus="memory")


@pytest.fixture(scope="module")
def uninterrupted(lake):
    assert _child(lake, "uninterrupted").wait(timeout=120) == 0
    return _rows(lake, "uninterrupted")


@pytest.mark.parametrize("kill_after", ["first commit", "1.0s", "0.0s"])
def test_kill_and_rerun_ends_with_the_rows_of_an_uninterrupted_run(lake, uninterrupted, kill_after):
    dataset = "killed-" + kill_after.replace(" ", "-")
    child = _child(lake, dataset, stall_s=30)
    if kill_after == "first commit":
        deadline = time.monotonic() + 60
        while not _rows(lake, dataset) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
    else:
        time.sleep(float(kill_after[:-1]))
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = _rows(lake, dataset)
    assert _half_relabelled(lake) == 0
    if kill_after == "first commit":
        assert partial, "the kill was meant to land after a commit"
    rerun = _child(lake, dataset)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read().decode()[-2000:]
    assert len(_rows(lake, dataset)) > len(partial)
    assert _rows(lake, dataset) == uninterrupted
    assert _half_relabelled(lake) == 0
    # lineage covers every row: the rerun's event adopts the killed run's rows (found by relabel_id)
    events = [r for (payload,) in _query(lake, "SELECT payload_json FROM events WHERE type = 'relabel.completed'")
              for r in json.loads(payload) if r["dataset"] == dataset]
    runs = dict(_query(lake, f"SELECT relabel_id, count(*) FROM rewards WHERE dataset = '{dataset}' GROUP BY ALL"))
    adopted = {a["relabel_id"] for e in events for a in e["adopted"]}
    assert set(runs) == {e["relabel_id"] for e in events} | adopted
    assert sum(e["rows"] for e in events) + sum(a["rows"] for e in events for a in e["adopted"]) == sum(runs.values())
    if partial:
        assert len(runs) == 2 and len(adopted) == 1
