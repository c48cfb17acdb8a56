"""`robolake relabel` on the embedded default: rows, views, lineage, incremental, versions, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from consumers.lake_sink.sink import land
from infra.lake_sql import open_lake
from infra.settings import Settings
from learner.relabel import RelabelError, relabel, resolve
from producers.sim.rewards import REWARDS, register
from robolake.cli import main
from schemas.version import VERSION
from tests.lake_helpers import rows

N_FUNCTIONS = len(REWARDS)


def _lake(path, *produce) -> Settings:
    url = f"file://{path}/lake"
    for args in produce:
        assert main(["produce", *args, "--lake", url, "--bus", "memory"]) == 0
    return Settings.load(env={}, lake=url, bus="memory")


def _cli(settings, *args) -> int:
    return main(["relabel", *args, "--lake", settings.lake, "--bus", "memory"])


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Two simulated episodes (noisy placing) and two synthetic ones (another environment)."""
    return _lake(tmp_path_factory.mktemp("relabel"),
                 ["--episodes", "2", "--task", "place_red_on_blue", "--noise", "0.1", "--steps-per-skill", "25"],
                 ["--synthetic", "2", "--steps", "10"])


def test_every_function_over_every_step_matches_the_functions_on_the_lakes_observations(lake, capsys):
    assert _cli(lake, "--all", "--name", "full", "--batch-steps", "1") == 0
    out = capsys.readouterr().out
    assert "relabelled 2 episodes" in out and "skipped 2 episodes of other environments" in out
    steps = rows(lake, "SELECT episode_id, step, observation FROM steps s JOIN episodes e USING (episode_id) "
                        "WHERE e.env_name = 'panda_block_stacking' ORDER BY ALL")
    obs = np.array([s[2] for s in steps], np.float32)
    for fn in REWARDS.values():
        got = rows(lake, "SELECT episode_id, step, success, reward, source_hash FROM rewards WHERE dataset = 'full' "
                          f"AND reward_fn = '{fn.name}' AND reward_version = {fn.version} ORDER BY episode_id, step")
        assert [(g[0], g[1]) for g in got] == [(s[0], s[1]) for s in steps], fn.spec
        success, reward = fn.evaluate(obs)
        assert [g[2] for g in got] == success.tolist() and np.allclose([g[3] for g in got], reward)
        assert {g[4] for g in got} == {fn.source_hash}
    # achievements: per episode and function, achieved and the first step achieved
    for episode_id, fn, version, achieved, first in rows(
            lake, "SELECT episode_id, reward_fn, reward_version, achieved, first_step FROM achievements "
                  "WHERE dataset = 'full'"):
        mine = [s[1] for s, ok in zip(steps, REWARDS[(fn, version)](obs)) if ok and s[0] == episode_id]
        assert achieved == bool(mine) and first == (min(mine) if mine else None)
    assert rows(lake, "SELECT count(*) FROM achievements WHERE dataset = 'full'") == [(2 * N_FUNCTIONS,)]


def test_lineage_is_an_event_in_the_lake(lake):
    stats = relabel(lake, resolve(["reach_red", "place_red_on_blue@1"]), where="seed = 0", dataset="lineage",
                    land=land)
    events = rows(lake, "SELECT payload_json FROM events WHERE type = 'relabel.completed'")
    row = next(r for (payload,) in events for r in json.loads(payload) if r["dataset"] == "lineage")
    assert row["relabel_id"] == stats.relabel_id and row["predicate"] == "seed = 0"
    assert row["robolake_version"] == VERSION and row["episodes"] == 1 and row["rows"] == 2 * row["steps"]
    assert [(f["name"], f["version"], f["source_hash"], f["rows"]) for f in row["functions"]] == [
        ("place_red_on_blue", 1, REWARDS[("place_red_on_blue", 1)].source_hash, row["steps"]),
        ("reach_red", 1, REWARDS[("reach_red", 1)].source_hash, row["steps"])]
    ranges = row["sources"]
    assert ranges and all(s["topic"] == "robolake.episodes" and s["first_offset"] <= s["last_offset"] for s in ranges)
    assert row["lake_snapshot"] > 0


