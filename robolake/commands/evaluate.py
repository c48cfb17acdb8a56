"""`robolake eval`: a trained policy in the simulator, episodes into the lake, success with intervals."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import identifier, nonnegative_int, positive_int


def register(commands, common) -> None:
    evaluate = commands.add_parser(
        "eval", parents=[common], help="evaluate a trained policy in the simulator",
        description="Run a trained PAC policy (the latest checkpoint of --run-id) on each skill's natural "
                    "sequence, --episodes times per skill. The episodes land in the lake tagged with the "
                    "policy's id and version (query them with `robolake sql`); success per skill is printed "
                    "with a Wilson 95% interval. Example: robolake eval --run-id pac-tiny-1a2b --skills "
                    "reach_red lift_red --episodes 20")
    evaluate.add_argument("--run-id", required=True, type=identifier, metavar="ID", help="the training run (robolake train)")
    evaluate.add_argument("--skills", nargs="+", required=True, metavar="SKILL", help="skills to evaluate")
    evaluate.add_argument("--episodes", type=positive_int, default=20, metavar="N", help="per skill (default 20)")
    evaluate.add_argument("--seed", type=nonnegative_int, default=100_000, help="first seed (default 100000, apart from training data)")
    evaluate.add_argument("--experiment", type=identifier, default="eval", help="experiment id of the episodes (default 'eval')")
    evaluate.add_argument("--workers", type=positive_int, default=1, metavar="W",
                          help="rollout workers, each with its own copy of the policy: processes on Kafka, "
                               "threads on the in-process bus (default 1)")
    evaluate.set_defaults(run=run_eval)


def run_eval(args, settings: Settings) -> int:
    from tqdm import tqdm

    from infra.optional import require

    require("torch", "learner")
    from learner.evaluate import LearnedPolicy, evaluate_in_workers
    from producers.sim.skills import get_skill
    from robolake.failures import failure
    from schemas.stats import wilson

    for skill in args.skills:
        get_skill(skill)  # an unknown skill is a usage error listing the known ones
    policy = LearnedPolicy.load(settings, args.run_id)  # fails here, once, for a run without checkpoints
    with tqdm(total=len(args.skills) * args.episodes, unit="episode", desc="evaluating", disable=None,
              file=sys.stderr) as bar:
        results = evaluate_in_workers(settings, args.run_id, args.skills, args.episodes, args.workers, args.seed,
                                      args.experiment, bar.update, describe_failure=failure)
    from consumers.lake_sink.sink import sink_in_process

    sink_in_process(settings)
    print(f"policy {policy.id} {policy.version}")
    print(f"{'skill':<22}{'episodes':>9}{'success':>9}   95% interval")
    for skill, (wins, n) in results.items():
        low, high = wilson(wins, n)
        print(f"{skill:<22}{n:>9}{wins / n:>9.2f}   [{low:.2f}, {high:.2f}]")
    return 0
