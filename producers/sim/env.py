"""`BlockStackingEnv`: a Gymnasium environment of the Panda and three cubes, controlled at 10 Hz.

Action (4 floats in [-1, 1]): end-effector displacement (dx, dy, dz) in units of `max_step_m`
(default 5 cm per control step) in the world frame, and a gripper command (> 0 open, <= 0 close).
Out-of-range values are clipped; a NaN anywhere makes the whole action a no-op (hold position,
keep the gripper as it is) and is counted in `info["rejected_actions"]`. The hand stays pointing
down; the target is kept inside the workspace box above the table.

Observation (v2, 46 float32; the fields are schemas/observation.py's): arm joint positions (7) and
velocities (7), gripper opening in metres (1), grip point position (3) and quaternion (4), for red,
green, blue: position (3) and quaternion (4), then the controller's set point (3, `env.target`:
where the grip point is being driven). `OBSERVATION_NAMES` labels each float. An episode's
observation version is `ENV_VERSION` (v1 episodes have the first 43 floats only).

A physics blow-up (non-finite state) ends the episode with `info["termination"] = "sim_error"`.
"""

from __future__ import annotations

import producers.sim.gl  # noqa: F401 (first: MuJoCo reads MUJOCO_GL when it loads)

import gymnasium as gym
import mujoco
import numpy as np

from producers.sim import scene
from producers.sim.panda import FINGER_CLOSED, FINGER_OPEN, REST_POSTURE, PandaIK, finger_qadr
from producers.sim.render import DETAILS, FrameRenderer
from producers.sim.scene import COLOURS, CUBE_HALF, TABLE_TOP
from schemas import observation as observation_schema

ENV_NAME, ENV_VERSION = observation_schema.ENV_NAME, 2  # also the observation version (schemas/observation.py)
HOME = np.array([0.45, 0.0, TABLE_TOP + 0.25])
# The controlled point is between the fingertips: this far below the model's end-effector site
# along the (downward) hand axis. The fingertips reach 8 mm further.
GRIP_OFFSET = 0.035
WORKSPACE = (np.array([0.25, -0.35, TABLE_TOP + 0.012]), np.array([0.75, 0.35, TABLE_TOP + 0.45]))
SPAWN = (np.array([0.38, -0.2]), np.array([0.62, 0.2]))
MIN_CUBE_DISTANCE = 0.08
_BLOW_UP_WARNINGS = np.array([mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                              mujoco.mjtWarning.mjWARN_BADQACC], dtype=int)


OBSERVATION_NAMES = observation_schema.names(ENV_VERSION)


class BlockStackingEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, control_hz: float = 10.0, max_step_m: float = 0.05, frame_size: int = 64,
                 render_mode: str | None = None, shadows: bool = False, frame_detail: str = "low"):
        if frame_detail not in DETAILS:
            raise ValueError(f"frame detail must be one of {DETAILS}, got {frame_detail!r}")
        self.model = scene.build_model(shadows)
        self.data = mujoco.MjData(self.model)
        self.ik = PandaIK(self.model)
        self.substeps = max(1, round(1.0 / control_hz / self.model.opt.timestep))
        self.max_step_m, self.frame_size, self.render_mode = max_step_m, frame_size, render_mode
        self.arm_act = np.array([self.model.actuator(f"panda0_joint{i}").id for i in range(1, 8)])
        self.finger_act = np.array([self.model.actuator(n).id for n in ("r_gripper_finger_joint",
                                                                          "l_gripper_finger_joint")])
        self.arm_dofs = self.ik.dadr
        self.fingers = finger_qadr(self.model)
        self.cube_qadr = {c: self.model.joint(c).qposadr[0] for c in COLOURS}
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(len(observation_schema.ACTION_NAMES),),
                                           dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(OBSERVATION_NAMES),), dtype=np.float32)
        self.frame_detail = frame_detail
        self._renderer: FrameRenderer | None = None  # made on the first frame, kept until close()
        self.target = HOME.copy()
        self.gripper = FINGER_OPEN
        self.rejected_actions = 0

    # --- Gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        for colour, xy in zip(COLOURS, self._spawn_positions()):
            adr = self.cube_qadr[colour]
            self.data.qpos[adr:adr + 3] = [xy[0], xy[1], TABLE_TOP + CUBE_HALF]
            self.data.qpos[adr + 3:adr + 7] = [1, 0, 0, 0]
        self.target, self.gripper, self.rejected_actions = HOME.copy(), FINGER_OPEN, 0
        q = self.ik.solve(self.data.qpos, REST_POSTURE, self._site_target())
        self.data.qpos[self.ik.qadr] = q
        self.data.qpos[self.fingers] = FINGER_OPEN
        self.data.ctrl[self.arm_act] = q
        self.data.ctrl[self.finger_act] = FINGER_OPEN
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=50)  # let the cubes settle
        return self.observation(), self._info()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,) or not np.all(np.isfinite(action)):
            self.rejected_actions += 1  # the documented rule: a no-op, never a crashed simulator
            action = np.array([0.0, 0.0, 0.0, 1.0 if self.gripper == FINGER_OPEN else -1.0])
        action = np.clip(action, -1.0, 1.0)
        self.target = np.clip(self.target + action[:3] * self.max_step_m, *WORKSPACE)
        self.gripper = FINGER_OPEN if action[3] > 0 else FINGER_CLOSED
        q = self.ik.solve(self.data.qpos, self.data.ctrl[self.arm_act].copy(), self._site_target())
        self.data.ctrl[self.arm_act] = q
        self.data.ctrl[self.finger_act] = self.gripper
        blow_ups = self._instability_warnings()
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)  # gravity compensation is in the model
        # MuJoCo resets the state itself when it diverges and only counts a warning: look at both.
        if (self._instability_warnings() > blow_ups or not np.all(np.isfinite(self.data.qpos))
                or not np.all(np.isfinite(self.data.qvel))):
            info = self._info(termination="sim_error")
            return np.zeros(self.observation_space.shape, np.float32), 0.0, True, False, info
        return self.observation(), 0.0, False, False, self._info()

    def render(self):
        return self.frame("scene", 256)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- state -----------------------------------------------------------------------------

    def observation(self) -> np.ndarray:
        d = self.data
        ee_rot = self.ik.site_pose(d)[1]
        ee_pos = self.ee_position()
        ee_quat = np.zeros(4)
        mujoco.mju_mat2Quat(ee_quat, ee_rot.reshape(-1))
        cubes = [d.qpos[self.cube_qadr[c]:self.cube_qadr[c] + 7] for c in COLOURS]
        return np.concatenate([d.qpos[self.ik.qadr], d.qvel[self.arm_dofs], [d.qpos[self.fingers].sum()],
                               ee_pos, ee_quat, *cubes, self.target]).astype(np.float32)

    def cube_position(self, colour: str) -> np.ndarray:
        adr = self.cube_qadr[colour]
        return self.data.qpos[adr:adr + 3].copy()

    def ee_position(self) -> np.ndarray:
        """The grip point (between the fingertips)."""
        position, rotation = self.ik.site_pose(self.data)
        return position + GRIP_OFFSET * rotation[:, 2]

    def gripper_opening(self) -> float:
        return float(self.data.qpos[self.fingers].sum())

    def state_vector(self) -> np.ndarray:
        """The full physics state (for `episode.started.initial_state`)."""
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float32)

    def restore_state(self, state) -> None:
        """Put the scene back in a state of `state_vector()` (an episode's `initial_state`), e.g. to
        render it; the controller's target follows the restored arm."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        nq, nv = self.model.nq, self.model.nv
        if state.shape != (nq + nv,) or not np.all(np.isfinite(state)):
            raise ValueError(f"a state of this scene is {nq + nv} finite floats, got {state.shape[0]}")
        self.data.qpos[:], self.data.qvel[:] = state[:nq], state[nq:]
        mujoco.mj_forward(self.model, self.data)
        self.target = self.ee_position()

    def frame(self, camera: str = "front", size: int | None = None) -> np.ndarray:
        """An RGB frame (uint8, size x size x 3); see producers/sim/render.py for `frame_detail`."""
        if self._renderer is None:
            self._renderer = FrameRenderer(self.model, self.frame_detail)
        return self._renderer.frame(self.data, camera, size or self.frame_size)

    # --- internals -------------------------------------------------------------------------

    def _instability_warnings(self) -> int:
        return int(self.data.warning.number[_BLOW_UP_WARNINGS].sum())

    def _site_target(self) -> np.ndarray:
        return self.target + np.array([0.0, 0.0, GRIP_OFFSET])  # the hand points straight down

    def _spawn_positions(self) -> list[np.ndarray]:
        positions: list[np.ndarray] = []
        while len(positions) < len(COLOURS):
            xy = self.np_random.uniform(*SPAWN)
            if all(np.linalg.norm(xy - p) >= MIN_CUBE_DISTANCE for p in positions):
                positions.append(xy)
        return positions

    def _info(self, termination: str | None = None) -> dict:
        return {"termination": termination, "rejected_actions": self.rejected_actions}
