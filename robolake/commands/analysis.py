"""`robolake analyze`: verdicts on learner runs' curves, as events and PNG plots (consumers/analysis)."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from robolake.commands.common import UsageError, check_bus_reachable, check_lake_writable, identifier, nonnegative_int


def register(commands, common) -> None:
    analyze = commands.add_parser(
        "analyze", parents=[common], help="judge learner runs by evaluated success: improving, converged, stalled, "
                                          "not learning, stop",
        description="Judge each learner run by what its policy does: per skill, evaluation success against the "
                    "learner step (`robolake eval` of its checkpoints), quoted with Wilson 95% intervals. A skill "
                    "whose evaluations never rise above the first beyond the interval (or never succeed) is not "
                    "learning, whatever its loss does; it is improving when its latest interval is above its first "
                    "success or a seeded bootstrap interval on the slope over the most recent half of the points "
                    "is above zero; converged (from which step) or stalled otherwise. The run gets a verdict from "
                    "its skills (`no evaluation yet` without evaluations), its policy loss quoted as a note only, and "
                    "`stop` once every skill has 4 evaluations and none is improving. The verdicts go on the "
                    "analysis topic as analysis.verdict events (those the lake does not hold yet) and each curve is "
                    "drawn to a PNG. Example: robolake analyze --experiment default --out analysis")
    analyze.add_argument("--experiment", type=identifier, metavar="ID", help="runs of one experiment (default: all)")
    analyze.add_argument("--run", dest="run_id", type=identifier, metavar="ID", help="one learner run (default: all)")
    analyze.add_argument("--out", type=Path, default=Path("analysis"), metavar="DIR",
                         help="where the PNG curves go: DIR/<experiment>/<run>/<skill>.png (default ./analysis)")
    analyze.add_argument("--seed", type=nonnegative_int, default=0, help="bootstrap seed (default 0)")
    analyze.add_argument("--no-emit", action="store_true", help="print and plot only; send no events")
    analyze.add_argument("--vlm", choices=("gemini", "openai"),
                         help="also let this model read each plotted success curve; its verdict (method vlm) is "
                              "recorded beside the statistical one and every call is a vlm.call event (settings "
                              "vlm_model, vlm_base_url; keys GOOGLE_API_KEY / OPENAI_API_KEY)")
    analyze.set_defaults(run=run_analyze)


def run_analyze(args, settings: Settings) -> int:
    from consumers.analysis.analysis import ALL, emit_verdicts, judge_run, learner_runs, run_curves
    from consumers.analysis.plots import plot_curve
    from infra.lake_sql import open_lake
    from infra.optional import require

    require("matplotlib", "analysis")
    if args.vlm and args.no_emit:
        raise UsageError("--vlm records the model's calls and verdicts as events: it cannot go with --no-emit")
    reader = _curve_reader(settings, args.vlm)  # a bad model setup: exit 2 before any work
    if not args.no_emit:  # before any work: where the events go must be there
        check_bus_reachable(settings)
        if settings.bus == "memory":
            check_lake_writable(settings)
    con = open_lake(settings)
    try:
        runs = _chosen_runs(con, args, learner_runs)
        verdicts, plots = [], []
        for experiment, run in runs:
            curves = run_curves(con, experiment, run)
            rows = judge_run(curves, args.seed)
            for curve in curves:
                name = curve.metric if curve.skill_id == ALL else curve.skill_id
                plots.append(plot_curve(curve, args.out / experiment / run / f"{name}.png"))
                # Success curves only (a falling loss is no verdict), with as few points as the bootstrap judges.
                if reader is not None and curve.kind == "success" and len(curve.steps) >= 4:
                    read = reader(con, experiment, curve, plots[-1].read_bytes())
                    rows += [read] if read is not None else []
            verdicts += rows
            _print_run(experiment, run, curves, rows)
        sent = []
        if not args.no_emit and verdicts:
            from infra.bus.backend import open_bus

            producer = open_bus(settings).producer()
            try:
                sent = emit_verdicts(con, producer, verdicts)
            finally:
                producer.close()
    finally:
        con.close()
    if not runs:
        print(f"no learner runs in {settings.lake_root} yet (robolake train writes their metrics)")
        return 0
    if sent or reader is not None:
        from consumers.lake_sink.sink import sink_in_process

        sink_in_process(settings)
    print(f"wrote {len(plots)} curves to {args.out}/" + ("" if args.no_emit else
          f"; emitted {len(sent)} new analysis.verdict events ({len(verdicts) - len(sent)} already in the lake)"))
    return 0


def _curve_reader(settings: Settings, backend: str | None):
    """(con, experiment, curve, png) -> the model's verdict row or None; None without --vlm."""
    if backend is None:
        return None
    from consumers.analysis.vlm_reading import vlm_verdict
    from consumers.curriculum.backends import open_vlm_from_settings
    from consumers.curriculum.recorder import RecordedReplies, RecordingVLM
    from infra.bus.backend import open_bus

    inner = open_vlm_from_settings(settings.replace(vlm=backend))
    producer = open_bus(settings).producer()
    recorders: dict[str, RecordingVLM] = {}

    def read(con, experiment, curve, png):
        if experiment not in recorders:  # one per experiment: its calls are keyed and counted by it
            recorders[experiment] = RecordingVLM(inner, producer, experiment,
                                                 history=RecordedReplies.from_lake(con, experiment, required=False))
        return vlm_verdict(recorders[experiment], curve, png)

    return read


def _chosen_runs(con, args, learner_runs) -> list[tuple[str, str]]:
    runs = learner_runs(con, args.experiment)
    if args.experiment and not runs:
        known = sorted({e for e, _ in learner_runs(con)})
        raise UsageError(f"no learner runs in experiment {args.experiment!r}; experiments with runs: "
                         f"{', '.join(known) or 'none'}")
    if args.run_id:
        known = sorted({r for _, r in runs})
        runs = [(e, r) for e, r in runs if r == args.run_id]
        if not runs:
            raise UsageError(f"no learner run {args.run_id!r}" + (f" in experiment {args.experiment!r}" if args.experiment
                             else "") + f"; runs: {', '.join(known) or 'none'}")
    return runs


def _print_run(experiment: str, run: str, curves, rows: list[dict]) -> None:
    print(f"run {run} (experiment {experiment})")
    if not rows:
        print("  nothing to judge yet: no evaluations and no policy loss")
    for row in rows:
        print(f"  {row['skill_id']:<20} {row['verdict']:<12} {row['rationale']}")
