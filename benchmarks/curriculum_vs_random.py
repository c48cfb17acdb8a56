"""At an equal episode budget, does curriculum-driven collection beat uniformly random skills?

Two strategies of `robolake run` (robolake/experiment), everything else equal (base skills,
bootstrap, learner, steps per iteration, iterations, the episode budget):
  - curriculum: the scripted experimenter's rounds (frontier tasks; a task the library lacks, such
    as "put the red block on the blue block", grows the library, and its skill is bootstrapped);
  - random:     each round draws its skills uniformly from the whole built-in library.
After the run, its final policy is evaluated on a held-out composite task (default
place_red_on_blue: never among the base skills) on seeds no run collected. Goal (issue 12): the
curriculum >= 15 points better, over >= 3 seeds. Prints the table and writes success.png.

    .venv/bin/python benchmarks/curriculum_vs_random.py --out /tmp/cvr   # benchmarks/README.md has figures
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table  # noqa: E402
from benchmarks.learning_quality import NullProducer  # noqa: E402

STRATEGIES = ("curriculum", "random")
BASE = ("reach_red", "grasp_red", "lift_red", "reach_blue", "grasp_blue", "lift_blue")


def run_one(out: Path, strategy: str, seed: int, args) -> dict:
    from infra.settings import Settings
    from learner.evaluate import LearnedPolicy, evaluate
    from robolake.experiment.loop import Run, RunConfig
    from schemas.stats import wilson

    settings = Settings.load(env={}, lake=f"file://{out / f'{strategy}-{seed}'}", bus="memory")
    config = RunConfig(f"{strategy}-{seed}", iterations=args.iterations, budget_episodes=args.budget,
                       collection=strategy, base_skills=BASE, bootstrap_episodes=args.bootstrap_episodes,
                       episodes_per_decision=args.episodes, max_tasks=args.tasks, eval_episodes=args.run_eval_episodes,
                       train_steps=args.train_steps, seed=seed, device="cpu")
    started = time.perf_counter()
    run = Run(settings, config, say=lambda text: print(f"[{strategy} {seed}] {text}", flush=True))
    try:
        outcome = run.run()
    finally:
        run.close()
    policy = LearnedPolicy.load(settings, run.run_id)
    results = evaluate(NullProducer(), policy, [args.held_out], args.eval_episodes, seed=1_000_000 + seed,
                       experiment_id="held-out")
    wins, n = results[args.held_out]
    con = run.open()
    try:
        collections = [r["decision_id"] for (payload,) in con.execute(
            "SELECT payload_json FROM events WHERE type = 'curriculum.decision'").fetchall()
            for r in json.loads(payload) if r.get("purpose") != "eval"]
        collected, practised = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE skill_sequence[-1] = ?) FROM episodes WHERE decision_id IN "
            f"({', '.join('?' * len(collections))})", [args.held_out, *collections]).fetchone()
    finally:
        con.close()
    low, high = wilson(wins, n)
    return {"strategy": strategy, "seed": seed, "wins": wins, "n": n, "rate": wins / n, "low": low, "high": high,
            "iterations": outcome.iterations, "stopped": outcome.stopped, "episodes": collected,
            "held_out_episodes": practised, "seconds": time.perf_counter() - started}


def plot(out: Path, rows: list[dict], held_out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, strategy in enumerate(STRATEGIES):
        mine = [r for r in rows if r["strategy"] == strategy]
        xs = [k + 0.12 * (i - (len(mine) - 1) / 2) for i in range(len(mine))]
        ax.errorbar(xs, [r["rate"] for r in mine], yerr=[[r["rate"] - r["low"] for r in mine],
                                                         [r["high"] - r["rate"] for r in mine]], fmt="o", capsize=3)
        ax.hlines(sum(r["rate"] for r in mine) / len(mine), k - 0.3, k + 0.3, colors="k")
    ax.set_xticks(range(len(STRATEGIES)), STRATEGIES)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel(f"{held_out} success (95% CI)")
    ax.set_title("held-out task after an equal episode budget (dots: seeds, bars: mean)")
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("curriculum-vs-random"), help="lakes, plot, results")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=240, help="collected episodes per run (evaluation excluded)")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--bootstrap-episodes", type=int, default=12)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per decision")
    parser.add_argument("--tasks", type=int, default=3, help="decisions per round")
    parser.add_argument("--train-steps", type=int, default=500, help="learner steps per iteration")
    parser.add_argument("--run-eval-episodes", type=int, default=12,
                        help="the runs' own evaluation, per skill (the curriculum's 'mastered' needs a Wilson "
                             "lower bound >= 0.75: 12 of 12 at least, so fewer could never grow the library)")
    parser.add_argument("--held-out", default="place_red_on_blue")
    parser.add_argument("--eval-episodes", type=int, default=30, help="held-out evaluation episodes per run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from learner.captions import CaptionEncoder

    CaptionEncoder().encode(["reach the red block"])  # torch before any GL context (robolake run does the same)
    rows = [run_one(args.out, strategy, seed, args) for seed in range(args.seeds) for strategy in STRATEGIES]
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table(["strategy", "seed", f"{args.held_out} success", "95% CI", "episodes", "of them the held-out task",
                 "iterations", "seconds"],
                [[r["strategy"], r["seed"], f"{r['wins']}/{r['n']}", f"{r['low']:.2f}-{r['high']:.2f}", r["episodes"],
                  r["held_out_episodes"], r["iterations"], round(r["seconds"])] for r in rows]))
    means = {s: sum(r["rate"] for r in rows if r["strategy"] == s) / args.seeds for s in STRATEGIES}
    print(table(["strategy", "mean success"], [[s, means[s]] for s in STRATEGIES]))
    print(f"curriculum - random: {100 * (means['curriculum'] - means['random']):+.1f} points (goal: >= +15)")
    plot(args.out, rows, args.held_out)
    print(f"wrote {args.out / 'success.png'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
