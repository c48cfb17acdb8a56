"""Camera frames: one offscreen renderer per environment, made on the first frame and kept until
the environment closes (a rollout worker keeps its environment, so it renders with one context).

On a CPU renderer (Mesa llvmpipe) a small frame costs triangles, not pixels: the arm's visual
meshes are 134k triangles, almost all of a 64x64 frame, and 4x multisampling doubles it
(benchmarks/README.md has the figures). `detail="low"`, the default, draws each arm link's
collision mesh (its convex hull, 200-300 triangles) in the visual mesh's colour and does not
multisample; the scene and the gripper read the same at 64x64. `"full"` draws the visual meshes
with multisampling, as frames were drawn before.
"""

from __future__ import annotations

import copy

import producers.sim.gl  # noqa: F401 (first: MuJoCo reads MUJOCO_GL when it loads)

import mujoco
import numpy as np

DETAILS = ("low", "full")
_HIDDEN = 5  # a geom group that mujoco's default visual options do not draw


def _load_triton_before_mesa() -> None:
    """Triton (torch's compiler, installed with the learner extra) links its own LLVM; loaded after
    Mesa's llvmpipe has loaded the system's, its initialisation crashes the process (segfault at
    `import transformers` or `torch._dynamo` after the first frame). Loaded first, both work."""
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        try:
            import triton._C.libtriton  # noqa: F401
        except ImportError:  # a triton without its compiled part: nothing to load early
            pass


class FrameRenderer:
    def __init__(self, model: mujoco.MjModel, detail: str = "low"):
        if detail not in DETAILS:
            raise ValueError(f"frame detail must be one of {DETAILS}, got {detail!r}")
        _load_triton_before_mesa()
        self.model = low_poly_view(model) if detail == "low" else model
        self._renderers: dict[int, mujoco.Renderer] = {}  # by frame size: no context churn when sizes alternate

    def frame(self, data: mujoco.MjData, camera: str, size: int) -> np.ndarray:
        renderer = self._renderers.get(size)
        if renderer is None:
            renderer = self._renderers[size] = mujoco.Renderer(self.model, size, size)
        renderer.update_scene(data, camera=camera)
        return renderer.render()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def low_poly_view(model: mujoco.MjModel) -> mujoco.MjModel:
    """A copy of `model` for drawing only (a copy, not a compile; the physics model is untouched):
    every `<part>_viz` mesh geom with a `<part>_col` twin on the same body is hidden and the twin
    drawn in its colour. Multisampling off."""
    view = copy.copy(model)
    mesh_geoms: dict[tuple[int, str], int] = {}  # (body, mesh name) -> geom
    for g in range(view.ngeom):
        if view.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:
            mesh_geoms[(int(view.geom_bodyid[g]), view.mesh(view.geom_dataid[g]).name)] = g
    for (body, mesh), visual in mesh_geoms.items():
        twin = mesh_geoms.get((body, mesh.removesuffix("_viz") + "_col")) if mesh.endswith("_viz") else None
        if twin is None:
            continue
        view.geom_group[twin] = view.geom_group[visual]
        view.geom_rgba[twin] = view.geom_rgba[visual]
        view.geom_matid[twin] = view.geom_matid[visual]
        view.geom_group[visual] = _HIDDEN
    view.vis.quality.offsamples = 0
    return view
