"""Rollout throughput on one core, against raw physics of the same scene in the same run.

(a) Control steps/s of `env.step` without frames against raw `mj_step` (the physical limit: one
control step is `substeps` physics steps, run as one `mj_step(..., nstep=substeps)` call).
(b) 64x64 camera frames: ms per frame of the EGL render (visual meshes with 4x multisampling, as
before; without it; the low-poly default) and of the PNG encoding (Pillow's default level 6, as
before, and level 1) apart; then control steps/s with a frame on every step the old way (the
same-run baseline for frames), the new way, and on every k-th step.
The rows of (a) and (b) run interleaved in rounds (the machine is shared: a busy neighbour slows
all rows of a round alike); each figure is the median over the rounds, each ratio the median of
the per-round ratios. Then each expert's success rate per skill over many seeds, clean and noisy
(`--seeds 0` skips it). Control actions are random bounded moves, as a learned policy's may be.

    python benchmarks/rollout_throughput.py [--steps 2000] [--rounds 10] [--frame-every 5] [--seeds 100] [--noise 0.2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402


def stepper(env, frame_every: int = 0, png_level: int = 1):
    """A function running n control steps of a random walk in `env` (its own state, carried over
    between calls), with a frame rendered and encoded every `frame_every` steps (0: none)."""
    from producers.rollout import encode_png

    env.reset(seed=0)
    rng, count = np.random.default_rng(0), [0]

    def run(n: int) -> None:
        for _ in range(n):
            env.step(np.concatenate([rng.uniform(-0.3, 0.3, 3), [1.0]]))
            if frame_every and count[0] % frame_every == 0:
                encode_png(env.frame(), png_level)
            count[0] += 1
    return run


def interleaved(rows: dict, steps: int, rounds: int) -> dict[str, list[float]]:
    """Control steps/s of each row in each round; the rows take turns within a round."""
    per_round = max(1, steps // rounds)
    rates: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, run in rows.items():
            started = time.perf_counter()
            run(per_round)
            rates[name].append(per_round / (time.perf_counter() - started))
    return rates


def ratio(a: list[float], b: list[float]) -> float:
    """Median over the rounds of a / b."""
    return statistics.median(x / y for x, y in zip(a, b))


def frame_costs(env, render, frames: int) -> tuple[float, list[np.ndarray]]:
    """ms per `render(env.data)` and the frames, along a random walk (physics outside the timer)."""
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    render(env.data)  # the renderer (EGL context, meshes uploaded) is made once
    pixels, elapsed = [], 0.0
    for _ in range(frames):
        env.step(np.concatenate([rng.uniform(-0.3, 0.3, 3), [1.0]]))
        started = time.perf_counter()
        pixels.append(render(env.data))
        elapsed += time.perf_counter() - started
    return elapsed / frames * 1e3, pixels


def encode_cost(pixels: list[np.ndarray], level: int) -> tuple[float, float]:
    """ms per PNG encoding and mean bytes per frame."""
    from producers.rollout import encode_png

    started = time.perf_counter()
    sizes = [len(encode_png(p, level)) for p in pixels]
    return (time.perf_counter() - started) / len(pixels) * 1e3, float(np.mean(sizes))


def main() -> None:
    from producers.sim.env import BlockStackingEnv  # first: it selects EGL before MuJoCo loads
    from producers.sim.evaluate import success_rates
    from producers.sim.render import FrameRenderer

    import mujoco

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="control steps per row, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--frame-every", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.2)
    args = parser.parse_args()

    envs = {name: BlockStackingEnv(frame_detail=detail) for name, detail in
            [("raw", "low"), ("plain", "low"), ("old", "full"), ("every", "low"), ("every_k", "low")]}
    raw = envs["raw"]
    raw.reset(seed=0)
    k = args.frame_every
    rounds = interleaved({
        "raw": lambda n: mujoco.mj_step(raw.model, raw.data, nstep=n * raw.substeps),
        "plain": stepper(envs["plain"]),
        "old": stepper(envs["old"], frame_every=1, png_level=6),
        "every": stepper(envs["every"], frame_every=1),
        "every_k": stepper(envs["every_k"], frame_every=k),
    }, args.steps, args.rounds)
    rates = {name: statistics.median(v) for name, v in rounds.items()}
    to_limit = {name: ratio(v, rounds["raw"]) for name, v in rounds.items()}
    to_old = {name: ratio(v, rounds["old"]) for name, v in rounds.items()}

    substeps, limit = raw.substeps, rates["raw"]
    print(f"one core; control at {1 / (substeps * raw.model.opt.timestep):.0f} Hz = {substeps} physics steps; "
          f"{args.steps} control steps per row in {args.rounds} interleaved rounds (medians)\n")
    print(table(["what", "physics steps/s", "control steps/s", "ratio to the mj_step limit", "overhead x"], [
        ["raw mj_step of the same scene", limit * substeps, limit, 1.0, 1.0],
        ["env.step (IK + gravity compensation), no frames", rates["plain"] * substeps, rates["plain"],
         to_limit["plain"], 1 / to_limit["plain"]],
    ]))

    frames = min(args.steps, 300)
    full = envs["old"]
    render_full, pixels = frame_costs(full, lambda data: full.frame(), frames)
    no_msaa = FrameRenderer(copy.copy(raw.model), "full")  # visual meshes, multisampling off
    no_msaa.model.vis.quality.offsamples = 0
    render_no_msaa, _ = frame_costs(raw, lambda data: no_msaa.frame(data, "front", 64), frames)
    no_msaa.close()
    render_low, _ = frame_costs(raw, lambda data: raw.frame(), frames)
    png6, bytes6 = encode_cost(pixels, 6)
    png1, bytes1 = encode_cost(pixels, 1)
    print(f"\n64x64 frames, ms each over {frames} frames\n")
    print(table(["stage", "ms per frame", "bytes per frame"], [
        ["render, visual meshes + 4x MSAA (before)", render_full, "-"],
        ["render, visual meshes, no MSAA", render_no_msaa, "-"],
        ["render, low-poly arm, no MSAA (default)", render_low, "-"],
        ["PNG, Pillow default level 6 (before)", png6, bytes6],
        ["PNG, level 1 (default)", png1, bytes1],
    ]))

    print("\ncontrol steps/s with 64x64 frames (same rounds as above)\n")
    print(table(["frames", "control steps/s", "ratio to the mj_step limit", "x old frame path"], [
        ["every step, visual meshes + MSAA, PNG 6 (old frame path)", rates["old"], to_limit["old"], 1.0],
        ["every step, low-poly, PNG 1 (default)", rates["every"], to_limit["every"], to_old["every"]],
        [f"every {k}th step, low-poly, PNG 1 (--frame-every {k})", rates["every_k"], to_limit["every_k"],
         to_old["every_k"]],
    ]))
    for env in envs.values():
        env.close()

    if args.seeds:
        seeds = range(args.seeds)
        clean = success_rates(seeds, 0.0)
        noisy = success_rates(seeds, args.noise)
        print(f"\nexpert success over {args.seeds} seeds (each skill from a fresh scene, after its setup skill)\n")
        print(table(["skill", "clean", f"noise {args.noise}"], [[s, clean[s], noisy[s]] for s in clean]))


if __name__ == "__main__":
    main()
