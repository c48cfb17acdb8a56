"""`robolake relabel`: historic steps -> the `rewards` table, with any reward function (learner/relabel.py)."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import positive_int, usage_error


def register(commands, common) -> None:
    relabel = commands.add_parser(
        "relabel", parents=[common], help="compute reward functions over the lake's complete episodes",
        description="Relabel the steps of complete episodes with reward functions of the skill library "
                    "(by NAME for its latest version, or NAME@VERSION), into the lake's `rewards` table "
                    "(views: rewards, achievements). Incremental: episodes already relabelled by a function "
                    "version in this dataset are skipped. Records a relabel.completed event with the lineage.")
    which = relabel.add_mutually_exclusive_group(required=True)
    which.add_argument("--rewards", nargs="+", metavar="NAME[@VERSION]", help="reward functions to compute")
    which.add_argument("--all", action="store_true", help="every registered function, every version")
    relabel.add_argument("--where", default="TRUE", help="predicate on the episodes view (read-only, as in sql)")
    relabel.add_argument("--name", default="default", metavar="DATASET", help="dataset name of the rows (default)")
    relabel.add_argument("--batch-steps", type=positive_int, default=20000,
                         help="steps per transaction (whole episodes; default 20000)")
    relabel.set_defaults(run=run_relabel)


def run_relabel(args, settings: Settings) -> int:
    import duckdb
    from tqdm import tqdm

    from consumers.lake_sink.sink import land
    from infra.bus.interface import BusError
    from infra.lake_catalog import lake_exists
    from learner.relabel import RelabelError, check_dataset_name, relabel, resolve
    from producers.sim.rewards import RewardError, UnknownReward

    try:
        functions = resolve(args.rewards, args.all)
        check_dataset_name(args.name)
    except (UnknownReward, RelabelError) as exc:
        return usage_error("relabel", str(exc))
    if not lake_exists(settings):
        print(f"robolake relabel: no lake at {settings.lake_root}", file=sys.stderr)
        return 1
    with tqdm(unit="step", desc="relabelling", disable=None, file=sys.stderr) as bar:
        def total(n):
            bar.total = n
            bar.refresh()
        try:
            stats = relabel(settings, functions, where=args.where, dataset=args.name,
                            batch_steps=args.batch_steps, progress=bar.update, on_total=total, land=land)
        except RelabelError as exc:
            return usage_error("relabel", str(exc))
        except (RewardError, duckdb.Error, BusError) as exc:
            print(f"robolake relabel: {exc}", file=sys.stderr)
            return 1
    for warning in stats.warnings:
        print(f"robolake relabel: warning: {warning}", file=sys.stderr)
    if stats.adopted:
        runs = sorted({a["relabel_id"] for a in stats.adopted})
        print(f"{args.name}: {sum(a['rows'] for a in stats.adopted)} rows of {len(runs)} earlier interrupted runs "
              "had no lineage event; this run's event lists them (adopted)")
    if stats.selected == 0:
        print(f"no complete episodes match --where {args.where!r}; nothing written")
    elif stats.selected == stats.other_env:
        print(f"none of the {stats.selected} matching episodes is of the Panda scene the reward functions read; "
              "nothing written")
    elif stats.rows == 0:
        print(f"{args.name}: all {stats.selected - stats.other_env} matching episodes are already relabelled by "
              f"{len(functions)} function versions; nothing written")
    else:
        print(f"{args.name}: relabelled {stats.episodes} episodes ({stats.steps} steps) with {len(functions)} "
              f"function versions: {stats.rows} rows in {stats.commits} transactions"
              + (f"; skipped {stats.other_env} episodes of other environments" if stats.other_env else ""))
    return 0
