"""`robolake export --format lerobot`: the files of a LeRobot v3.0 dataset from a small lake, and the
round trip through LeRobot's own `LeRobotDataset` where lerobot is installed (the `lerobot` extra)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from consumers.lake_sink.sink import LakeSink
from infra.bus.memory import MemoryBus
from infra.settings import Settings
from producers.episode_writer import EpisodeWriter
from robolake.cli import main
from schemas import observation

# Read at import: the unit tests' conftest clears ROBOLAKE_* before each module's tests run.
REQUIRE_LEROBOT = bool(os.environ.get("ROBOLAKE_REQUIRE_LEROBOT"))

CAMERA = "observation.images.front"
# (task, observation version, steps, frames on every step): started in this order
EPISODES = [("reach the red block", 2, 5, True), ("lift the red block", 2, 4, True), ("reach the red block", 1, 3, False)]


def _observation(episode: int, step: int, version: int) -> list[float]:
    """Distinct, recognisable floats: step -1 is the initial observation."""
    return (episode * 100 + step + np.arange(observation.size(version)) / 1000).tolist()


def _action(episode: int, step: int) -> list[float]:
    return [episode / 10, step / 10, -step / 10, 1.0 if step % 2 else -1.0]


def _image(episode: int, step: int) -> np.ndarray:
    """Flat colours (H.264 keeps them): the left half tells the episode, the right half the step."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :32] = (40 + 60 * episode, 200 - 50 * episode, 90)
    pixels[:, 32:] = (30 * step, 120, 250 - 30 * step)
    return pixels


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Three episodes through the in-process bus into a local lake: two v2 episodes with a frame on
    every step, one v1 episode (43 floats, no initial observation) without frames."""
    settings = Settings.load(env={}, lake=f"file://{tmp_path_factory.mktemp('export')}/lake")
    bus = MemoryBus()
    producer = bus.producer()
    writer = EpisodeWriter(producer, chunk_steps=2)  # several chunks per episode
    ids = []
    for e, (task, version, steps, framed) in enumerate(EPISODES):
        ids.append(writer.start(
            experiment_id="exp-export", worker_id="w", env_name=observation.ENV_NAME, env_version=version, seed=e,
            initial_state=[0.0], task=task, skill_sequence=["reach_red"], policy_id="scripted", policy_version="1",
            initial_observation=_observation(e, -1, version) if version == 2 else None))
        for step in range(steps):
            writer.step(step=step, sim_time=0.1 * (step + 1), observation=_observation(e, step, version),
                        action=_action(e, step), reward=0.0, task_reward=float(step == steps - 1),
                        skill_id="reach_red", skill_caption=task, terminated=False, truncated=False,
                        frame=_png(_image(e, step)) if framed else None)
        writer.end("success", task_success=True, skill_success={"reach_red": True})
    producer.flush()
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    return settings, ids


def _export(lake, out, *flags) -> int:
    settings, _ = lake
    return main(["export", "--format", "lerobot", str(out), "--lake", settings.lake, *flags])


def _frames(out) -> dict:
    return pq.read_table(out / "data" / "chunk-000" / "file-000.parquet").to_pydict()


def test_every_frame_is_the_observation_before_its_action_named_with_the_episode_captions(lake, tmp_path, capsys):
    """Without video: v2 episodes start at their initial observation, the v1 episode at row 1; the
    state is cut to v1's 43 named floats, the oldest version selected."""
    _, ids = lake
    out = tmp_path / "all"
    assert _export(lake, out, "--no-video") == 0
    assert f"to {out}" in capsys.readouterr().out
    info = json.loads((out / "meta" / "info.json").read_text())
    lengths = [steps - (version == 1) for _, version, steps, _ in EPISODES]  # 5, 4, 2
    assert (info["codebase_version"], info["fps"], info["total_episodes"], info["total_frames"], info["total_tasks"]) \
        == ("v3.0", 10, 3, sum(lengths), 2)
    assert info["features"]["observation.state"]["names"] == observation.names(1)
    assert info["features"]["observation.state"]["names"][14:18] == ["gripper_opening", "ee_x", "ee_y", "ee_z"]
    assert info["features"]["action"]["names"] == ["dx", "dy", "dz", "gripper"]
    assert CAMERA not in info["features"] and info["video_path"] is None and not (out / "videos").exists()

    frames = _frames(out)
    assert frames["index"] == list(range(sum(lengths)))
    assert frames["episode_index"] == [e for e, n in enumerate(lengths) for _ in range(n)]
    assert frames["frame_index"] == [i for n in lengths for i in range(n)]
    assert frames["timestamp"] == pytest.approx([i / 10 for n in lengths for i in range(n)])
    rows = [(e, step) for e, (_, version, steps, _) in enumerate(EPISODES) for step in range(version == 1, steps)]
    for state, action, (e, step) in zip(frames["observation.state"], frames["action"], rows):
        np.testing.assert_allclose(state, _observation(e, step - 1, 1), rtol=1e-6)  # before the action, 43 floats
        np.testing.assert_allclose(action, _action(e, step), rtol=1e-6)
    assert [i for i, done in enumerate(frames["next.done"]) if done] == list(np.cumsum(lengths) - 1)
    assert frames["next.reward"] == [float(d) for d in frames["next.done"]]  # the task succeeded on the last step

    tasks = pq.read_table(out / "meta" / "tasks.parquet").to_pydict()
    assert tasks == {"task_index": [0, 1], "task": ["reach the red block", "lift the red block"]}
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert episodes["tasks"] == [[task] for task, *_ in EPISODES]
    assert frames["task_index"] == [e % 2 for e, n in enumerate(lengths) for _ in range(n)]
    assert episodes["length"] == lengths and episodes["robolake/episode_id"] == ids
    assert episodes["dataset_to_index"] == list(np.cumsum(lengths))
    stats = json.loads((out / "meta" / "stats.json").read_text())
    states = np.array(frames["observation.state"])
    np.testing.assert_allclose(stats["observation.state"]["mean"], states.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["std"], states.std(0), rtol=1e-5)
    assert stats["action"]["count"] == [sum(lengths)] and stats["observation.state"]["max"][0] == states[:, 0].max()


