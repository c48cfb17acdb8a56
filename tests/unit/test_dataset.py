"""The learner's data path over steps ⋈ rewards: transitions, relabelled rewards, mixing, shuffling."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np
import pytest

from consumers.lake_sink.sink import land
from infra.lake_sql import open_lake
from infra.settings import Settings
from learner.dataset import DatasetConfig, LakeDataset
from learner.relabel import relabel, resolve
from learner.shuffle import Prefetcher, ShuffleBuffer, rebatch
from producers.sim.rewards import REWARDS
from robolake.cli import main
from schemas import observation

FUNCTIONS = ("reach_red@1", "lift_red@1", "any_block_lifted@1")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    url = f"file://{tmp_path_factory.mktemp('dataset')}/lake"
    assert main(["produce", "--episodes", "2", "--task", "lift_red", "--lake", url, "--bus", "memory"]) == 0
    settings = Settings.load(env={}, lake=url, bus="memory")
    relabel(settings, resolve(list(FUNCTIONS)), dataset="train", land=land)
    con = open_lake(settings)
    steps = {(e, s): (np.array(o, np.float32), np.array(a, np.float32))
             for e, s, o, a in con.execute("SELECT episode_id, step, observation, action FROM steps").fetchall()}
    initial = {e: np.array(o, np.float32)
               for e, o in con.execute("SELECT episode_id, initial_observation FROM episode_starts").fetchall()}
    con.close()
    for e, o in initial.items():
        steps[(e, -1)] = (o, None)  # what the policy saw before its first action
    return settings, steps


def _epoch(settings, **config):
    batches = list(LakeDataset(settings, DatasetConfig(dataset="train", **config)))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}, batches


def test_an_epoch_is_every_transition_once_with_the_reward_of_its_relabelled_skill(lake):
    settings, steps = lake
    data, batches = _epoch(settings, batch_size=16, shuffle_buffer=32, read_rows=10)
    episodes = {e for e, _ in steps}
    keys = list(zip(data["episode_id"], data["step"]))
    assert sorted(keys) == sorted(k for k in steps if k[1] >= 0)  # row 0: after the initial observation
    assert all(len(b["step"]) == 16 for b in batches[:-1])
    dataset = LakeDataset(settings, DatasetConfig(dataset="train"))
    assert dataset.captions == [REWARDS[("any_block_lifted", 1)].caption, "lift the red block", "reach the red block"]
    for i, (e, s) in enumerate(keys):
        np.testing.assert_array_equal(data["observation"][i], steps[(e, s - 1)][0])
        np.testing.assert_array_equal(data["next_observation"][i], steps[(e, s)][0])
        np.testing.assert_array_equal(data["action"][i], steps[(e, s)][1])
    for skill, (name, version) in enumerate(dataset.functions):
        rows = data["skill"] == skill
        success, reward = REWARDS[(name, version)].evaluate(data["next_observation"][rows])
        np.testing.assert_array_equal(data["success"][rows], success)
        np.testing.assert_allclose(data["reward"][rows], reward)
        assert set(data["caption"][rows]) == {dataset.captions[skill]}
    np.testing.assert_array_equal(data["discount"], 1 - data["done"])
    assert len(episodes) == 2
    # Every transition drawn for lift_red (the skill draw hashes random episode ids, so a mix may miss
    # the few steps that reach a goal): each episode's lift ends it done.
    lifted, _ = _epoch(settings, weights={"lift_red@1": 1.0, "reach_red@1": 0.0, "any_block_lifted@1": 0.0})
    assert set(lifted["caption"]) == {"lift the red block"}
    assert len(set(lifted["episode_id"][lifted["done"]])) == 2
    assert data["observation"].dtype == np.float32 and data["observation"].shape[1] == observation.size()


def test_skills_mix_by_weight_uniform_by_default(lake):
    settings, _ = lake
    uniform, _ = _epoch(settings, seed=1, epochs=5)  # 5 draws per transition: ~200, not a flaky ~40
    counts = collections.Counter(uniform["skill"].tolist())
    assert set(counts) == {0, 1, 2} and min(counts.values()) > len(uniform["skill"]) / 6
    only, _ = _epoch(settings, weights={"reach_red@1": 0, "any_block_lifted@1": 0})
    assert set(only["caption"]) == {"lift the red block"}
    skewed, _ = _epoch(settings, seed=2, epochs=5, weights={"reach_red@1": 8})
    assert collections.Counter(skewed["skill"].tolist())[2] > 0.6 * len(skewed["skill"])
    with pytest.raises(ValueError, match="weights for functions not in the dataset: go_home@1"):
        LakeDataset(settings, DatasetConfig(dataset="train", weights={"go_home@1": 1}))
    with pytest.raises(ValueError, match="has no rewards rows"):
        LakeDataset(settings, DatasetConfig(dataset="nothing"))


def test_different_seeds_draw_different_skills(lake):
    settings, _ = lake
    draws = {seed: tuple(sorted(zip(d["episode_id"], d["step"].tolist(), d["skill"].tolist())))
             for seed in range(6) for d in [_epoch(settings, seed=seed)[0]]}
    assert len(set(draws.values())) == 6  # hash(episode, step, seed) made seeds 1 and 3 draw alike


def test_seeded_shuffling_reproduces_and_differs_by_seed_and_epoch(lake):
    settings, _ = lake
    order = lambda **c: list(zip(*(_epoch(settings, batch_size=8, **c)[0][k] for k in ("episode_id", "step"))))
    assert order(seed=3) == order(seed=3)
    assert order(seed=3) != order(seed=4)
    assert order(seed=3) != sorted(order(seed=3))
    batches = list(LakeDataset(settings, DatasetConfig(dataset="train", epochs=2, batch_size=16, shuffle_buffer=1000)))
    steps = np.concatenate([b["step"] for b in batches])  # batches run on across the epochs: all full but the last
    first, second = steps[:len(steps) // 2], steps[len(steps) // 2:]
    assert sorted(first) == sorted(second) and first.tolist() != second.tolist()
    assert [len(b["step"]) for b in batches[:-1]] == [16] * (len(batches) - 1)


def test_leaving_early_stops_the_prefetch_thread(lake):
    settings, _ = lake
    dataset = LakeDataset(settings, DatasetConfig(dataset="train", batch_size=2, epochs=None, prefetch=2))
    for i, _ in enumerate(dataset):
        prefetcher = dataset._prefetcher
        if i == 3:
            break
    dataset.close()
    assert not prefetcher.alive


def _drain(iterator, timeout_s: float = 60.0) -> list:
    """The rest of `iterator`, consumed in a thread so a hang fails the test instead of stalling it."""
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(iterator), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "the iteration hangs"
    return out


def test_one_dataset_serves_two_loops_at_once_and_close_ends_both(lake):
    settings, steps = lake
    transitions = sorted(k for k in steps if k[1] >= 0)
    dataset = LakeDataset(settings, DatasetConfig(dataset="train", batch_size=4, prefetch=1, shuffle_buffer=8))
    it1 = iter(dataset)
    first = [next(it1)]
    it2 = iter(dataset)
    second = [next(it2)]
    for got in (first + _drain(it1), second + _drain(it2)):
        assert sorted(k for b in got for k in zip(b["episode_id"], b["step"])) == transitions
    it3, it4 = iter(dataset), iter(dataset)
    next(it3), next(it4)
    threads = [dataset._prefetcher]
    dataset.close()  # ends both loops at their next batch, without a hang
    assert len(_drain(it3)) <= 2 and len(_drain(it4)) <= 2 and not threads[0].alive


def test_prefetch_reader_wakes_up_when_the_thread_is_stopped():
    def forever():
        while True:
            yield 1

    prefetcher = Prefetcher(forever, depth=1)
    items = iter(prefetcher)
    next(items)
    prefetcher.close()
    assert len(_drain(items, timeout_s=10)) <= 1


def test_closing_interrupts_a_query_the_reading_thread_is_blocked_in():
    """A daemon thread still inside DuckDB when the interpreter exits aborts the process (exit 134:
    `robolake train` did, after its last step): close() ends the query, and the thread with it."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")
    started = threading.Event()

    def slow():
        started.set()
        yield from con.execute("SELECT sum(range) OVER (ORDER BY hash(range)) FROM range(100000000)").fetchall()

    prefetcher = Prefetcher(slow, depth=1, interrupt=lambda thread: con.interrupt())
    started.wait(10)
    time.sleep(0.5)
    begun = time.monotonic()
    prefetcher.close()
    assert not prefetcher.alive and time.monotonic() - begun < 10


