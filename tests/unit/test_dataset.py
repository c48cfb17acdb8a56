"""The learner's data path over steps ⋈ rewards: transitions, relabelled rewards, mixing, shuffling."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from infra.lake_sql import open_lake
from learner.dataset import DatasetConfig, LakeDataset
from learner.relabel import relabel, resolve
from learner.shuffle import Prefetcher, ShuffleBuffer, rebatch
from producers.sim.rewards import REWARDS
from robolake.cli import main
from robolake.settings import Settings

FUNCTIONS = ("reach_red@1", "lift_red@1", "any_block_lifted@1")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    url = f"file://{tmp_path_factory.mktemp('dataset')}/lake"
    assert main(["produce", "--episodes", "2", "--task", "lift_red", "--lake", url, "--bus", "memory"]) == 0
    settings = Settings.load(env={}, lake=url, bus="memory")
    relabel(settings, resolve(list(FUNCTIONS)), dataset="train")
    con = open_lake(settings)
    steps = {(e, s): (np.array(o, np.float32), np.array(a, np.float32))
             for e, s, o, a in con.execute("SELECT episode_id, step, observation, action FROM steps").fetchall()}
    con.close()
    return settings, steps


def _epoch(settings, **config):
    batches = list(LakeDataset(settings, DatasetConfig(dataset="train", **config)))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}, batches


def test_an_epoch_is_every_transition_once_with_the_reward_of_its_relabelled_skill(lake):
    settings, steps = lake
    data, batches = _epoch(settings, batch_size=16, shuffle_buffer=32, read_rows=10)
    episodes = {e for e, _ in steps}
    keys = list(zip(data["episode_id"], data["step"]))
    assert sorted(keys) == sorted(k for k in steps if k[1] > 0)  # row 0 has no observation before it
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
    assert data["done"].any() and len(episodes) == 2
    assert data["observation"].dtype == np.float32 and data["observation"].shape[1] == 43


def test_skills_mix_by_weight_uniform_by_default(lake):
    settings, _ = lake
    uniform, _ = _epoch(settings, seed=1)
    counts = collections.Counter(uniform["skill"].tolist())
    assert set(counts) == {0, 1, 2} and min(counts.values()) > len(uniform["skill"]) / 6
    only, _ = _epoch(settings, weights={"reach_red@1": 0, "any_block_lifted@1": 0})
    assert set(only["caption"]) == {"lift the red block"}
    skewed, _ = _epoch(settings, seed=2, weights={"reach_red@1": 8})
    assert collections.Counter(skewed["skill"].tolist())[2] > 0.6 * len(skewed["skill"])
    with pytest.raises(ValueError, match="weights for functions not in the dataset: go_home@1"):
        LakeDataset(settings, DatasetConfig(dataset="train", weights={"go_home@1": 1}))
    with pytest.raises(ValueError, match="has no rewards rows"):
        LakeDataset(settings, DatasetConfig(dataset="nothing"))


def test_seeded_shuffling_reproduces_and_differs_by_seed_and_epoch(lake):
    settings, _ = lake
    order = lambda **c: list(zip(*(_epoch(settings, batch_size=8, **c)[0][k] for k in ("episode_id", "step"))))
    assert order(seed=3) == order(seed=3)
    assert order(seed=3) != order(seed=4)
    assert order(seed=3) != sorted(order(seed=3))
    two = list(LakeDataset(settings, DatasetConfig(dataset="train", epochs=2, batch_size=1000, shuffle_buffer=1000)))
    assert len(two) == 2 and sorted(two[0]["step"]) == sorted(two[1]["step"])
    assert two[0]["step"].tolist() != two[1]["step"].tolist()


def test_leaving_early_stops_the_prefetch_thread(lake):
    settings, _ = lake
    dataset = LakeDataset(settings, DatasetConfig(dataset="train", batch_size=2, epochs=None, prefetch=2))
    for i, _ in enumerate(dataset):
        prefetcher = dataset._prefetcher
        if i == 3:
            break
    dataset.close()
    assert not prefetcher.alive


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
