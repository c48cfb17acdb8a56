"""Episodes as MP4 videos (robolake/report/video.py): the encoding, `robolake video`, and the episodes
a user asks the report for (`--video`), on the hand-made experiment of test_report."""

from __future__ import annotations

import io

import pytest

from robolake.cli import main
from tests.unit.test_report import EXPERIMENT, lake  # noqa: F401 (a fixture)


def _png(size: tuple[int, int], shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (shade, 100, 255 - shade)).save(out, format="PNG")
    return out.getvalue()


def _scene(k: int) -> bytes:
    """A 128x128 picture that differs from frame to frame: a gradient, and a white square at 10k px."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((128, 128, 3), np.uint8)
    pixels[..., 0] = np.arange(128)[None, :] * 2
    pixels[..., 2] = 200
    pixels[40:72, 10 * k:10 * k + 32] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _probe(mp4: bytes) -> dict:
    """What a player sees: frames decoded (RGB arrays), duration, size and codec."""
    import av

    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return {"frames": frames, "seconds": container.duration / av.time_base, "size": (stream.width,
                stream.height), "codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt}


def test_frames_become_an_h264_mp4_of_the_same_pictures_at_the_rate_asked():
    import numpy as np
    from PIL import Image

    from robolake.report.video import encode_mp4

    pngs = [_scene(k) for k in range(7)]
    mp4 = encode_mp4(pngs, fps=5.0)
    seen = _probe(mp4)
    assert mp4[4:8] == b"ftyp"
    assert (len(seen["frames"]), seen["size"], seen["codec"], seen["pix_fmt"]) == (7, (128, 128), "h264", "yuv420p")
    assert seen["seconds"] == pytest.approx(7 / 5.0)
    for png, decoded in zip(pngs, seen["frames"]):  # each frame is its picture (lossy, so nearly)
        source = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert np.abs(source.astype(int) - decoded).mean() < 2.5


def test_odd_sized_frames_are_scaled_to_even_sides_and_no_frames_is_an_error():
    from robolake.report.video import encode_mp4

    assert _probe(encode_mp4([_png((65, 65), 0)] * 2, fps=2.0))["size"] == (64, 64)
    with pytest.raises(ValueError, match="at least one frame"):
        encode_mp4([], fps=5.0)


def test_video_command_writes_an_episode_in_simulated_time(lake, tmp_path, capsys):  # noqa: F811
    settings, ids = lake
    out = tmp_path / "episode.mp4"
    assert main(["video", ids["episodes"][0], "-o", str(out)]) == 0
    assert "6 frames at 10 per second" in capsys.readouterr().out  # steps 0.1 s of simulated time apart
    seen = _probe(out.read_bytes())
    assert len(seen["frames"]) == 6 and seen["seconds"] == pytest.approx(0.6)


def test_an_episode_without_frames_or_not_in_the_lake_is_one_clear_line(lake, tmp_path, capsys):  # noqa: F811
    from infra.bus.backend import open_bus
    from producers.episode_writer import EpisodeWriter
    from tests.unit.test_report import sink

    settings, _ = lake
    writer = EpisodeWriter(open_bus(settings).producer())
    bare = writer.start(experiment_id=EXPERIMENT, worker_id="w0", env_name="panda_block_stacking", env_version=1,
                        seed=9, initial_state=[0.0], task="reach", skill_sequence=["reach_red"], decision_id=None,
                        policy_id="scripted_expert", policy_version="1")
    writer.step(step=0, sim_time=0.0, observation=[0.0] * 43, action=[0.0] * 4, reward=0.0, task_reward=0.0,
                skill_id="reach_red", skill_caption="reach", terminated=False, truncated=True, frame=None)
    writer.end("timeout", task_success=False, skill_success={"reach_red": False})
    sink(settings)
    assert main(["video", bare, "-o", str(tmp_path / "a.mp4")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"episode {bare} has no camera frames" in err
    assert main(["video", "no-such-episode", "-o", str(tmp_path / "b.mp4")]) == 1
    assert "no complete episode 'no-such-episode' in the lake" in capsys.readouterr().err
    assert main(["report", "--experiment", EXPERIMENT, "--video", bare, "-o", str(tmp_path / "out")]) == 1
    assert "has no camera frames" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "out").exists()


def test_the_report_shows_the_episodes_asked_for_besides_the_latest(lake, tmp_path):  # noqa: F811
    import re

    _, ids = lake
    oldest = ids["episodes"][0]  # of three episodes of one task, the report shows the two latest ...
    assert main(["report", "--experiment", EXPERIMENT, "--videos", "1", "--video", oldest,
                 "-o", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / f"{EXPERIMENT}.html").read_text()
    # ... here the latest one, and the one asked for, in time order
    assert re.findall(r'<figure id="episode-([^"]+)"><video ', page) == [oldest, ids["episodes"][2]]
    assert page.count('<details class="exchange"') == 3  # the full model calls, folded