def test_a_dataset_interrupts_only_the_closed_loop_s_query(lake):
    settings, _ = lake
    dataset = LakeDataset(settings, DatasetConfig(dataset="train", batch_size=4, epochs=None, prefetch=1))
    loop = iter(dataset)
    next(loop)
    thread = dataset._prefetcher._thread
    with dataset._lock:
        reading = set(dataset._reading)
    assert reading <= {thread.ident}  # at most this loop's reading connection, by its thread
    dataset.close()
    assert not thread.is_alive() and not dataset._reading


@pytest.fixture(scope="module")
def uneven(lake):
    """Dataset 'uneven': reach_red over both episodes, grasp_red over one (relabelled separately)."""
    settings, steps = lake
    con = open_lake(settings)
    seeds = sorted(r[0] for r in con.execute("SELECT seed FROM episodes").fetchall())
    covered = con.execute("SELECT episode_id FROM episodes WHERE seed = ?", [seeds[0]]).fetchone()[0]
    con.close()
    relabel(settings, resolve(["reach_red@1"]), dataset="uneven", land=land)
    relabel(settings, resolve(["grasp_red@1"]), where=f"seed = {seeds[0]}", dataset="uneven", land=land)
    return covered


def test_functions_over_different_episodes_drop_no_transition_and_mix_where_both_exist(lake, uneven):
    settings, steps = lake
    for weights, share in (({}, 0.5), ({"grasp_red@1": 3}, 0.75)):
        batches = list(LakeDataset(settings, DatasetConfig(dataset="uneven", weights=weights, seed=5)))
        data = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        keys = list(zip(data["episode_id"], data["step"]))
        assert sorted(keys) == sorted(k for k in steps if k[1] >= 0)  # every transition, once
        captions = data["caption"]
        mine = data["episode_id"] == uneven
        assert set(captions[~mine]) == {"reach the red block"}  # the only function computed there
        # the mix, over 8 epochs (a new draw per transition each): ~200 draws, not one episode's ~25
        config = DatasetConfig(dataset="uneven", weights=weights, seed=5, epochs=8)
        drawn = [(b["episode_id"] == uneven, b["caption"]) for b in LakeDataset(settings, config)]
        grasp = float(np.mean(np.concatenate([c[m] for m, c in drawn]) == "grasp the red block"))
        assert abs(grasp - share) < 0.15, (weights, grasp)
        for skill, (name, version) in enumerate(LakeDataset(settings, DatasetConfig(dataset="uneven")).functions):
            rows = data["skill"] == skill
            np.testing.assert_allclose(data["reward"][rows],
                                       REWARDS[(name, version)].evaluate(data["next_observation"][rows])[1])



