"""Loader throughput: samples/s of the learner's dataset (lake steps ⋈ rewards through DuckDB, shuffle
buffer, prefetch thread) against sampling the same arrays already in memory (NumPy gathers).

    python benchmarks/loader_throughput.py [--episodes 1000] [--steps 100] [--batch 256] [--lake URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402

FUNCTIONS = ["reach_red", "lift_red", "place_red_on_blue@1", "place_red_on_blue@2", "any_block_lifted",
             "blocks_touching", "two_block_tower", "go_home"]


def main() -> None:
    import numpy as np

    from _relabel_data import fill
    from infra.settings import Settings
    from learner.dataset import DatasetConfig, LakeDataset
    from learner.relabel import relabel, resolve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--shuffle-buffer", type=int, default=16384)
    parser.add_argument("--lake", help="default: a new local lake in a temporary directory")
    parser.add_argument("--bus", default="memory")
    args = parser.parse_args()
    settings = Settings.load(bus=args.bus, lake=args.lake or f"file://{tempfile.mkdtemp(prefix='loader-bench-')}/lake")
    fill(settings, args.episodes, args.steps)
    functions = resolve(FUNCTIONS)
    relabel(settings, functions, dataset="loader", publish=False)

    config = DatasetConfig(dataset="loader", batch_size=args.batch, shuffle_buffer=args.shuffle_buffer)
    started = time.perf_counter()
    first = None
    samples, arrays = 0, []
    for batch in LakeDataset(settings, config):
        first = first or time.perf_counter() - started
        samples += len(batch["reward"])
        arrays.append(batch)
    lake_s = time.perf_counter() - started
    memory = {k: np.concatenate([b[k] for b in arrays]) for k in ("observation", "action", "next_observation",
                                                                    "reward", "discount", "skill")}
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(samples // args.batch):
        index = rng.integers(samples, size=args.batch)
        {k: v[index] for k, v in memory.items()}
    memory_s = time.perf_counter() - started

    print(f"{samples} transitions ({args.episodes} episodes x {args.steps} steps, {len(functions)} skills mixed "
          f"uniformly), batch {args.batch}, shuffle buffer {args.shuffle_buffer}")
    print(table(["path", "samples/s", "x in memory", "first batch s"],
                [["lake dataset, one epoch", samples / lake_s, (samples / lake_s) / (samples / memory_s), first],
                 ["NumPy gathers from arrays in memory", samples / memory_s, 1.0, "-"]]))


if __name__ == "__main__":
    main()
