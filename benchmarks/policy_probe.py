"""A trained run's success per task on validation seeds (20,000,000 and up: neither training data nor the
benchmarks' held-out seeds), with the acting rule overridden: the diagnostic behind choices made on
learning_quality's lake without touching its held-out seeds.

    python benchmarks/policy_probe.py --lake /tmp/lq/lake --run pac-0 --episodes 8 --set act_candidates=16
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table  # noqa: E402
from benchmarks.learning_quality import TASKS, NullProducer  # noqa: E402

VALIDATION_SEED = 20_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, required=True, help="the benchmark's lake directory")
    parser.add_argument("--run", required=True, help="run id (its latest checkpoint)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--episodes", type=int, default=8, help="validation episodes per task")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config fields to override when acting, e.g. act_candidates=16")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from infra.settings import Settings
    from learner.evaluate import LearnedPolicy, evaluate
    from schemas.stats import wilson

    settings = Settings.load(env={}, lake=f"file://{args.lake.resolve()}", bus="memory")
    policy = LearnedPolicy.load(settings, args.run)
    changes = {}
    for item in args.set:
        field, _, value = item.partition("=")
        changes[field] = ast.literal_eval(value)
    policy.learner.config = policy.learner.config.replace(**changes)
    results = evaluate(NullProducer(), policy, args.tasks, args.episodes, seed=VALIDATION_SEED)
    wins, n = sum(w for w, _ in results.values()), sum(k for _, k in results.values())
    print(table(["task", "success"], [[t, f"{w}/{k}"] for t, (w, k) in results.items()]))
    low, high = wilson(wins, n)
    print(f"{args.run} {changes or ''}: mean {np.mean([w / k for w, k in results.values()]):.3f} "
          f"({wins}/{n}, Wilson 95% [{low:.2f}, {high:.2f}]) on validation seeds from {VALIDATION_SEED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
