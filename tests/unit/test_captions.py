"""The frozen caption encoder: the pinned weights, offline, cached, and meaningful."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="the learner extra is not installed")

from learner.captions import CaptionEncoder, CaptionEncoderError, model_dir, verify_weights  # noqa: E402


def test_the_weights_are_the_pinned_ones(tmp_path):
    verify_weights()
    (tmp_path / "model.safetensors").write_bytes(b"not the model")
    with pytest.raises(CaptionEncoderError, match="not the pinned model"):
        verify_weights(tmp_path)
    assert (model_dir() / "tokenizer.json").exists()


def test_captions_embed_offline_cached_and_similar_ones_are_close(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = CaptionEncoder()
    a = encoder.encode(["put the red block on the blue block", "stack the red cube on the blue cube",
                        "open the gripper"])
    assert a.shape == (3, 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert a[0] @ a[1] > a[0] @ a[2] + 0.2
    encoder._model = None  # a cached caption never reaches the model again
    assert np.array_equal(encoder.encode(["open the gripper"])[0], a[2])
