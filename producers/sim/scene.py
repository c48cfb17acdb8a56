"""The block-stacking scene: a Franka Panda (gymnasium-robotics' assets, Apache-2.0) on a table
with three 4 cm cubes. The robot model is theirs; the scene around it is ours.

Quirks of these assets (shared/FACTS.md): link6/link7 are rotated relative to the usual Franka
description, so the ready pose has q6 = q7 = 0; the fingers are scaled 1.75x; the actuators are
position servos, so `build_model` turns on MuJoCo's gravity compensation for the robot's bodies.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import producers.sim.gl  # noqa: F401 (first: MuJoCo reads MUJOCO_GL when it loads)

import mujoco

COLOURS = {"red": "0.85 0.1 0.1 1", "green": "0.1 0.7 0.2 1", "blue": "0.15 0.3 0.9 1"}
CUBE_HALF = 0.02
TABLE_TOP = 0.4                      # z of the table surface, metres
ROBOT_BASE = (0.0, 0.0, TABLE_TOP)   # the arm stands on the table's near edge
ARM_JOINTS = [f"robot:panda0_joint{i}" for i in range(1, 8)]
FINGER_JOINTS = ["robot:panda0_finger_joint1", "robot:panda0_finger_joint2"]
READY_POSE = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.0]  # above the table, hand pointing down


def franka_assets() -> Path:
    """gymnasium-robotics' Franka include files, found without importing the package
    (its import prints deprecation notices about unrelated environments)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        from infra.optional import MissingExtra

        raise MissingExtra("the simulator needs gymnasium-robotics: pip install 'robolake[sim]'")
    return Path(spec.submodule_search_locations[0]) / "envs" / "assets" / "kitchen_franka" / "franka_assets"


def scene_xml(shadows: bool = False) -> str:
    root = franka_assets()
    cubes = "\n".join(
        f'<body name="{name}" pos="{0.5 + 0.1 * i} 0 {TABLE_TOP + CUBE_HALF}"><freejoint name="{name}"/>'
        f'<geom name="{name}" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" rgba="{rgba}" mass="0.05" '
        f'friction="1.5 0.02 0.001" condim="4"/></body>'
        for i, (name, rgba) in enumerate(COLOURS.items()))
    shadow_size = 1024 if shadows else 0
    return f"""
<mujoco model="robolake_block_stacking">
  <include file="{root}/assets.xml"/>
  <compiler angle="radian" meshdir="{root}/meshes"/>
  <option timestep="0.002" integrator="implicitfast"/>
  <visual><quality shadowsize="{shadow_size}"/><global offwidth="256" offheight="256"/></visual>
  <worldbody>
    <light pos="0.4 0 2" dir="0 0 -1" diffuse=".8 .8 .8" castshadow="{'true' if shadows else 'false'}"/>
    <geom name="floor" type="plane" size="2 2 .1" rgba=".25 .25 .28 1"/>
    <geom name="table" type="box" pos="0.45 0 {TABLE_TOP / 2}" size="0.45 0.5 {TABLE_TOP / 2}" rgba=".62 .52 .42 1"/>
    <body name="robot" pos="{ROBOT_BASE[0]} {ROBOT_BASE[1]} {ROBOT_BASE[2]}">
      <include file="{root}/chain.xml"/>
    </body>
    {cubes}
    <camera name="scene" pos="1.3 0 1.1" xyaxes="0 1 0 -0.55 0 0.83"/>
    <camera name="front" pos="1.0 0 0.75" xyaxes="0 1 0 -0.35 0 0.94" fovy="50"/>
  </worldbody>
  <include file="{root}/actuator.xml"/>
</mujoco>"""


def build_model(shadows: bool = False) -> mujoco.MjModel:
    """The compiled scene. Position servos sag under gravity, so every robot body is gravity
    compensated by MuJoCo itself (`gravcomp`, a passive force computed inside `mj_step`): no Python
    runs per physics step, and a control step can be one `mj_step(..., nstep=N)` call."""
    spec = mujoco.MjSpec.from_string(scene_xml(shadows))
    for body in spec.body("robot").find_all(mujoco.mjtObj.mjOBJ_BODY):
        body.gravcomp = 1.0
    return spec.compile()