def test_video_holds_each_frame_s_camera_image_and_starts_every_episode_at_row_one(lake, tmp_path):
    av = pytest.importorskip("av")
    out = tmp_path / "video"
    assert _export(lake, out, "--where", "env_version = 2") == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"][CAMERA]["shape"] == [64, 64, 3] and info["features"][CAMERA]["dtype"] == "video"
    assert info["features"]["observation.state"]["names"] == observation.names(2)
    lengths = [steps - 1 for _, version, steps, _ in EPISODES if version == 2]  # 4, 3
    assert info["total_frames"] == sum(lengths)
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert episodes[f"videos/{CAMERA}/from_timestamp"] == [0.0, 0.4]
    assert episodes[f"videos/{CAMERA}/to_timestamp"] == [0.4, 0.7]
    np.testing.assert_allclose(_frames(out)["observation.state"][0], _observation(0, 0, 2), rtol=1e-6)

    with av.open(str(out / "videos" / CAMERA / "chunk-000" / "file-000.mp4")) as video:
        decoded = [(frame.time, frame.to_ndarray(format="rgb24")) for frame in video.decode(video=0)]
    expected = [_image(e, step - 1) for e, n in enumerate(lengths) for step in range(1, n + 1)]
    assert [round(t, 3) for t, _ in decoded] == [round(i / 10, 3) for i in range(sum(lengths))]
    for (_, got), want in zip(decoded, expected, strict=True):
        assert np.abs(got.astype(int) - want).mean() < 3  # lossy, but each frame is its own step's image


def test_a_full_file_rolls_over_to_the_next_data_file_and_video(lake, tmp_path, monkeypatch):
    """Past FILE_FRAMES frames the next episode starts new files, at time 0 of its video."""
    pytest.importorskip("av")
    monkeypatch.setattr("consumers.export.lerobot.FILE_FRAMES", 1)
    out = tmp_path / "rolled"
    assert _export(lake, out, "--where", "env_version = 2") == 0
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert episodes["data/file_index"] == episodes[f"videos/{CAMERA}/file_index"] == [0, 1]
    assert episodes[f"videos/{CAMERA}/from_timestamp"] == [0.0, 0.0]
    assert [pq.read_metadata(out / "data" / "chunk-000" / f"file-00{i}.parquet").num_rows for i in (0, 1)] == [4, 3]
    assert (out / "videos" / CAMERA / "chunk-000" / "file-001.mp4").is_file()