def test_a_rerun_adds_nothing_and_a_new_version_relabels_history_beside_the_old(lake, capsys):
    assert _cli(lake, "--rewards", "place_red_on_blue@1", "--name", "versions") == 0
    before = rows(lake, "SELECT * FROM rewards WHERE dataset = 'versions' ORDER BY ALL")
    events = rows(lake, "SELECT count(*) FROM events")
    capsys.readouterr()
    assert _cli(lake, "--rewards", "place_red_on_blue@1", "--name", "versions") == 0
    assert "already relabelled" in capsys.readouterr().out
    assert rows(lake, "SELECT * FROM rewards WHERE dataset = 'versions' ORDER BY ALL") == before
    assert rows(lake, "SELECT count(*) FROM events") == events  # no lineage for a run that wrote nothing
    assert _cli(lake, "--rewards", "place_red_on_blue", "--name", "versions") == 0  # latest: v2
    assert rows(lake, "SELECT * FROM rewards WHERE dataset = 'versions' AND reward_version = 1 ORDER BY ALL") == before
    assert rows(lake, "SELECT reward_version, count(*) FROM rewards WHERE dataset = 'versions' GROUP BY ALL "
                       "ORDER BY ALL") == [(1, len(before)), (2, len(before))]


def test_only_new_episodes_are_computed(tmp_path):
    settings = _lake(tmp_path, ["--episodes", "1", "--task", "lift_red"])
    first = relabel(settings, resolve(["lift_red"]), land=land)
    assert (first.episodes, first.rows) == (1, first.steps)
    _lake(tmp_path, ["--episodes", "1", "--task", "lift_green", "--seed", "5"])
    second = relabel(settings, resolve(["lift_red", "lift_green"]), land=land)
    # the new episode for both, the old one only for the function it lacked
    assert second.episodes == 2 and second.rows == first.steps + 2 * (second.steps - first.steps)
    assert rows(settings, "SELECT count(DISTINCT episode_id), count(*) FROM rewards") == [(2, first.rows + second.rows)]


