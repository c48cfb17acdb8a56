"""An episode's camera frames from the lake as an MP4 (H.264, PyAV: the `analysis` extra), played in
the simulation's time: a frame on every k-th step of a 10 Hz control plays at 10/k frames a second.
Any complete episode with frames can become one; which episodes the report and the dashboard show
is `queries.video_episodes`."""

from __future__ import annotations

import io
from fractions import Fraction


class NoFrames(LookupError):
    """The episode is not in the lake, or has no camera frames."""


def episode_frames(con, episode_id: str) -> tuple[list[bytes], float]:
    """The episode's PNG frames in step order and their rate in frames per simulated second."""
    rows = con.execute("""
        SELECT f.step, any_value(f.frame), any_value(s.sim_time) FROM frames f
        LEFT JOIN steps s ON s.episode_id = f.episode_id AND s.step = f.step
        WHERE f.episode_id = ? GROUP BY f.step ORDER BY f.step""", [episode_id]).fetchall()
    if not rows:
        known = con.execute("SELECT count(*) FROM episodes WHERE episode_id = ?", [episode_id]).fetchone()[0]
        raise NoFrames(f"episode {episode_id} has no camera frames (record them with `robolake produce --frames` "
                       "or an evaluation's --eval-videos)" if known else
                       f"no complete episode {episode_id!r} in the lake")
    (_, _, first), (_, _, last) = rows[0], rows[-1]
    seconds = (last - first) if first is not None and last is not None else 0.0
    fps = (len(rows) - 1) / seconds if seconds > 0 else 1.0
    return [bytes(frame) for _, frame, _ in rows], fps


def encode_mp4(pngs: list[bytes], fps: float) -> bytes:
    """PNG frames as an H.264 MP4 (yuv420p, which every browser plays) of len(pngs) frames at `fps`.
    Frames are scaled to the first frame's size, rounded down to even sides (4:2:0 needs them).
    Pillow (which matplotlib needs) reads the PNGs: FFmpeg's PNG decoder, fed one file after
    another, garbles every frame after the first."""
    import av
    import numpy as np
    from PIL import Image

    if not pngs:
        raise ValueError("an MP4 needs at least one frame")
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        size = None
        for png in pngs:
            picture = av.VideoFrame.from_ndarray(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), format="rgb24")
            if size is None:
                size = stream.width, stream.height = max(2, picture.width // 2 * 2), max(2, picture.height // 2 * 2)
            container.mux(stream.encode(picture.reformat(*size, format="yuv420p")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return out.getvalue()


def episode_video(con, episode_id: str) -> dict:
    """{"mp4": the episode's frames as an MP4, "frames": how many, "fps": their rate} (NoFrames if none)."""
    pngs, fps = episode_frames(con, episode_id)
    return {"mp4": encode_mp4(pngs, fps), "frames": len(pngs), "fps": fps}
