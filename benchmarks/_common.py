"""Small helpers shared by the benchmark scripts (timing, tables). Benchmarks print; they never assert."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int = 5) -> float:
    """Median wall seconds of `repeat` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def write_result(name: str, figures: dict) -> str:
    """benchmarks/results/NAME.json: the figures with the commit, the command and the machine's load
    (1-minute load average at the end, and the cores), so a figure always says how it was made."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(  # the results a benchmark wrote before do not make the code uncommitted
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)benchmarks/results"],
            cwd=root, capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "unknown", False
    record = {"commit": commit + ("+uncommitted changes" if dirty else ""),
              "command": "python " + " ".join([os.path.relpath(sys.argv[0], root.parent), *sys.argv[1:]]),
              "load_average_1m": os.getloadavg()[0], "cores": os.cpu_count(), **figures}
    path = root / "results" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return str(path)