def test_unknown_functions_are_one_line_listing_the_known_ones(lake, capsys):
    assert _cli(lake, "--rewards", "lift_red", "place_red_on_purple@1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown reward function 'place_red_on_purple@1'; known: " in err
    assert "place_red_on_blue@2" in err and "two_block_tower@1" in err
    assert _cli(lake, "--rewards", "lift_red@7") == 2


@pytest.mark.parametrize("where, code, message", [
    ("TRUE; DELETE FROM steps_all", 2, "cannot parse the query"),
    ("TRUE); DELETE FROM steps_all; SELECT (TRUE", 2, "read-only here: DELETE statements are refused"),
    # the check parses exactly the text that runs: these used to pass it and then fail to parse (exit 1)
    ("TRUE --", 2, "cannot parse the query"),
    ("TRUE UNION SELECT 'x'", 2, "cannot parse the query"),
    ("episode_id IN (SELECT * FROM read_csv('/etc/passwd'))", 2, "read-only here: read_csv() is refused"),
    ("no_such_column = 1", 1, "no_such_column"),
])
def test_a_where_that_writes_or_reads_outside_the_lake_is_refused(lake, capsys, where, code, message):
    before = rows(lake, "SELECT count(*) FROM rewards")
    assert _cli(lake, "--all", "--where", where, "--name", "refused") == code
    assert message in capsys.readouterr().err
    assert rows(lake, "SELECT count(*) FROM rewards") == before


def test_an_empty_selection_writes_nothing(lake, capsys):
    before = rows(lake, "SELECT count(*) FROM rewards")
    assert _cli(lake, "--all", "--where", "seed = -1", "--name", "empty") == 0
    assert "no complete episodes match --where 'seed = -1'; nothing written" in capsys.readouterr().out
    assert _cli(lake, "--all", "--where", "env_name = 'synthetic'", "--name", "empty") == 0
    assert "none of the 2 matching episodes is of the Panda scene" in capsys.readouterr().out
    assert rows(lake, "SELECT count(*) FROM rewards") == before


@pytest.mark.parametrize("kernel, message", [
    (lambda obs: np.where(obs[:, 0] > 1e9, 1.0, np.nan), "broken@1 returned NaN"),
    (lambda obs: obs[1:, 0] > 0, "broken@1 returned"),
])
def test_a_function_returning_nan_or_the_wrong_length_is_named_and_nothing_is_written(lake, monkeypatch, capsys,
                                                                                     kernel, message):
    monkeypatch.setattr("producers.sim.rewards.REWARDS", dict(REWARDS))
    register("broken", 1, "break", kernel)
    assert _cli(lake, "--rewards", "lift_red", "broken", "--name", "broken") == 1
    assert message in capsys.readouterr().err
    assert rows(lake, "SELECT count(*) FROM rewards WHERE dataset = 'broken'") == [(0,)]


def test_a_lake_older_than_the_rewards_table_shows_it_empty_until_a_relabel_adds_it(tmp_path, monkeypatch):
    from schemas import lake as lake_schema

    monkeypatch.setattr(lake_schema, "TABLES", tuple(t for t in lake_schema.TABLES if t != lake_schema.REWARDS))
    settings = _lake(tmp_path, ["--episodes", "1", "--task", "reach_red"])
    assert rows(settings, "SELECT count(*) FROM rewards") == [(0,)]
    assert rows(settings, "SELECT count(*) FROM achievements") == [(0,)]
    monkeypatch.undo()
    stats = relabel(settings, resolve(["reach_red"]), land=land)
    assert rows(settings, "SELECT count(*), bool_or(achieved) FROM achievements") == [(1, True)]
    assert stats.rows == rows(settings, "SELECT count(*) FROM rewards")[0][0]


def _events(settings, dataset: str) -> list[dict]:
    return [r for (payload,) in rows(settings, "SELECT payload_json FROM events WHERE type = 'relabel.completed' "
                                                "ORDER BY _timestamp, _log, _offset")
            for r in json.loads(payload) if r["dataset"] == dataset]


def test_a_run_failing_after_commits_publishes_what_it_committed_and_rows_name_their_run(lake, monkeypatch, capsys):
    monkeypatch.setattr("producers.sim.rewards.REWARDS", dict(REWARDS))
    calls = []

    def midway(obs):
        calls.append(len(obs))
        return obs[:, 0] * (np.nan if len(calls) > 1 else 0.0) > 0, obs[:, 0] * (np.nan if len(calls) > 1 else 0.0)

    register("midway", 1, "fail on the second batch", midway)
    assert _cli(lake, "--rewards", "midway", "lift_red", "--name", "midway", "--batch-steps", "1") == 1
    assert "midway@1 returned NaN" in capsys.readouterr().err
    found = rows(lake, "SELECT relabel_id, reward_fn, count(*), count(DISTINCT episode_id) FROM rewards "
                       "WHERE dataset = 'midway' GROUP BY ALL ORDER BY ALL")
    assert [(r[1], r[3]) for r in found] == [("lift_red", 1), ("midway", 1)]  # the first episode: whole
    (event,) = _events(lake, "midway")
    assert event["complete"] is False and "midway@1 returned NaN" in event["error"]
    assert {r[0] for r in found} == {event["relabel_id"]} and event["rows"] == sum(r[2] for r in found)
    assert {f["name"]: f["rows"] for f in event["functions"]} == {r[1]: r[2] for r in found}
    assert event["episodes"] == 1 and event["steps"] == found[0][2] and event["adopted"] == []
    # a complete run's event says so
    relabel(lake, resolve(["lift_red"]), dataset="midway", land=land)
    assert _events(lake, "midway")[-1]["complete"] is True


def test_rows_of_a_run_that_never_published_are_adopted_by_the_next_ones_event(tmp_path):
    settings = _lake(tmp_path, ["--episodes", "2", "--task", "reach_red"])
    orphan = relabel(settings, resolve(["reach_red"]), where="seed = 0", publish=False)  # as if killed (-9)
    assert orphan.rows and _events(settings, "default") == []
    nothing_new = relabel(settings, resolve(["reach_red"]), where="seed = 0",
                          land=land)  # adopts even with nothing to compute
    (event,) = _events(settings, "default")
    assert nothing_new.rows == 0 and event["rows"] == 0 and event["complete"] is True
    assert event["adopted"] == [{"relabel_id": orphan.relabel_id, "name": "reach_red", "version": 1,
                                 "rows": orphan.rows}]
    again = relabel(settings, resolve(["reach_red"]), land=land)  # covered now: nothing more to adopt
    assert again.rows and _events(settings, "default")[-1]["adopted"] == []
    covered = {e["relabel_id"] for e in _events(settings, "default")} | {orphan.relabel_id}
    assert {r[0] for r in rows(settings, "SELECT DISTINCT relabel_id FROM rewards")} <= covered


def test_tables_created_before_a_new_column_get_it(tmp_path, monkeypatch):
    import pyarrow as pa

    from infra.lake_catalog import LakeTables, attach
    from schemas import lake as lake_schema

    old = pa.schema([f for f in lake_schema.SCHEMAS[lake_schema.REWARDS] if f.name != "relabel_id"])
    monkeypatch.setitem(lake_schema.SCHEMAS, lake_schema.REWARDS, old)
    settings = _lake(tmp_path, ["--episodes", "1", "--task", "reach_red"])
    con = attach(settings, read_only=False)  # a lake from before episode.started v2
    con.execute("ALTER TABLE lake.episode_starts DROP COLUMN initial_observation")
    con.close()
    assert "relabel_id" not in [r[0] for r in rows(settings, "DESCRIBE rewards")]
    monkeypatch.undo()
    LakeTables(settings, "test").close()  # any writer brings the tables up to date
    assert rows(settings, "SELECT count(*) FROM episode_starts WHERE initial_observation IS NULL") == [(1,)]
    stats = relabel(settings, resolve(["reach_red"]), land=land)
    assert rows(settings, "SELECT DISTINCT relabel_id FROM rewards") == [(stats.relabel_id,)]


@pytest.mark.parametrize("spec", ["reach_red@²", "reach_red@", "reach_red@١", "@1"])
def test_malformed_versions_are_usage_errors(lake, capsys, spec):
    assert _cli(lake, "--rewards", spec, "--name", "malformed") == 2
    assert "unknown reward function" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", "   ", "bad\nname", "tab\there", "nul\x00", "bidi\u202e"])
def test_empty_or_control_character_dataset_names_are_refused(lake, capsys, name):
    before = rows(lake, "SELECT count(*) FROM rewards")
    assert _cli(lake, "--rewards", "reach_red", "--name", name) == 2
    assert "dataset name" in capsys.readouterr().err
    assert rows(lake, "SELECT count(*) FROM rewards") == before
    with pytest.raises(RelabelError, match="dataset name"):
        relabel(lake, resolve(["reach_red"]), dataset=name, land=land)


@pytest.mark.parametrize("dims", [(39, 39), (45, 41)])
def test_panda_episodes_with_observations_of_the_wrong_length_are_named_and_not_written(tmp_path, monkeypatch,
                                                                                         capsys, dims):
    """Episodes tagged with the Panda scene whose observations are of no known version's length
    (45 + 41 average 43: a total-size check would reshape them across step boundaries)."""
    import producers.synthetic

    for i, dim in enumerate(dims):
        monkeypatch.setattr(producers.synthetic, "OBS_DIM", dim)
        settings = _lake(tmp_path, ["--synthetic", "1", "--steps", "10", "--seed", str(i)])
    monkeypatch.setattr("learner.relabel._ENV", "synthetic")
    assert _cli(settings, "--rewards", "reach_red", "--name", "wrong") == 2
    err = capsys.readouterr().err
    ids = [r[0] for r in rows(settings, "SELECT episode_id FROM episodes ORDER BY ALL")]
    assert "not 43 (v1) or 46 (v2)" in err and all(i in err for i in ids) and len(err.strip().splitlines()) == 1
    assert rows(settings, "SELECT count(*) FROM rewards") == [(0,)]


def test_a_run_whose_event_is_on_the_topic_but_not_yet_in_the_lake_is_not_adopted(tmp_path, monkeypatch):
    """On Kafka the lake lags the lineage topic: the topic is read before adopting anything."""
    import types

    from infra.bus.backend import open_bus
    from learner.lineage import relabel_event, uncovered
    from schemas import topics
    from schemas.codec import build
    from schemas.events import RELABEL_COMPLETED_V2

    settings = _lake(tmp_path, ["--episodes", "1", "--task", "reach_red"])
    functions = resolve(["reach_red"])
    run = relabel(settings, functions, publish=False)
    bus = open_bus(settings)
    kafka_like = types.SimpleNamespace(bus="kafka://elsewhere:9092", lake_root=settings.lake_root)
    monkeypatch.setattr("infra.bus.backend.open_bus", lambda s: bus)
    con = open_lake(settings)
    try:
        assert [a["relabel_id"] for a in uncovered(con, "default", kafka_like)] == [run.relabel_id]
        bus.ensure_topics([topics.LINEAGE])
        producer = bus.producer()
        producer.send(topics.LINEAGE, run.relabel_id,
                      build(RELABEL_COMPLETED_V2, [relabel_event(run, functions, "TRUE", "default")]))
        producer.flush()
        assert uncovered(con, "default", kafka_like) == []  # published, only not in the lake yet
        monkeypatch.setattr("learner.lineage._covered_on_bus", lambda s, timeout_s=30.0: None)
        assert uncovered(con, "default", kafka_like) == []  # topic unreadable: adopt nothing rather than twice
    finally:
        con.close()