def test_a_selection_with_frames_on_some_episodes_only_asks_to_choose(lake, tmp_path, capsys):
    out = tmp_path / "mixed"
    assert _export(lake, out) == 2
    assert "1 of 3 selected episodes lack camera frames" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [], "nothing is left behind"


@pytest.mark.parametrize("file_frames, backend", [(None, "pyav"), (1, "pyav"), (None, "torchcodec")],
                         ids=["one file", "a file per episode", "torchcodec"])
def test_lerobot_loads_the_export_with_its_own_dataset_class(lake, tmp_path, monkeypatch, file_frames, backend):
    """The round trip: LeRobot's LeRobotDataset reads every frame, its names, each episode's task, and
    the camera image, decoded with PyAV or with torchcodec (LeRobot's default where it loads: it needs
    FFmpeg's shared libraries, e.g. Debian's ffmpeg)."""
    if REQUIRE_LEROBOT:  # make test's own venv for it: lerobot must load there
        import lerobot.datasets.lerobot_dataset as lerobot
    else:
        lerobot = pytest.importorskip("lerobot.datasets.lerobot_dataset", reason=(
            "lerobot is not installed here: make test runs this test in .venv-lerobot (pip install -e '.[lerobot]'; "
            "its torch and numpy pins differ from the dev extra's)"))
    import torch

    torch.set_num_threads(1)
    if backend == "torchcodec":
        try:
            import torchcodec.decoders  # noqa: F401
        except (ImportError, OSError, RuntimeError) as exc:
            pytest.skip(f"torchcodec does not load here: {str(exc).splitlines()[0]}")
    if file_frames:
        monkeypatch.setattr("consumers.export.lerobot.FILE_FRAMES", file_frames)
    out = tmp_path / "roundtrip"
    assert _export(lake, out, "--where", "env_version = 2") == 0
    dataset = lerobot.LeRobotDataset("robolake/export-test", root=out, video_backend=backend)
    lengths = [steps - 1 for _, version, steps, _ in EPISODES if version == 2]
    assert (len(dataset), dataset.num_episodes, dataset.fps) == (sum(lengths), 2, 10)
    assert dataset.meta.features["observation.state"]["names"] == observation.names(2)
    assert dataset.meta.features["action"]["names"] == list(observation.ACTION_NAMES)
    index = 0
    for e, n in enumerate(lengths):
        for step in range(1, n + 1):
            item = dataset[index]
            assert item["task"] == EPISODES[e][0] and item["episode_index"].item() == e
            np.testing.assert_allclose(item["observation.state"].numpy(), _observation(e, step - 1, 2), rtol=1e-6)
            np.testing.assert_allclose(item["action"].numpy(), _action(e, step), rtol=1e-6)
            image = (item[CAMERA].permute(1, 2, 0).numpy() * 255).astype(int)  # channels first, in [0, 1]
            assert np.abs(image - _image(e, step - 1)).mean() < 3
            index += 1


def test_a_killed_export_s_staging_is_removed_by_the_next(lake, tmp_path, monkeypatch):
    """kill -9 runs no cleanup: what a dead exporter left beside OUT goes with the next export there;
    a live exporter's is left alone."""
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f".out.{dead.pid}.partial"
    (leftover / "data").mkdir(parents=True)
    live = tmp_path / f".out.{os.getppid()}.partial"
    live.mkdir()
    monkeypatch.chdir(tmp_path)
    assert _export(lake, Path("out"), "--no-video") == 0  # a relative OUT, resolved
    assert (tmp_path / "out" / "meta" / "info.json").exists()
    assert not leftover.exists() and live.exists()
    assert [p.name for p in tmp_path.glob(".out.*.partial")] == [live.name]
