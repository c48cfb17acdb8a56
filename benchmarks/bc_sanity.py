"""Sanity baseline: behaviour cloning on *clean* scripted-expert data must solve the simple skills.

If BC (alpha = 1, conditioned on the commanded caption) cannot copy a deterministic expert on
reach/grasp/lift, nothing built on the learner (filtered BC, PAC on mixed data) can be judged: the
model or the data path is broken. One seeded command: clean expert episodes for a few single-object
tasks go through the real path (episodes -> lake -> relabel -> `learner.train.train` ->
`LearnedPolicy` in the simulator, reusing benchmarks/learning_quality.py's helpers), and BC's
success on held-out seeds is printed beside the expert's own on the same seeds.

    .venv/bin/python benchmarks/bc_sanity.py --out /tmp/bc_sanity   # benchmarks/README.md has its figures
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table, write_result  # noqa: E402
from benchmarks.learning_quality import (TASKS, NullProducer, evaluate_run, generate, run_id,  # noqa: E402
                                         train_one)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bc-sanity"), help="lake and results")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--episodes-per-task", type=int, default=100, help="clean expert episodes per task")
    parser.add_argument("--steps", type=int, default=10000, help="gradient steps per run")
    parser.add_argument("--config", default="tiny", help="the learner's config (default tiny)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds")
    parser.add_argument("--eval-episodes", type=int, default=50, help="held-out episodes per task and seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see learning_quality.py --threads)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    args = parser.parse_args()
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)

    from consumers.lake_sink.sink import land
    from infra.settings import Settings
    from learner.evaluate import evaluate
    from learner.relabel import relabel, resolve
    from producers.policy import ScriptedExpert
    from schemas.stats import wilson

    args.out.mkdir(parents=True, exist_ok=True)
    lake = f"file://{(args.out / 'lake').resolve()}"
    settings = Settings.load(env={}, lake=lake, bus="memory")
    timings, started = {}, time.perf_counter()
    if not (args.out / "lake" / "catalog.sqlite").exists():
        with tqdm(total=len(args.tasks) * args.episodes_per_task, desc="clean data", unit="episode") as bar:
            generate(settings, args.episodes_per_task, args.seed, bar.update, tasks=args.tasks,
                     mix=(("clean", 1.0),), experiment_id="clean")
        relabel(settings, resolve(list(args.tasks)), dataset="clean", land=land)
    timings["data"] = time.perf_counter() - started

    started = time.perf_counter()
    rids = [run_id("BC", s) for s in range(args.seeds)]
    for seed in tqdm(range(args.seeds), desc="training", unit="run"):
        if not (args.out / "lake" / "checkpoints" / rids[seed]).exists():
            train_one(settings, "BC", seed, args.steps, 1.0, dataset="clean", config_name=args.config)
    timings["training"] = time.perf_counter() - started

    started = time.perf_counter()
    eval_seed = 10_000_000 + args.seed  # never a training episode's seed
    expert = evaluate(NullProducer(), ScriptedExpert(), list(args.tasks), args.eval_episodes, seed=eval_seed)
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    jobs = [(lake, rid, tuple(args.tasks[w::args.workers]), args.eval_episodes, eval_seed)
            for rid in rids for w in range(args.workers)]
    learned = [{} for _ in rids]
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in pool.map(evaluate_run, jobs):
            learned[rids.index(done["run"])].update(done["results"])
    timings["evaluation"] = time.perf_counter() - started

    def cell(wins, n):
        low, high = wilson(wins, n)
        return f"{wins / n:.2f} [{low:.2f}, {high:.2f}]"

    rows = []
    for t in args.tasks:
        total = np.sum([r[t] for r in learned], axis=0)
        rows.append([t, cell(*expert[t]), cell(*total), ", ".join(f"{r[t][0] / r[t][1]:.2f}" for r in learned)])
    print(f"\nBC sanity: {args.episodes_per_task} clean expert episodes per task, {args.config} config, {args.steps} steps, "
          f"{args.seeds} seed(s), {args.eval_episodes} held-out episodes per task and seed; success [Wilson 95%]")
    print(table(["task", "expert (held-out seeds)", "BC", "BC per seed"], rows))
    per_task = {t: float(np.sum([r[t][0] for r in learned]) / np.sum([r[t][1] for r in learned])) for t in args.tasks}
    mean = float(np.mean(list(per_task.values())))
    wins, n = int(sum(r[t][0] for r in learned for t in args.tasks)), int(sum(r[t][1] for r in learned for t in args.tasks))
    print(f"mean over tasks: {mean:.3f}; timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    print("results:", write_result("bc_sanity", {
        "mean": mean, "wilson95": list(wilson(wins, n)), "per_task": per_task,
        "per_task_wins_episodes": {t: [int(sum(r[t][0] for r in learned)), int(sum(r[t][1] for r in learned))]
                                   for t in args.tasks},
        "expert": {t: list(v) for t, v in expert.items()}, "config": args.config, "steps": args.steps,
        "episodes_per_task": args.episodes_per_task, "seeds": args.seeds, "seconds": sum(timings.values()),
        "timings_s": timings}))
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "expert": expert, "bc": learned, "timings": timings}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
