"""Relabel throughput: `robolake relabel --all` (lake -> DuckDB -> Arrow -> every reward function ->
rewards table) against the same functions in pure NumPy on the same rows already in memory, and
the vectorized functions against the per-row path (a batch of one, as rollout workers call them).

    python benchmarks/relabel_throughput.py [--episodes 1000] [--steps 100] [--lake file:///tmp/x | s3://robolake/bench/x]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table, write_result  # noqa: E402


def main() -> None:
    import numpy as np

    from _relabel_data import fill
    from consumers.lake_sink.sink import land
    from infra.lake_sql import open_lake
    from infra.settings import Settings
    from learner.relabel import relabel, resolve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lake", help="default: a new local lake in a temporary directory")
    parser.add_argument("--bus", default="memory")
    parser.add_argument("--batch-steps", type=int, default=20000)
    parser.add_argument("--per-row", type=int, default=2000, help="rows timed on the per-row path")
    args = parser.parse_args()
    lake = args.lake or f"file://{tempfile.mkdtemp(prefix='relabel-bench-')}/lake"
    settings = Settings.load(bus=args.bus, lake=lake)
    started = time.perf_counter()
    steps = fill(settings, args.episodes, args.steps)
    print(f"filled {lake}: {steps} steps in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    functions = resolve(None, everything=True)

    started = time.perf_counter()
    stats = relabel(settings, functions, dataset=f"bench-{uuid.uuid4().hex[:6]}", batch_steps=args.batch_steps,
                    land=land)
    relabel_s = time.perf_counter() - started

    con = open_lake(settings)  # the same rows, in memory (not timed)
    flat = con.execute("SELECT flatten(list(observation)) FROM steps").fetchone()[0]
    con.close()
    obs = np.asarray(flat, np.float32).reshape(steps, -1)

    def vectorized():
        for fn in functions:
            fn.evaluate(obs)

    started = time.perf_counter()
    vectorized()
    numpy_s = time.perf_counter() - started
    sample = obs[:args.per_row]
    started = time.perf_counter()
    for fn in functions:
        for o in sample:
            fn(o)
    per_row_s = (time.perf_counter() - started) * len(obs) / len(sample)

    fns = len(functions)
    rows = [["relabel --all (read, compute, commit)", steps / relabel_s, stats.rows / relabel_s,
             (steps / relabel_s) / (steps / numpy_s), stats.commits],
            ["pure NumPy, same rows in memory", steps / numpy_s, steps * fns / numpy_s, 1.0, "-"],
            [f"per-row path (extrapolated from {len(sample)} rows)", steps / per_row_s, steps * fns / per_row_s,
             (steps / per_row_s) / (steps / numpy_s), "-"]]
    print(f"{steps} steps, {fns} function versions, lake {lake}")
    print(table(["path", "steps/s (all functions)", "reward rows/s", "x pure NumPy", "commits"], rows))
    print(f"vectorized over per-row: {per_row_s / numpy_s:.0f}x; relabel over per-row: {per_row_s / relabel_s:.1f}x")
    print("wrote", write_result("relabel_throughput", {
        "steps": steps, "functions": fns, "relabel_seconds": relabel_s, "numpy_seconds": numpy_s,
        "commits": stats.commits, "ratio": numpy_s / relabel_s, "goal_ratio": 0.5}))


if __name__ == "__main__":
    main()