def _demonstrated(settings) -> dict:
    """(episode, step, function) -> whether the step demonstrates the function: it lies in a commanded
    segment (a run of steps under one skill_id) at or before the function's first success in that
    segment, and the function was not already achieved when the segment began (at the step before)."""
    con = open_lake(settings)
    commanded = con.execute("SELECT episode_id, step, skill_id FROM steps ORDER BY ALL").fetchall()
    success = {(e, s, fn): ok for e, s, fn, ok in con.execute(
        "SELECT episode_id, step, reward_fn, success FROM rewards WHERE dataset = 'train'").fetchall()}
    con.close()
    segments = []  # [(episode, [steps])]
    for e, s, skill in commanded:
        if not segments or segments[-1][0] != (e, skill):
            segments.append(((e, skill), []))
        segments[-1][1].append(s)
    out = {}
    for fn in {f for _, _, f in success}:
        for (e, _), seg in segments:
            first = next((s for s in seg if success[(e, s, fn)]), None)
            began_achieved = success.get((e, seg[0] - 1, fn), False)
            for s in seg:
                out[(e, s, fn)] = first is not None and not began_achieved and s <= first
    return out


def test_imitate_marks_a_segments_steps_up_to_a_skills_first_success_and_the_boost_draws_them_more(lake):
    """Hindsight: a sample's action demonstrates its skill on the steps of a commanded segment up to
    the skill's first success in it; `achieved_boost` draws those skills more often."""
    settings, _ = lake
    demonstrated = _demonstrated(settings)
    functions = LakeDataset(settings, DatasetConfig(dataset="train")).functions
    assert 0 < np.mean(list(demonstrated.values())) < 0.5
    # the grasp segment begins with the block reached: reaching is demonstrated in the reach segment only
    con = open_lake(settings)
    grasp = con.execute("SELECT episode_id, min(step) FROM steps WHERE skill_id = 'grasp_red' GROUP BY 1").fetchall()
    reached = dict(((e, s), ok) for e, s, ok in con.execute(
        "SELECT episode_id, step, success FROM rewards WHERE dataset = 'train' AND reward_fn = 'reach_red'").fetchall())
    con.close()
    assert len(grasp) == 2 and all(reached[(e, start - 1)] for e, start in grasp)
    reach_demos = {(e, s) for (e, s, fn), v in demonstrated.items() if v and fn == "reach_red"}
    assert reach_demos and all(s < dict(grasp)[e] for e, s in reach_demos)
    shares = {}
    for boost in (1, 8):
        batches = list(LakeDataset(settings, DatasetConfig(dataset="train", epochs=8, achieved_boost=boost, seed=3)))
        data = {k: np.concatenate([b[k] for b in batches]) for k in ("episode_id", "step", "skill", "imitate")}
        expected = [demonstrated[(e, s, functions[k][0])] for e, s, k in zip(data["episode_id"], data["step"], data["skill"])]
        np.testing.assert_array_equal(data["imitate"], expected)
        shares[boost] = float(np.mean(data["imitate"]))
    assert 0 < shares[1] < 1 and shares[8] > shares[1] + 0.15, shares
    commanded = _epoch(settings, conditioning="commanded", functions=("lift_red@1",))[0]
    assert commanded["imitate"].all()  # what the episode was commanded to do is what BC imitates
    with pytest.raises(ValueError, match="achieved_boost must be an integer >= 1"):
        LakeDataset(settings, DatasetConfig(dataset="train", achieved_boost=0))


