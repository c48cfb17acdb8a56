"""Learner throughput on the CPU: training samples/s of a PAC config against the samples/s the
lake dataset delivers in the same run (data path ÷ training: it must stay well above 1, the issue
asks for >= 3), on a local lake of Panda-scene episodes relabelled with a few reward functions.

    python benchmarks/learner_throughput.py [--config tiny] [--steps 200] [--episodes 300] [--threads 1]

Writes benchmarks/results/learner_throughput.json (`train_samples_per_s`, `data_samples_per_s`,
`data_over_train`). The goal (issue 22): the CPU config >= 20,000 training samples/s on one thread,
the data path >= 3x that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table, write_result  # noqa: E402

FUNCTIONS = ["reach_red", "grasp_red", "lift_red", "place_red_on_blue", "any_block_lifted"]


def main() -> None:
    import torch

    from _relabel_data import fill
    from infra.settings import Settings
    from learner.captions import CaptionEncoder
    from learner.dataset import DatasetConfig
    from learner.pac.config import get_config
    from learner.pac.learning import PACLearner, parameter_count
    from learner.relabel import relabel, resolve
    from learner.train import training_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=200, help="gradient steps timed")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--alpha", type=float, help="PAC's BC weight (default the config's; 1 is BC, no critic)")
    parser.add_argument("--critic", choices=("sampled", "factorised"), help="PAC's critic (default the config's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = get_config(args.config)
    if args.alpha is not None:
        config = config.replace(alpha=args.alpha)
    if args.critic is not None:
        config = config.replace(critic=args.critic)
    settings = Settings.load(bus="memory", lake=f"file://{tempfile.mkdtemp(prefix='learner-bench-')}/lake")
    fill(settings, args.episodes, 100)
    relabel(settings, resolve(FUNCTIONS), publish=False)
    data = training_data(settings, config, DatasetConfig(batch_size=config.batch_size, epochs=None,
                                                         achieved_boost=config.achieved_boost))
    captions = CaptionEncoder()

    batches, started = [], time.perf_counter()
    for batch in data:  # the data path alone, as training would draw it (captions embedded, cached)
        batches.append(dict(batch, caption=captions.encode(list(batch["caption"]))))
        if len(batches) == 1:  # the first batch waits for the shuffle buffer to fill: reported apart
            first_s, started = time.perf_counter() - started, time.perf_counter()
        if len(batches) == args.steps + 4:
            break
    data_s = time.perf_counter() - started
    data.close()

    def rate(config) -> float:
        learner = PACLearner(config, device="cpu")
        for batch in batches[:4]:  # warm-up
            learner.step(batch)
        started = time.perf_counter()
        for batch in batches[4:]:
            learner.step(batch)
        return args.steps * config.batch_size / (time.perf_counter() - started)

    train_rate, bc_rate = rate(config), rate(config.replace(alpha=1.0))
    data_rate = (len(batches) - 1) * config.batch_size / data_s
    print(f"config {config.name}: {parameter_count(config) / 1e6:.2f}M parameters, batch {config.batch_size}, "
          f"{args.threads} torch threads, {args.episodes * 100} steps in the lake, {len(FUNCTIONS)} reward functions; "
          f"the dataset's first batch took {first_s:.2f}s (shuffle buffer filling)\n")
    print(table(["path", "samples/s", "ms per batch", "ratio to training"], [
        ["lake dataset (DuckDB join, shuffle, prefetch, captions)", data_rate,
         1000 * config.batch_size / data_rate, data_rate / train_rate],
        [f"PAC training step ({config.name}, {config.critic} critic, alpha {config.alpha:g}: forward, backward, AdamW, "
         "target update)",
         train_rate, 1000 * config.batch_size / train_rate, 1.0],
        [f"BC training step ({config.name}, alpha 1: no critic)", bc_rate, 1000 * config.batch_size / bc_rate,
         bc_rate / train_rate],
    ]))
    print("results:", write_result("learner_throughput", {
        "config": config.name, "parameters": parameter_count(config), "batch_size": config.batch_size,
        "alpha": config.alpha, "critic": config.critic, "threads": args.threads, "train_samples_per_s": train_rate,
        "bc_train_samples_per_s": bc_rate, "data_samples_per_s": data_rate, "data_over_train": data_rate / train_rate,
        "first_batch_s": first_s}))


if __name__ == "__main__":
    main()
