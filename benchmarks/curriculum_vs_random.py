"""At an equal episode budget, does curriculum-driven collection beat uniformly random skills?

Two strategies of `robolake run` (robolake/experiment), everything else equal (base skills,
bootstrap, learner, steps per iteration, iterations, the episode budget):
  - curriculum: the scripted experimenter's rounds (frontier tasks; a task the library lacks, such
    as "put the red block on the blue block", grows the library, and its skill is bootstrapped);
  - random:     each round draws its skills uniformly from everything the curriculum may come to
    propose: the whole built-in library, the held-out task and its parts included
    (robolake/experiment/stages.py random_skills).
The runs go one iteration at a time (`robolake run` resumes), and after each the policy is
evaluated on a held-out composite task (default place_red_on_blue: never among the base skills) on
seeds no run collected: success vs collected episodes. When the budget is spent, each arm's final
policy is trained afresh on what its run collected, for the same number of steps (--final-steps):
the in-loop policies have had as many training steps as their runs had iterations, which differ
between the arms, so only a fresh policy compares the data alone. Goal (issue 24): the
curriculum's final policy >= 15 points above random, over >= 3 seeds. Prints the tables, writes success.png and
benchmarks/results/curriculum_vs_random.json.

    .venv/bin/python benchmarks/curriculum_vs_random.py --out /tmp/cvr   # benchmarks/README.md has figures
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table, write_result  # noqa: E402
from benchmarks.learning_quality import NullProducer  # noqa: E402

STRATEGIES = ("curriculum", "random")
BASE = ("reach_red", "grasp_red", "lift_red")


def run_one(out: Path, strategy: str, seed: int, args) -> dict:
    """One arm on one seed: its held-out success after each iteration, and the final row. Each
    point is saved as it is measured, so a rerun on the same --out picks up where it stopped."""
    from infra.settings import Settings
    from robolake.experiment.loop import Run, RunConfig

    settings = Settings.load(env={}, lake=f"file://{out / f'{strategy}-{seed}'}", bus="memory")
    saved = out / f"{strategy}-{seed}.curve.json"
    curve = json.loads(saved.read_text()) if saved.exists() else []
    started = time.perf_counter() - (curve[-1]["seconds"] if curve else 0)
    for iterations in range(len(curve) + 1, args.iterations + 1):
        if curve and curve[-1]["stopped"]:
            break
        config = RunConfig(f"{strategy}-{seed}", iterations=iterations, budget_episodes=args.budget,
                           collection=strategy, base_skills=BASE, bootstrap_episodes=args.bootstrap_episodes,
                           episodes_per_decision=args.episodes, max_tasks=args.tasks,
                           eval_episodes=args.run_eval_episodes, train_steps=args.train_steps, seed=seed,
                           device="cpu", keep_going=True)  # the budget alone ends a run: equal budgets
        run = Run(settings, config, say=lambda text: print(f"[{strategy} {seed}] {text}", flush=True), bars=False)
        try:
            outcome = run.run()  # the iterations before this one are done: it runs one more
        finally:
            run.close()
        wins, n = held_out_success(settings, run.run_id, args, seed)
        curve.append({"iteration": iterations, **collected(run, args.held_out), "wins": wins, "n": n,
                      "stopped": outcome.stopped, "seconds": time.perf_counter() - started})
        saved.write_text(json.dumps(curve, indent=1))
        print(f"[{strategy} {seed}] after iteration {iterations}: {args.held_out} {wins}/{n}, "
              f"{curve[-1]['episodes']} episodes collected", flush=True)
    return summarise(strategy, seed, curve, final_policy(settings, out, strategy, seed, args))


def final_policy(settings, out: Path, strategy: str, seed: int, args) -> dict:
    """A policy trained from scratch for --final-steps on the run's dataset (what its learner
    trained on), evaluated on the held-out seeds. Saved, and resumed from its checkpoints."""
    from learner.checkpoints import CheckpointStore
    from learner.pac.config import get_config
    from learner.train import train
    from robolake.experiment.loop import RunConfig

    saved = out / f"{strategy}-{seed}.final.json"
    if saved.exists():
        return json.loads(saved.read_text())
    started = time.perf_counter()
    run_id, experiment = f"{strategy}-{seed}-final", f"{strategy}-{seed}"
    train(settings, get_config(RunConfig.model), f"run:{experiment}", steps=args.final_steps, run_id=run_id,
          experiment_id=experiment, device="cpu",
          resume=CheckpointStore(settings, run_id).latest_step() is not None, seed=seed)
    wins, n = held_out_success(settings, run_id, args, seed)
    final = {"wins": wins, "n": n, "steps": args.final_steps, "seconds": time.perf_counter() - started}
    saved.write_text(json.dumps(final))
    print(f"[{strategy} {seed}] final policy, {args.final_steps} steps from scratch: {args.held_out} {wins}/{n}",
          flush=True)
    return final


def held_out_success(settings, run_id: str, args, seed: int) -> tuple[int, int]:
    from learner.evaluate import LearnedPolicy, evaluate

    policy = LearnedPolicy.load(settings, run_id)
    # Seeds no run collected (decision seeds are hashed), and apart for each training seed.
    results = evaluate(NullProducer(), policy, [args.held_out], args.eval_episodes, seed=1_000_000 + 1000 * seed,
                       experiment_id="held-out")
    return results[args.held_out]


def collected(run, held_out: str) -> dict:
    """Episodes the run's collections hold (evaluation excluded), and how many of them practised the
    held-out task or any placing."""
    from robolake.experiment.state import purposes

    con = run.open()
    try:
        ids = [d for d, why in purposes(con, run.config.experiment_id).items() if why != "eval"]
        episodes, practised, placing = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE skill_sequence[-1] = ?), "
            "count(*) FILTER (WHERE skill_sequence[-1] LIKE 'place_%') FROM episodes WHERE decision_id IN "
            f"({', '.join('?' * len(ids))})", [held_out, *ids]).fetchone()
    finally:
        con.close()
    return {"episodes": episodes, "held_out_episodes": practised, "place_episodes": placing}


def summarise(strategy: str, seed: int, curve: list[dict], final: dict) -> dict:
    from schemas.stats import wilson

    last = curve[-1]
    low, high = wilson(final["wins"], final["n"])
    return {"strategy": strategy, "seed": seed, "wins": final["wins"], "n": final["n"], "rate": final["wins"] / final["n"],
            "low": low, "high": high, "final_steps": final["steps"], "loop_wins": last["wins"], "iterations": last["iteration"], "stopped": last["stopped"],
            "episodes": last["episodes"], "held_out_episodes": last["held_out_episodes"],
            "place_episodes": last["place_episodes"], "curve": curve, "seconds": last["seconds"]}


def paired_difference(rows: list[dict], seeds) -> dict:
    """Seeds, not episodes, are the units: the arms' runs on one seed share its bootstrap, so the
    test is a paired t over the per-seed differences (pooling episodes would hide the between-seed
    spread, which dominates)."""
    from scipy import stats

    rate = {(r["strategy"], r["seed"]): r["rate"] for r in rows}
    points = [round(100 * (rate["curriculum", s] - rate["random", s]), 1) for s in seeds]
    test = stats.ttest_1samp(points, 0.0)  # NaN for a single seed
    return {"per_seed_points": points, "t": float(test.statistic), "p_two_sided": float(test.pvalue)}


def plot(out: Path, rows: list[dict], held_out: str) -> Path:
    """Left: held-out success vs collected episodes, a line per run. Right: the final policies, a
    dot per seed with its Wilson interval, and each arm's mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, final) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for k, strategy in enumerate(STRATEGIES):
        mine = [r for r in rows if r["strategy"] == strategy]
        for i, r in enumerate(mine):
            curves.plot([p["episodes"] for p in r["curve"]], [p["wins"] / p["n"] for p in r["curve"]], marker="o",
                        color=f"C{k}", alpha=0.8, label=strategy if i == 0 else None)
        xs = [k + 0.12 * (i - (len(mine) - 1) / 2) for i in range(len(mine))]
        final.errorbar(xs, [r["rate"] for r in mine], yerr=[[r["rate"] - r["low"] for r in mine],
                                                            [r["high"] - r["rate"] for r in mine]],
                       fmt="o", capsize=3, color=f"C{k}")
        if mine:  # an arm run alone (--strategies) leaves the other empty
            final.hlines(sum(r["rate"] for r in mine) / len(mine), k - 0.3, k + 0.3, colors="k")
    curves.set_xlabel("episodes collected (evaluation excluded)")
    curves.set_ylabel(f"{held_out} success")
    curves.set_ylim(-0.05, 1.05)
    curves.legend()
    curves.set_title("held-out success after each iteration (a line per seed)")
    final.set_xticks(range(len(STRATEGIES)), STRATEGIES)
    final.set_ylim(-0.05, 1.05)
    final.set_ylabel("final success (95% Wilson CI)")
    final.set_title("final policies, trained afresh (bar: mean)")
    fig.tight_layout()
    path = out / "success.png"
    fig.savefig(path, dpi=120)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("curriculum-vs-random"), help="lakes, plot, results")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run are first-seed .. first-seed+seeds-1 (fresh seeds for a confirmatory run)")
    parser.add_argument("--budget", type=int, default=300, help="collected episodes per run (evaluation excluded)")
    parser.add_argument("--iterations", type=int, default=12, help="at most (the budget usually ends a run first)")
    parser.add_argument("--bootstrap-episodes", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per decision")
    parser.add_argument("--tasks", type=int, default=3, help="decisions per round")
    parser.add_argument("--train-steps", type=int, default=1000, help="learner steps per iteration")
    parser.add_argument("--final-steps", type=int, default=5000, help="the final policies' steps, from scratch")
    parser.add_argument("--run-eval-episodes", type=int, default=12,
                        help="the runs' own evaluation, per skill (the curriculum's 'mastered' needs a Wilson "
                             "lower bound >= 0.75: 12 of 12 at least, so fewer could never grow the library)")
    parser.add_argument("--held-out", default="place_red_on_blue")
    parser.add_argument("--eval-episodes", type=int, default=30, help="held-out evaluation episodes per point")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES,
                        help="arms to run (the results file needs both)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from learner.captions import CaptionEncoder

    CaptionEncoder().encode(["reach the red block"])  # torch before any GL context (robolake run does the same)
    rows = []
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for seed in seeds:
        for strategy in args.strategies:
            rows.append(run_one(args.out, strategy, seed, args))
            (args.out / "results.json").write_text(json.dumps(rows, indent=2))  # what is done, as it is done
    print(table(["strategy", "seed", f"{args.held_out} success", "95% CI", "in-loop policy", "episodes", "of them the held-out task",
                 "of them placing", "iterations", "seconds"],
                [[r["strategy"], r["seed"], f"{r['wins']}/{r['n']}", f"{r['low']:.2f}-{r['high']:.2f}",
                  f"{r['loop_wins']}/{r['n']}", r["episodes"],
                  r["held_out_episodes"], r["place_episodes"], r["iterations"], round(r["seconds"])] for r in rows]))
    means = {s: sum(r["rate"] for r in rows if r["strategy"] == s) / args.seeds for s in args.strategies}
    print(table(["strategy", "mean success"], [[s, m] for s, m in means.items()]))
    print(f"wrote {plot(args.out, rows, args.held_out)} and {args.out / 'results.json'}")
    if set(means) != set(STRATEGIES):
        return 0
    difference = 100 * (means["curriculum"] - means["random"])
    paired = paired_difference(rows, seeds)
    print(f"curriculum - random: {difference:+.1f} points (goal: >= +15); per seed {paired['per_seed_points']}, "
          f"paired t {paired['t']:.2f}, two-sided p {paired['p_two_sided']:.3f}")
    print("wrote", write_result("curriculum_vs_random", {
        "held_out": args.held_out, "seeds": args.seeds, "budget_episodes": args.budget,
        "eval_episodes": args.eval_episodes,
        "curriculum": {"mean": means["curriculum"]}, "random": {"mean": means["random"]},
        "difference_points": difference, "goal_points": 15, "seed_list": list(seeds), **paired,
        "decisive": difference >= 15 and paired["p_two_sided"] < 0.05, "runs": rows,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