def test_demonstrations_only_draws_each_demonstrating_step_once_among_the_skills_it_shows(lake):
    settings, _ = lake
    demonstrated = _demonstrated(settings)
    functions = LakeDataset(settings, DatasetConfig(dataset="train")).functions
    data, _ = _epoch(settings, demonstrations_only=True, epochs=3, seed=5)
    assert data["imitate"].all()
    assert all(demonstrated[(e, s, functions[k][0])] for e, s, k in zip(data["episode_id"], data["step"], data["skill"]))
    keys = collections.Counter(zip(data["episode_id"], data["step"].tolist()))
    assert set(keys) == {(e, s) for (e, s, fn), v in demonstrated.items() if v} and set(keys.values()) == {3}
    ten, _ = _epoch(settings, demonstrations_only=True, epochs=10)
    ten = collections.Counter(zip(ten["episode_id"], ten["step"].tolist()))
    assert set(ten.values()) == {10}  # a read of 8 passes, then one of 2
    with pytest.raises(ValueError, match="demonstrations_only picks hindsight skills"):
        LakeDataset(settings, DatasetConfig(dataset="train", conditioning="commanded", demonstrations_only=True))


def test_a_mixture_joins_a_share_of_demonstrations_into_every_batch(lake):
    from learner.dataset import Mixture

    settings, _ = lake
    shown = LakeDataset(settings, DatasetConfig(dataset="train", batch_size=4, demonstrations_only=True, epochs=None))
    every = LakeDataset(settings, DatasetConfig(dataset="train", batch_size=12, epochs=1))
    mixture = Mixture(shown, every)
    batches = list(mixture)
    assert len(batches) == len(list(every))  # ends with the shorter stream
    assert all(b["imitate"][:4].all() and len(b["step"]) == 16 for b in batches[:-1])
    assert mixture.captions == every.captions
    assert not shown._prefetchers and not every._prefetchers  # both reading threads stopped


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """6000 synthetic steps with rows of two made-up functions written straight into `rewards`."""
    import pyarrow as pa

    from infra.lake_catalog import LakeTables
    from schemas import lake as lake_schema

    url = f"file://{tmp_path_factory.mktemp('big')}/lake"
    assert main(["produce", "--synthetic", "60", "--steps", "100", "--lake", url, "--bus", "memory"]) == 0
    settings = Settings.load(env={}, lake=url, bus="memory")
    con = open_lake(settings)
    steps = con.execute("SELECT episode_id, experiment_id, step FROM steps").to_arrow_table()
    con.close()
    n = steps.num_rows
    tables = LakeTables(settings, writer="test")
    try:
        for fn in ("one", "two"):
            tables.commit({lake_schema.REWARDS: pa.table({
                "dataset": ["big"] * n, "episode_id": steps["episode_id"], "experiment_id": steps["experiment_id"],
                "step": steps["step"], "reward_fn": [fn] * n, "reward_version": pa.array([1] * n, pa.int32()),
                "source_hash": ["x"] * n, "success": [False] * n,
                "reward": pa.array(np.arange(n) % 7, pa.float32())})}, offsets={})
    finally:
        tables.close()
    return settings, n


