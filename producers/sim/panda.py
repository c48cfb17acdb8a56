"""Cartesian control of the Panda: damped-least-squares IK on the end-effector site, holding the
hand pointing down with the fingers closing along the world y axis, pulled toward a rest posture
in the null space. The actuators are position servos: the IK result is their set point."""

from __future__ import annotations

import producers.sim.gl  # noqa: F401 (first: MuJoCo reads MUJOCO_GL when it loads)

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
    """One `solve` per control step. The solve usually runs all its iterations (the damped
    null-space pull leaves ~1-2 mm of error above the 0.5 mm tolerance), and at ~1 us for MuJoCo's
    kinematics an iteration's cost is its numpy calls: so the buffers and views are made once and
    an iteration is ~20 small calls."""

    def __init__(self, model: mujoco.MjModel, damping: float = 0.05, iterations: int = 12):
        self.model = model
        self.scratch = mujoco.MjData(model)
        self.site = model.site("end_effector").id
        self.qadr = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dadr = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.lower = np.array([model.joint(j).range[0] for j in ARM_JOINTS])
        self.upper = np.array([model.joint(j).range[1] for j in ARM_JOINTS])
        self.damping, self.iterations = damping, iterations
        self._jac = np.zeros((6, model.nv))      # rows: translation (3), rotation (3)
        self._jacp, self._jacr = self._jac[:3], self._jac[3:]
        self._damped = damping**2 * np.eye(6)
        self._error = np.zeros(6)
        self._err_pos, self._err_rot = self._error[:3], self._error[3:]
        self._chol = np.zeros((6, 6))
        self._x = np.zeros(6)
        self._rest = 0.1 * REST_POSTURE
        self._rotation_error = {HAND_DOWN.tobytes(): _rotation_error_map(HAND_DOWN)}
        # Views into the scratch data and the Jacobian (basic slices: the arm's addresses are
        # contiguous), made once.
        self._q_view = self.scratch.qpos[_as_slice(self.qadr)]
        self._arm_jac = self._jac[:, _as_slice(self.dadr)]
        self._site_pos = self.scratch.site_xpos[self.site]
        self._site_rot = self.scratch.site_xmat[self.site]  # 9 floats, row-major

    def solve(self, qpos: np.ndarray, q_arm: np.ndarray, target: np.ndarray,
              rotation: np.ndarray = HAND_DOWN) -> np.ndarray:
        """Arm joint angles that put the site at `target` with `rotation`, starting from `q_arm`
        (the other joints as in `qpos`). Damped least squares with a pull toward REST_POSTURE in
        the null space: step = v + J^T (J J^T + l^2 I)^-1 (e - J v), v = 0.1 (rest - q), which is
        J^T A^-1 e + (I - J^T A^-1 J) v with a single 6x6 solve."""
        data, model, jac = self.scratch, self.model, self._arm_jac
        err_pos, err_rot = self._err_pos, self._err_rot
        rot_error = self._rotation_error.get(rotation.tobytes())
        if rot_error is None:
            rot_error = self._rotation_error[rotation.tobytes()] = _rotation_error_map(rotation)
        data.qpos[:] = qpos
        q = np.array(q_arm, dtype=np.float64)
        for _ in range(self.iterations):
            self._q_view[:] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            np.subtract(target, self._site_pos, out=err_pos)
            np.dot(rot_error, self._site_rot, out=err_rot)
            mujoco.mj_jacSite(model, data, self._jacp, self._jacr, self.site)
            pull = self._rest - 0.1 * q
            np.add(jac @ jac.T, self._damped, out=self._chol)
            mujoco.mju_cholFactor(self._chol, 0.0)
            mujoco.mju_cholSolve(self._x, self._chol, self._error - jac @ pull)
            q += pull + jac.T @ self._x
            np.minimum(np.maximum(q, self.lower, out=q), self.upper, out=q)
            if err_pos @ err_pos < 5e-4**2 and err_rot @ err_rot < 5e-3**2:
                break
        return q

    def site_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        return data.site_xpos[self.site].copy(), data.site_xmat[self.site].reshape(3, 3).copy()


def finger_qadr(model: mujoco.MjModel) -> np.ndarray:
    return np.array([model.joint(j).qposadr[0] for j in FINGER_JOINTS])


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    if len(index) and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _rotation_error_map(rotation: np.ndarray) -> np.ndarray:
    """H (3x9) with H @ vec(R) = 0.5 * sum_i R[:, i] x rotation[:, i] for any R (vec row-major):
    the sum is 0.5 * vee(M - M^T) with M = rotation @ R^T, which is linear in R."""
    h = np.zeros((3, 9))
    for row, (i, j) in enumerate(((2, 1), (0, 2), (1, 0))):  # vee(S) = (S21, S02, S10)
        h[row, 3 * j:3 * j + 3] += 0.5 * rotation[i]
        h[row, 3 * i:3 * i + 3] -= 0.5 * rotation[j]
    return h
