"""Camera frames: one renderer per environment, a low-poly view that leaves the physics alone and
still shows the scene."""

from __future__ import annotations

import numpy as np
import pytest

from producers.sim.env import BlockStackingEnv  # first: it selects EGL before MuJoCo loads

import mujoco  # noqa: E402  (after the line above)


def test_one_renderer_per_environment_and_size(monkeypatch):
    made = []
    real = mujoco.Renderer
    monkeypatch.setattr(mujoco, "Renderer", lambda *a, **kw: made.append(a[1:]) or real(*a, **kw))
    env = BlockStackingEnv()
    env.reset(seed=0)
    for _ in range(3):
        env.step([0.1, 0.0, 0.0, 1.0])
        assert env.frame().shape == (64, 64, 3)
    env.render()            # 256x256 for people, its own renderer ...
    env.frame()             # ... and the 64x64 one is still there
    assert made == [(64, 64), (256, 256)]
    env.close()


def test_low_poly_frames_draw_the_same_scene_without_touching_the_physics_model():
    low, full = BlockStackingEnv(), BlockStackingEnv(frame_detail="full")
    groups, rgba = low.model.geom_group.copy(), low.model.geom_rgba.copy()
    for seed in range(2):
        low.reset(seed=seed)
        full.reset(seed=seed)
        a, b = low.frame().astype(int), full.frame().astype(int)
        assert a.std() > 30                    # a scene, not a blank image
        assert np.abs(a - b).mean() < 10       # close to the visual meshes (measured ~4.5 of 255)
    np.testing.assert_array_equal(low.model.geom_group, groups)
    np.testing.assert_array_equal(low.model.geom_rgba, rgba)
    assert low._renderer.model is not low.model and full._renderer.model is full.model
    low.close()
    full.close()


def test_unknown_frame_detail_is_an_error():
    with pytest.raises(ValueError, match="frame detail must be one of"):
        BlockStackingEnv(frame_detail="ultra")


def test_the_learner_loads_after_a_frame_was_rendered():
    """Triton's LLVM after Mesa's crashed the process (a segfault, so: in a child process)."""
    import subprocess
    import sys

    pytest.importorskip("transformers", reason="the learner extra is not installed")
    script = ("from producers.sim.env import BlockStackingEnv\n"
              "env = BlockStackingEnv(); env.reset(seed=0); env.frame()\n"
              "import transformers.modeling_utils, torch._dynamo\n"
              "print(env.frame().shape)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(64, 64, 3)" in done.stdout
