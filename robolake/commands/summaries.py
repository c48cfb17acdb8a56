"""`robolake summaries`: success per skill and policy version, from the lake (consumers/summaries)."""

from __future__ import annotations

from infra.settings import Settings
from robolake.commands.common import UsageError, check_bus_reachable, check_lake_writable, identifier, positive_int


def register(commands, common) -> None:
    summaries = commands.add_parser(
        "summaries", parents=[common], help="success of each skill per policy version, with intervals",
        description="Summarise the lake's complete episodes per experiment, skill and policy version: episodes, "
                    "successes, the success rate with a Wilson 95% interval, the rate over the most recent "
                    "window and its trend against the window before (up/down/flat), and hindsight (in how "
                    "many of the policy's relabelled episodes the skill's reward function fired, whatever "
                    "they were commanded to do). --emit puts the summaries the lake does not hold yet on the "
                    "summaries topic as skill.summary events. Example: robolake summaries --experiment default")
    summaries.add_argument("--experiment", type=identifier, metavar="ID", help="one experiment (default: all)")
    summaries.add_argument("--window", type=positive_int, default=20, metavar="N",
                           help="episodes in the recent window (default 20)")
    summaries.add_argument("--emit", action="store_true", help="send new skill.summary events")
    summaries.set_defaults(run=run_summaries)


def run_summaries(args, settings: Settings) -> int:
    if not args.emit:
        return _summarise(args, settings)
    from infra.lake_catalog import lake_lock

    check_bus_reachable(settings)  # before any work: where the events go must be there
    if settings.bus == "memory":
        check_lake_writable(settings)
    # Emitters one at a time, each reading the lake after the one before wrote to it: two at once
    # would both send the summaries the lake does not hold yet.
    with lake_lock(settings, "summaries", "another `robolake summaries --emit` is running; waiting"):
        return _summarise(args, settings)


def _summarise(args, settings: Settings) -> int:
    from consumers.summaries.summaries import current_summaries, emit_summaries, experiments, skill_library
    from infra.lake_sql import open_lake

    con = open_lake(settings)
    try:
        known = experiments(con)
        chosen = [args.experiment] if args.experiment else known
        if args.experiment and args.experiment not in known:
            raise UsageError(f"no complete episodes of experiment {args.experiment!r} in {settings.lake_root}; "
                             f"experiments: {', '.join(known) or 'none'}")
        library = skill_library(con)
        for experiment in chosen:
            _print_table(experiment, current_summaries(con, experiment, library, window=args.window))
        sent = []
        if args.emit:
            from infra.bus.backend import open_bus

            producer = open_bus(settings).producer()
            try:
                for experiment in chosen:
                    sent += emit_summaries(con, producer, experiment, library)
            finally:
                producer.close()
    finally:
        con.close()
    if not chosen:
        print(f"no complete episodes in {settings.lake_root} yet")
    if args.emit:
        if sent:
            from consumers.lake_sink.sink import sink_in_process

            sink_in_process(settings)
        print(f"emitted {len(sent)} new skill.summary events")
    return 0


def _print_table(experiment: str, summaries: list[dict]) -> None:
    print(f"experiment {experiment}")
    print(f"  {'skill':<20} {'policy':<26} {'episodes':>8} {'successes':>9} {'rate':>5}  {'95% CI':<12} "
          f"{'recent':>6}  {'trend':<7} hindsight")
    for s in summaries:
        policy = f"{s['policy_id']}@{s['policy_version']}"
        hindsight = (f"{s['hindsight_successes']}/{s['hindsight_episodes']}" if s["hindsight_episodes"] is not None
                     else "-")
        print(f"  {s['skill_id']:<20} {policy:<26} {s['episodes']:>8} {s['successes']:>9} {s['success_rate']:>5.2f}  "
              f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}] {s['recent_rate']:>6.2f}  {s['trend']:<7} {hindsight}")
