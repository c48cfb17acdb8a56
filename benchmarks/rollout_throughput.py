"""Rollout throughput on one core: control steps/s of the environment (a) without frames and
(b) with a 64x64 camera frame rendered and PNG-encoded every step, against raw `mj_step` of the
same scene in the same run (the physical limit: one control step is `substeps` physics steps).
Then each expert's success rate per skill over many seeds, clean and noisy.

    python benchmarks/rollout_throughput.py [--steps 2000] [--seeds 100] [--noise 0.2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402


def control_rate(env, steps: int, frames: bool) -> float:
    from producers.rollout import encode_png

    env.reset(seed=0)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(steps):
        env.step(np.concatenate([rng.uniform(-0.3, 0.3, 3), [1.0]]))
        if frames:
            encode_png(env.frame())
    return steps / (time.perf_counter() - started)


def main() -> None:
    from producers.sim.env import BlockStackingEnv  # first: it selects EGL before MuJoCo loads
    from producers.sim.evaluate import success_rates

    import mujoco

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.2)
    args = parser.parse_args()

    env = BlockStackingEnv()
    env.reset(seed=0)
    physics = args.steps * env.substeps
    started = time.perf_counter()
    for _ in range(physics):
        mujoco.mj_step(env.model, env.data)
    mj_rate = physics / (time.perf_counter() - started)
    limit = mj_rate / env.substeps
    plain, framed = control_rate(env, args.steps, False), control_rate(env, args.steps, True)
    print(f"one core; control at {1 / (env.substeps * env.model.opt.timestep):.0f} Hz = {env.substeps} physics "
          f"steps; {args.steps} control steps per row\n")
    print(table(["what", "steps/s", "control steps/s", "ratio to the mj_step limit"], [
        ["raw mj_step of the same scene", mj_rate, limit, 1.0],
        ["env.step (IK + gravity compensation), no frames", plain * env.substeps, plain, plain / limit],
        ["env.step + 64x64 frame + PNG every step", framed * env.substeps, framed, framed / limit],
    ]))
    env.close()

    seeds = range(args.seeds)
    clean = success_rates(seeds, 0.0)
    noisy = success_rates(seeds, args.noise)
    print(f"\nexpert success over {args.seeds} seeds (each skill from a fresh scene, after its setup skill)\n")
    print(table(["skill", "clean", f"noise {args.noise}"], [[s, clean[s], noisy[s]] for s in clean]))


if __name__ == "__main__":
    main()
