"""The camera's PNG frames as one MP4 (H.264) file, with PyAV and Pillow (the `export` extra).

Frame k of a file is shown at k / fps exactly (time base 1/fps), so a reader finds an episode's frames
at its start time plus their timestamps. A keyframe every 2 frames, as LeRobot records: a reader that
seeks decodes at most one frame it does not need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infra.optional import require

CODEC, PIXEL_FORMAT = "h264", "yuv420p"
_OPTIONS = {"crf": "18", "g": "2"}  # near-lossless for 64x64 frames; g: frames between keyframes


class Mp4:
    """`add(pixels)` appends a frame (height x width x 3 uint8); `close()` finishes the file."""

    def __init__(self, path: Path, fps: int):
        self._av = require("av", "export")
        self._container = self._av.open(str(path), "w")
        self._fps, self._stream, self.frames = fps, None, 0

    def add(self, pixels: np.ndarray) -> None:
        if self._stream is None:  # the first frame tells the size
            self._stream = self._container.add_stream("libx264", rate=self._fps, options=_OPTIONS)
            self._stream.height, self._stream.width = pixels.shape[:2]
            self._stream.pix_fmt = PIXEL_FORMAT
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
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
