"""MuJoCo reads MUJOCO_GL when it loads: import this first. EGL renders offscreen (Mesa on the CPU
where there is no GPU), unless MUJOCO_GL says otherwise."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