def test_same_seed_same_order_on_a_lake_of_thousands_of_steps(big):
    settings, n = big
    config = DatasetConfig(dataset="big", batch_size=512, shuffle_buffer=64, read_rows=256, seed=7)

    def order():
        batches = list(LakeDataset(settings, config))
        return [(e, s, k) for b in batches for e, s, k in zip(b["episode_id"], b["step"].tolist(), b["skill"].tolist())]

    first = order()
    assert len(first) == n - 60 and len(set(first)) == n - 60
    assert order() == first and order() == first


def test_a_dataset_with_nothing_to_read_ends_instead_of_looping_over_empty_epochs(big):
    settings, _ = big  # no step succeeds at anything: there are no demonstrations
    assert list(LakeDataset(settings, DatasetConfig(dataset="big", demonstrations_only=True, epochs=None))) == []


def test_functions_without_rows_and_bad_weights_are_clear_errors(lake):
    settings, _ = lake
    with pytest.raises(ValueError, match=r"dataset 'train' has no rewards rows for nonexistent@1"):
        LakeDataset(settings, DatasetConfig(dataset="train", functions=("reach_red@1", "nonexistent@1")))
    for spec in ("reach_red@²", "reach_red@", "@1"):
        with pytest.raises(ValueError, match="NAME or NAME@VERSION"):
            LakeDataset(settings, DatasetConfig(dataset="train", functions=(spec,)))
    for weights in ({"reach_red@1": float("nan")}, {"reach_red@1": float("inf")}, {"reach_red@1": "x"}):
        with pytest.raises(ValueError, match="skill weights must be"):
            LakeDataset(settings, DatasetConfig(dataset="train", weights=weights))
    dataset = LakeDataset(settings, DatasetConfig(dataset="train", functions=("lift_red@1",)))
    assert dataset.functions == [("lift_red", 1)]
    assert LakeDataset(settings, DatasetConfig(dataset="train", functions=("lift_red",))).functions == [("lift_red", 1)]


