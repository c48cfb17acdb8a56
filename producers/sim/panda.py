"""Cartesian control of the Panda: damped-least-squares IK on the end-effector site, holding the
hand pointing down with the fingers closing along the world y axis, pulled toward a rest posture
in the null space. The actuators are position servos: the IK result is their set point."""

from __future__ import annotations

import mujoco
import numpy as np

from producers.sim.scene import ARM_JOINTS, FINGER_JOINTS

# Site axes (columns): x = world x, y = -world y (the fingers close along it), z = -world z
# (pointing down). With these assets the natural posture for it has q6 near 0.75 and q7 = 0;
# REST_POSTURE was found by IK from random starts, keeping the solution farthest from limits.
HAND_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
REST_POSTURE = np.array([0.0, -0.2, 0.0, -2.5, 0.0, 0.75, 0.0])
FINGER_OPEN, FINGER_CLOSED = 0.04, 0.0


class PandaIK:
    def __init__(self, model: mujoco.MjModel, damping: float = 0.05, iterations: int = 12):
        self.model = model
        self.scratch = mujoco.MjData(model)
        self.site = model.site("end_effector").id
        self.qadr = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dadr = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.lower = np.array([model.joint(j).range[0] for j in ARM_JOINTS])
        self.upper = np.array([model.joint(j).range[1] for j in ARM_JOINTS])
        self.damping, self.iterations = damping, iterations
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def solve(self, qpos: np.ndarray, q_arm: np.ndarray, target: np.ndarray,
              rotation: np.ndarray = HAND_DOWN) -> np.ndarray:
        """Arm joint angles that put the site at `target` with `rotation`, starting from `q_arm`
        (the other joints as in `qpos`)."""
        data = self.scratch
        data.qpos[:] = qpos
        q = q_arm.copy()
        for _ in range(self.iterations):
            data.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, data)
            mujoco.mj_comPos(self.model, data)
            current = data.site_xmat[self.site].reshape(3, 3)
            err_pos = target - data.site_xpos[self.site]
            err_rot = 0.5 * sum(np.cross(current[:, i], rotation[:, i]) for i in range(3))
            error = np.concatenate([err_pos, err_rot])
            mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dadr], self._jacr[:, self.dadr]])
            jjt = jac @ jac.T + self.damping**2 * np.eye(6)
            step = jac.T @ np.linalg.solve(jjt, error)
            null = np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)
            step += null @ (0.1 * (REST_POSTURE - q))
            q = np.clip(q + step, self.lower, self.upper)
            if np.linalg.norm(err_pos) < 5e-4 and np.linalg.norm(err_rot) < 5e-3:
                break
        return q

    def site_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        return data.site_xpos[self.site].copy(), data.site_xmat[self.site].reshape(3, 3).copy()


def finger_qadr(model: mujoco.MjModel) -> np.ndarray:
    return np.array([model.joint(j).qposadr[0] for j in FINGER_JOINTS])
