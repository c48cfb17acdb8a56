"""The simulated block-stacking domain (MuJoCo). Rendering uses EGL (Mesa renders on the CPU
where there is no GPU) unless MUJOCO_GL says otherwise."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