def test_a_name_alone_is_its_latest_version_and_commanded_conditioning_takes_one(lake):
    """`relabel --all` writes every version of place_*; a model conditions on one per caption."""
    settings, _ = lake
    relabel(settings, resolve(["lift_red@1", "place_red_on_blue@1", "place_red_on_blue@2"]), dataset="versions",
            land=land)

    def functions(**config):
        return LakeDataset(settings, DatasetConfig(dataset="versions", **config)).functions

    latest = [("lift_red", 1), ("place_red_on_blue", 2)]
    assert functions() == functions(conditioning="commanded") == latest
    assert functions(functions=("place_red_on_blue",)) == [("place_red_on_blue", 2)]
    both = ("place_red_on_blue@1", "place_red_on_blue@2")
    assert functions(functions=both) == [("place_red_on_blue", 1), ("place_red_on_blue", 2)]  # hindsight: asked
    with pytest.raises(ValueError, match=r"commanded conditioning takes one version per function, got "
                                         r"place_red_on_blue versions 1 and 2; choose with --skills "
                                         r"place_red_on_blue@2 \(a name alone is its latest version\)"):
        functions(functions=both, conditioning="commanded")


def test_shuffle_buffer_holds_at_most_its_capacity_and_emits_a_permutation():
    buffer = ShuffleBuffer(capacity=7, seed=0)
    out = []
    for start in range(0, 100, 13):
        rows = {"x": np.arange(start, min(start + 13, 100))}
        out += [piece["x"] for piece in buffer.push(rows)]
        assert buffer.size <= 7 and len(buffer.held["x"]) == 7
    out += [piece["x"] for piece in buffer.drain()]
    values = np.concatenate(out)
    assert sorted(values.tolist()) == list(range(100)) and values.tolist() != list(range(100))


def test_rebatch_and_prefetch_errors_reach_the_reader():
    pieces = [{"x": np.arange(n)} for n in (3, 5, 1, 9)]
    sizes = [len(b["x"]) for b in rebatch(pieces, 4)]
    assert sizes == [4, 4, 4, 4, 2] and [len(b["x"]) for b in rebatch(pieces, 4, drop_last=True)] == [4] * 4

    def failing():
        yield 1
        raise RuntimeError("lake gone")

    with Prefetcher(failing) as prefetcher, pytest.raises(RuntimeError, match="lake gone"):
        list(prefetcher)


def test_commanded_conditioning_pairs_each_step_with_the_skill_it_was_commanded(lake):
    settings, steps = lake
    con = open_lake(settings)
    commanded = dict(((e, s), k) for e, s, k in con.execute("SELECT episode_id, step, skill_id FROM steps").fetchall())
    achieved = {(e, k) for e, k in con.execute(
        "SELECT episode_id, o.skill_id FROM (SELECT episode_id, unnest(skills) AS o FROM episode_ends) "
        "WHERE o.success").fetchall()}
    con.close()
    data, _ = _epoch(settings, conditioning="commanded")
    keys = list(zip(data["episode_id"], data["step"]))
    # grasp_red was commanded too but has no function in the dataset: its steps yield no sample
    assert sorted(keys) == sorted(k for k, skill in commanded.items()
                                  if k[1] >= 0 and skill in ("reach_red", "lift_red"))
    assert [REWARDS[(commanded[k], 1)].caption for k in keys] == list(data["caption"])
    filtered, _ = _epoch(settings, conditioning="commanded", successful_only=True)
    assert sorted(zip(filtered["episode_id"], filtered["step"])) == sorted(
        k for k in keys if (k[0], commanded[k]) in achieved)
    with pytest.raises(ValueError, match="needs conditioning='commanded'"):
        LakeDataset(settings, DatasetConfig(dataset="train", successful_only=True))
