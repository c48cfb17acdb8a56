"""An episode's camera frames from the lake as an MP4 (consumers/export/video.py), played in
the simulation's time: a frame on every k-th step of a 10 Hz control plays at 10/k frames a second.
Any complete episode with frames can become one; which episodes the report and the dashboard show
is `queries.video_episodes`."""

from __future__ import annotations

import io


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
    """PNG frames as an H.264 MP4 of len(pngs) frames at `fps`, small enough to inline in a page."""
    from consumers.export.video import Mp4, decode_png

    if not pngs:
        raise ValueError("an MP4 needs at least one frame")
    out = io.BytesIO()
    mp4 = Mp4(out, fps, options={"crf": "23", "preset": "veryfast"})
    try:
        for png in pngs:
            mp4.add(decode_png(png))
    finally:
        mp4.close()
    return out.getvalue()


def episode_video(con, episode_id: str) -> dict:
    """{"mp4": the episode's frames as an MP4, "frames": how many, "fps": their rate} (NoFrames if none)."""
    pngs, fps = episode_frames(con, episode_id)
    return {"mp4": encode_mp4(pngs, fps), "frames": len(pngs), "fps": fps}
