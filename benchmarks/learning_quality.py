"""Does PAC learn more than behaviour cloning from mixed-quality data? One seeded command.

The data is suboptimal the way real robot data is, not just noisy (zero-mean noise around an
expert averages out under BC). Every episode is *commanded* with a task's skill sequence, and the
steps carry that commanded skill and caption; what actually moves the arm is one of
  - clean (30%):      the scripted expert of the commanded skill;
  - misdirected (40%): the expert of another colour or target (the episode's colours permuted:
                      "place red on green" commanded, "place blue on green" done);
  - play (30%):       temporally correlated random motion (an Ornstein-Uhlenbeck process) with
                      random gripper changes.
Rewards come from "Relabel" (every skill's reward function over every step). Four learners train
for the same steps on the same lake, each over `--seeds` seeds:
  - BC:          alpha = 1, conditioned on the commanded caption (all data);
  - filtered BC: alpha = 1, commanded caption, only steps of skills their episode achieved;
  - hindsight BC: alpha = 1 on PAC's demonstrations alone (below): PAC's data without its critic;
  - PAC:         alpha = --alpha, hindsight-relabelled: a transition paired with any skill's
                 caption and that skill's reward for the critic; the BC term only on demonstrations,
                 the steps of a commanded segment up to a skill's first success in it (a
                 misdirected "reach red" that reached blue demonstrates "reach blue"), which make
                 half of every batch (PACConfig.demo_fraction).
Each trained policy runs every evaluated task's natural skill sequence (producers.rollout.task_for)
on held-out seeds; success is the task's. Goal (issue 22): filtered BC >= 0.65, hindsight BC >= 0.80,
PAC >= 0.85 and >= the better of the two + 0.05, and >= 2x BC, averaged over tasks. Prints the table,
writes success.png and learning_curves.png to --out and benchmarks/results/learning_quality.json.

    .venv/bin/python benchmarks/learning_quality.py --out /tmp/lq   # benchmarks/README.md has its figures
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table, write_result  # noqa: E402
from learner.symmetry import recoloured  # noqa: E402

COLOURS = ("red", "green", "blue")
TASKS = tuple(f"{verb}_{c}" for verb in ("reach", "grasp", "lift") for c in COLOURS) + tuple(
    f"place_{a}_on_{b}" for a, b in itertools.permutations(COLOURS, 2))
MIX = (("clean", 0.3), ("misdirected", 0.4), ("play", 0.3))
METHODS = ("BC", "filtered BC", "hindsight BC", "PAC")


class NullProducer:
    """Evaluation episodes are counted here, not kept (the benchmark's lake holds the training data)."""

    def send(self, *args, **kwargs):
        pass

    def send_raw(self, *args, **kwargs):
        pass

    def flush(self, *args, **kwargs):
        pass

    def close(self):
        pass


# --- the data's actors ------------------------------------------------------------------------

class Misdirected:
    """The expert of the commanded skill with the episode's colours permuted."""

    id, version = "misdirected_expert", "1"

    def __init__(self, permutation: dict[str, str]):
        from producers.policy import ScriptedExpert

        self.permutation, self.expert = permutation, ScriptedExpert()

    def start(self, env, skill, rng):
        from producers.sim.skills import get_skill

        self.expert.start(env, get_skill(recoloured(skill.id, self.permutation)), rng)

    def act(self, observation):
        return self.expert.act(observation)


class Play:
    """Exploratory play: an Ornstein-Uhlenbeck walk of the hand, the gripper toggled now and then."""

    id, version = "play", "1"

    def __init__(self, rng: np.random.Generator, theta: float = 0.15, sigma: float = 0.35):
        self.rng, self.theta, self.sigma = rng, theta, sigma
        self.motion, self.grip = np.zeros(3), 1.0

    def start(self, env, skill, rng):
        pass

    def act(self, observation):
        self.motion += -self.theta * self.motion + self.sigma * self.rng.normal(size=3)
        if self.rng.random() < 0.04:
            self.grip = -self.grip
        return np.concatenate([np.clip(self.motion, -1, 1), [self.grip]]).astype(np.float32)


def actor(kind: str, task: str, rng: np.random.Generator):
    if kind == "clean":
        from producers.policy import ScriptedExpert

        return ScriptedExpert()
    if kind == "play":
        return Play(rng)
    while True:  # a permutation that changes what the commanded task asks for
        order = rng.permutation(COLOURS)
        permutation = dict(zip(COLOURS, order))
        if recoloured(task, permutation) != task:
            return Misdirected(permutation)


def generate(settings, episodes_per_task: int, seed: int, progress, tasks=TASKS, mix=MIX,
             experiment_id: str = "mixed") -> None:
    from consumers.lake_sink.sink import LakeSink
    from infra.bus.backend import open_bus
    from producers.episode_writer import EpisodeWriter
    from producers.rollout import RolloutConfig, run_episode, task_for
    from producers.sim.env import BlockStackingEnv

    producer = open_bus(settings).producer()
    writer, env = EpisodeWriter(producer), BlockStackingEnv()
    kinds = [kind for kind, share in mix for _ in range(round(share * episodes_per_task))]
    try:
        for t, task in enumerate(tasks):
            config = RolloutConfig(skills=task_for(task), task_skill=task, experiment_id=experiment_id, worker_id="data")
            for i, kind in enumerate(kinds):
                episode_seed = seed * 1_000_000 + t * 1000 + i
                rng = np.random.default_rng(episode_seed)
                run_episode(env, writer, config, episode_seed, policy=actor(kind, task, rng))
                producer.flush()
                progress(1)
            LakeSink(settings, flush_seconds=1.0).run(until_idle_s=0.3)
    finally:
        env.close()


def dataset_success(settings) -> dict[str, tuple[int, int]]:
    from infra.lake_sql import open_lake

    con = open_lake(settings, read_only=True)
    rows = con.execute("SELECT s.skill_sequence[-1], count(*) FILTER (WHERE e.task_success), count(*) "
                       "FROM episode_starts s JOIN episode_ends e USING (episode_id) GROUP BY 1").fetchall()
    con.close()
    return {task: (int(wins), int(n)) for task, wins, n in rows}


# --- training and evaluation ------------------------------------------------------------------

def method_args(method: str, alpha: float) -> dict:
    return {"BC": dict(alpha=1.0, conditioning="commanded", successful_only=False),
            "filtered BC": dict(alpha=1.0, conditioning="commanded", successful_only=True),
            # PAC's data without its critic: BC on the hindsight demonstrations alone
            "hindsight BC": dict(alpha=1.0, conditioning="hindsight", successful_only=False, demo_fraction=1.0),
            "PAC": dict(alpha=alpha, conditioning="hindsight", successful_only=False)}[method]


def run_id(method: str, seed: int) -> str:
    return f"{method.replace(' ', '-').lower()}-{seed}"


def train_one(settings, method: str, seed: int, steps: int, alpha: float, dataset: str = "mixed",
              config_name: str = "tiny", **changes) -> str:
    """Train `method` on `dataset` (`changes` override the config's fields, e.g. eta)."""
    from learner.pac.config import get_config
    from learner.train import train

    chosen = method_args(method, alpha)
    fields = {k: chosen[k] for k in ("alpha", "demo_fraction") if k in chosen}
    config = get_config(config_name).replace(**fields, **changes)
    rid = run_id(method, seed)
    train(settings, config, dataset, steps, rid, experiment_id=dataset, device="cpu", seed=seed,
          checkpoint_every=steps, metrics_every=max(1, steps // 40), conditioning=chosen["conditioning"],
          successful_only=chosen["successful_only"])
    return rid


def evaluate_run(args: tuple) -> dict:
    """In a worker process: (run id, tasks, episodes, seed) -> {task: (wins, n)}."""
    lake, rid, tasks, episodes, seed = args
    import torch

    torch.set_num_threads(1)
    from infra.settings import Settings
    from learner.evaluate import LearnedPolicy, evaluate

    settings = Settings.load(env={}, lake=lake, bus="memory")
    policy = LearnedPolicy.load(settings, rid)
    return {"run": rid, "results": evaluate(NullProducer(), policy, list(tasks), episodes, seed=seed,
                                            experiment_id="eval")}


def learning_curves(settings) -> dict[str, dict[str, list[tuple[int, float]]]]:
    from infra.lake_sql import open_lake

    con = open_lake(settings, read_only=True)
    rows = con.execute("SELECT payload_json FROM events WHERE type = 'learner.metrics' ORDER BY _offset").fetchall()
    con.close()
    curves: dict[str, dict[str, list]] = {}
    for (payload,) in rows:
        for row in json.loads(payload):
            curves.setdefault(row["run_id"], {}).setdefault(row["name"], []).append((row["step"], row["value"]))
    return curves


def plot(out: Path, tasks, success: dict, data: dict, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 4.5))
    width = 0.8 / (len(METHODS) + 1)
    x = np.arange(len(tasks))
    ax.bar(x - 0.4 + width / 2, [data[t][0] / data[t][1] for t in tasks], width, label="dataset", color="0.7")
    for i, method in enumerate(METHODS):
        rates = [success[method][t][0] / success[method][t][1] for t in tasks]
        ax.bar(x - 0.4 + (i + 1.5) * width, rates, width, label=method)
    ax.set_xticks(x, [t.replace("place_", "place\n").replace("_on_", " on ") for t in tasks], fontsize=7)
    ax.set_ylabel("task success")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Success per task: the mixed dataset, and each method over all seeds")
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, ax in zip(("policy_loss", "critic_loss"), axes):
        for rid, metrics in sorted(curves.items()):
            if name in metrics:
                steps, values = zip(*metrics[name])
                ax.plot(steps, values, label=rid, alpha=0.8)
        ax.set_title(name)
        ax.set_xlabel("gradient step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("learning-quality"), help="lake, plots and results")
    parser.add_argument("--episodes-per-task", type=int, default=80, help="training episodes per task (default 80)")
    parser.add_argument("--steps", type=int, default=5000, help="gradient steps per run (default 5000)")
    parser.add_argument("--config", default="tiny", help="the learner's config (default tiny)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per method (default 3)")
    parser.add_argument("--eval-episodes", type=int, default=17,
                        help="evaluation episodes per task, method and seed (default 17: 51 per task and method)")
    parser.add_argument("--alpha", type=float, default=0.9, help="PAC's BC weight (default 0.9, the config's)")
    parser.add_argument("--eta", type=float, default=None, help="PAC's temperature (default: the config's)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (default 1: on a shared 2-core machine torch's default "
                             "of one per core made a step ~13x slower, its threads spinning against other work)")
    args = parser.parse_args()
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)

    from consumers.lake_sink.sink import land
    from infra.settings import Settings
    from learner.pac.config import get_config
    from learner.relabel import relabel, resolve

    args.out.mkdir(parents=True, exist_ok=True)
    lake = f"file://{(args.out / 'lake').resolve()}"
    settings = Settings.load(env={}, lake=lake, bus="memory")
    timings = {}
    started = time.perf_counter()
    if not (args.out / "lake" / "catalog.sqlite").exists():
        with tqdm(total=len(TASKS) * args.episodes_per_task, desc="mixed data", unit="episode") as bar:
            generate(settings, args.episodes_per_task, args.seed, bar.update)
        relabel(settings, resolve(list(TASKS)), dataset="mixed", land=land)
    timings["data"] = time.perf_counter() - started
    data = dataset_success(settings)

    started = time.perf_counter()
    runs = {method: [run_id(method, s) for s in range(args.seeds)] for method in METHODS}
    # Seed-major: a run cut short still has every method trained on its first seeds.
    for seed, method in tqdm(list(itertools.product(range(args.seeds), METHODS)), desc="training", unit="run"):
        if not (args.out / "lake" / "checkpoints" / run_id(method, seed)).exists():
            train_one(settings, method, seed, args.steps, args.alpha, config_name=args.config,
                      **({"eta": args.eta} if method == "PAC" and args.eta is not None else {}))
    from consumers.lake_sink.sink import LakeSink

    LakeSink(settings, flush_seconds=1.0).run(until_idle_s=0.3)
    timings["training"] = time.perf_counter() - started

    started = time.perf_counter()
    eval_seed = 10_000_000 + args.seed  # never a training episode's seed
    jobs = [(lake, rid, TASKS, args.eval_episodes, eval_seed) for rids in runs.values() for rid in rids]
    results: dict[str, dict] = {}
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in tqdm(pool.map(evaluate_run, jobs), total=len(jobs), desc="evaluating", unit="run"):
            results[done["run"]] = done["results"]
    timings["evaluation"] = time.perf_counter() - started

    success = {m: {t: tuple(np.sum([results[r][t] for r in rids], axis=0).tolist()) for t in TASKS}
               for m, rids in runs.items()}
    from schemas.stats import wilson

    rows = []
    for t in TASKS:
        row = [t, f"{data[t][0] / data[t][1]:.2f}"]
        for m in METHODS:
            wins, n = success[m][t]
            low, high = wilson(wins, n)
            row.append(f"{wins / n:.2f} [{low:.2f}, {high:.2f}]")
        rows.append(row)
    mean = {m: float(np.mean([success[m][t][0] / success[m][t][1] for t in TASKS])) for m in METHODS}
    per_seed = {m: [float(np.mean([results[r][t][0] / results[r][t][1] for t in TASKS])) for r in rids]
                for m, rids in runs.items()}
    rows.append(["mean over tasks", f"{np.mean([data[t][0] / data[t][1] for t in TASKS]):.2f}"]
                + [f"{mean[m]:.3f} (seeds {', '.join(f'{v:.2f}' for v in per_seed[m])})" for m in METHODS])
    print(f"\nlearning quality: {args.episodes_per_task} episodes per task ({', '.join(f'{int(s * 100)}% {k}' for k, s in MIX)}), "
          f"{args.config} config, {args.steps} steps, {args.seeds} seeds, {args.eval_episodes * args.seeds} evaluation "
          f"episodes per task and method; success [Wilson 95%]")
    print(table(["task", "dataset", *METHODS], rows))
    ratio = mean["PAC"] / mean["BC"] if mean["BC"] else float("inf")
    best_bc = max(mean["filtered BC"], mean["hindsight BC"])
    print(f"\nPAC / BC = {ratio:.2f} (goal >= 2); PAC - max(filtered, hindsight BC) = {mean['PAC'] - best_bc:+.3f} "
          f"(goal >= +0.05); timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    pooled = {m: [int(sum(success[m][t][0] for t in TASKS)), int(sum(success[m][t][1] for t in TASKS))] for m in METHODS}
    methods = {m.replace(" ", "_"): {"mean": mean[m], "wilson95": list(wilson(*pooled[m])), "wins_episodes": pooled[m],
                                     "per_seed": per_seed[m],
                                     "per_task": {t: list(success[m][t]) for t in TASKS}} for m in METHODS}
    seconds = sum(timings.values())
    goals = {"filtered_BC_at_least_0.65": mean["filtered BC"] >= 0.65,
             "hindsight_BC_at_least_0.80": mean["hindsight BC"] >= 0.80, "PAC_at_least_0.85": mean["PAC"] >= 0.85,
             "PAC_at_least_best_plus_0.05": mean["PAC"] - best_bc >= 0.05, "PAC_at_least_2x_BC": ratio >= 2,
             "seconds_at_most_3600": seconds <= 3600}
    print("results:", write_result("learning_quality", {
        "methods": methods, "dataset_success": data, "pac_over_bc": ratio, "pac_minus_best_filtered_or_hindsight": mean["PAC"] - best_bc,
        "goals": goals, "seconds": seconds, "timings_s": timings, "config": args.config,
        "config_fields": dataclasses.asdict(get_config(args.config)), "steps": args.steps,
        "episodes_per_task": args.episodes_per_task, "seeds": args.seeds,
        "eval_episodes_per_task_and_method": args.eval_episodes * args.seeds}))
    plot(args.out, TASKS, success, data, learning_curves(settings))
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "dataset": data, "success": success, "per_seed": per_seed,
                                                       "timings": timings}, indent=1))
    print(f"plots: {args.out / 'success.png'}, {args.out / 'learning_curves.png'}; results: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
