"""The camera's PNG frames as an MP4 (H.264, yuv420p: what every player and browser plays), with
PyAV and Pillow (the `export` extra; the `analysis` extra has them too, for the report's videos).

Frame k of a file is shown at k / fps exactly (time base 1/fps), so a reader finds an episode's frames
at its start time plus their timestamps. Exports keep a keyframe every 2 frames, as LeRobot records: a
reader that seeks decodes at most one frame it does not need.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from infra.optional import require

CODEC, PIXEL_FORMAT = "h264", "yuv420p"
SEEKABLE = {"crf": "18", "g": "2"}  # near-lossless for small frames; g: frames between keyframes


class Mp4:
    """`add(pixels)` appends a frame (height x width x 3 uint8); `close()` finishes the file. `target`: a
    path or a binary file object; `fps` may be a fraction (frames on every k-th step of a 10 Hz control).
    Frames take the first frame's size, rounded down to even sides (4:2:0 needs them)."""

    def __init__(self, target: Path | object, fps: float | Fraction, options: dict | None = None):
        self._av = require("av", "export")
        is_path = isinstance(target, (str, Path))
        self._container = self._av.open(str(target) if is_path else target, "w", format=None if is_path else "mp4")
        self._fps = Fraction(fps).limit_denominator(1000)
        self._options, self._stream, self._size, self.frames = options or SEEKABLE, None, None, 0

    def add(self, pixels: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        if self._stream is None:  # the first frame tells the size
            self._stream = self._container.add_stream("libx264", rate=self._fps, options=self._options)
            self._size = max(2, frame.width // 2 * 2), max(2, frame.height // 2 * 2)
            self._stream.width, self._stream.height = self._size
            self._stream.pix_fmt = PIXEL_FORMAT
        frame = frame.reformat(*self._size, format=PIXEL_FORMAT)
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None:
            self._container.mux(self._stream.encode(None))  # what the encoder still holds
        self._container.close()


def decode_png(png: bytes) -> np.ndarray:
    """PNG bytes (the lake's frames) -> height x width x 3 uint8. Pillow, not PyAV: one PyAV PNG decoder
    given PNG after PNG returned each image added to the one before (PyAV 15)."""
    import io

    image = require("PIL.Image", "export")
    return np.asarray(image.open(io.BytesIO(png)).convert("RGB"))
