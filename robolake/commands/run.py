"""`robolake run`: the automated experimenter end to end (robolake/experiment)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from infra.settings import VLM_BACKENDS, Settings
from robolake.commands.common import (CommandFailed, Parser, UsageError, check_bus_reachable, check_lake_writable,
                                      frame_size, identifier, nonnegative_float, nonnegative_int, positive_int,
                                      positive_seconds, settings_flags, unwritable)


def register(commands, common) -> None:
    run = commands.add_parser(
        "run", parents=[common], help="run the experimenter's loop: collect, relabel, train, evaluate, decide",
        description="The loop, for one experiment: bootstrap (the scripted experts on the base skills, clean and "
                    "noisy) -> relabel -> train the PAC learner -> evaluate it on every announced skill -> skill "
                    "summaries -> analysis of the learning curves -> a curriculum round (the model proposes, "
                    "decomposes and decides the next tasks; skills the library can provide for its missing steps "
                    "are announced) -> collect with the latest policy (the expert on skills new to it or that it "
                    "cannot do yet) -> ... until --iterations are done, the analysis says stop, or --budget-episodes is spent.\n\n"
                    "Every stage's completion is an event (run.stage) and the run's state is their projection in "
                    "the lake: after a crash or kill -9, the same command resumes where it was, without redoing "
                    "finished stages or duplicating episodes. One run per experiment and lake at a time. On Kafka "
                    "a lake sink must run beside it (`robolake sink`), rollout can be scaled out with "
                    "`robolake produce --from-decisions` (--external-workers), and the learner can run as its own "
                    "process (`robolake learn`, --external-learner). At the end, the report is written "
                    "(`robolake report`); `robolake tail all --experiment X` and `robolake dashboard` follow it live.\n\n"
                    "--config FILE reads these flags from a TOML file, each under its name with underscores "
                    "(train_steps = 200, skills = [\"reach_red\"], keep_going = true, lake = \"file://lake\"); "
                    "flags given on the command line win over the file's.",
        epilog="examples:\n\n"
               "  robolake run --experiment exp-1 --iterations 3\n"
               "  robolake run --config examples/experiment.toml --iterations 5   # the file's keys, then flags\n"
               "  robolake run --experiment exp-1 --vlm gemini --budget-episodes 2000 \\\n"
               "      --bus kafka://127.0.0.1:9092 --lake s3://robolake/lake")
    add_arguments(run)
    run.set_defaults(run=run_experiment)

    learn = commands.add_parser(
        "learn", parents=[common], help="the learner of `robolake run --external-learner`, as its own process",
        description="Serve an experiment's training: follow its run's state in the lake, and whenever a train "
                    "stage asks for more steps (a run.stage 'requested' event), train the run's PAC learner to "
                    "that step, resumed from its checkpoint, exactly as `robolake run` would in-process. A failure "
                    "(a NaN loss, an empty dataset) is recorded for the run, which retries or stops with the "
                    "reason. Runs until stopped (Ctrl-C), or --until-idle seconds without a request. One trainer "
                    "per experiment and lake. It reads the training data through the lake's catalog, so it runs "
                    "on the catalog's machine (where the lake sink runs); rollout workers can run anywhere.",
        epilog="example (beside `robolake run --experiment exp-1 --external-learner` and `robolake sink`):\n\n"
               "  robolake learn --experiment exp-1 --device cuda --bus kafka://127.0.0.1:9092 "
               "--lake s3://robolake/lake")
    learn.add_argument("--experiment", type=identifier, required=True, metavar="ID", help="the experiment to serve")
    learn.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    learn.add_argument("--poll-seconds", type=positive_seconds, default=2.0, metavar="SECONDS",
                       help="how often to look for a request (default 2)")
    learn.add_argument("--until-idle", type=positive_seconds, metavar="SECONDS",
                       help="exit after this long without a request (default: run until stopped)")
    learn.set_defaults(run=run_learner)


def add_arguments(run) -> None:
    """`robolake run`'s own flags: with the settings flags, the keys of a run config file."""
    run.add_argument("--config", dest="config_file", metavar="FILE",
                     help="a TOML file of these flags, keyed by their names with underscores (see above)")
    run.add_argument("--experiment", type=identifier, metavar="ID",
                     help="the experiment to run or resume (required: here or in the --config file)")
    run.add_argument("--iterations", type=positive_int, default=3, metavar="K", help="iterations at most")
    run.add_argument("--budget-episodes", type=positive_int, metavar="N",
                     help="stop once the collections (evaluation excluded) hold N episodes")
    run.add_argument("--keep-going", action=argparse.BooleanOptionalAction, default=False,
                     help="run on when the analysis says stop (every skill converged or stalled): new data may "
                          "move a stalled skill; only --iterations and --budget-episodes end the run")
    run.add_argument("--vlm", choices=VLM_BACKENDS, metavar="{" + ",".join(VLM_BACKENDS) + "}",
                     help="the curriculum's model (default: the vlm setting, scripted)")
    run.add_argument("--vlm-model", metavar="NAME", help="the backend's model (default: the vlm_model setting)")
    run.add_argument("--collection", choices=("curriculum", "random"), default="curriculum",
                     help="what to collect after the bootstrap: the curriculum's decisions, or uniformly random "
                          "skills (the baseline)")
    run.add_argument("--train-steps", type=positive_int, default=200, metavar="N", help="learner steps per iteration")
    run.add_argument("--model", default="tiny", choices=("tiny", "small", "base"), help="learner model size")
    run.add_argument("--alpha", type=nonnegative_float, metavar="A", help="PAC's BC weight (default: the config's)")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--skills", nargs="+", metavar="SKILL",
                     help="the base skills announced and bootstrapped first (default: reach, grasp and lift of each "
                          "colour, open_gripper, go_home)")
    run.add_argument("--bootstrap-episodes", type=positive_int, default=3, metavar="N",
                     help="clean expert episodes per skill new to the experiment (and half as many noisy ones)")
    run.add_argument("--episodes", type=positive_int, default=6, metavar="N", help="episodes per decision")
    run.add_argument("--tasks", type=positive_int, default=3, metavar="N",
                     help="decisions per round at most; a round collects tasks x episodes episodes, spread over "
                          "the decisions it makes")
    run.add_argument("--eval-episodes", type=positive_int, default=3, metavar="N",
                     help="evaluation episodes per skill and iteration")
    run.add_argument("--eval-videos", type=nonnegative_int, default=2, metavar="N",
                     help="of which the first N record camera frames, the report's videos (default 2; 0: none)")
    run.add_argument("--frame-size", type=frame_size, default=128, metavar="PX",
                     help="the videos' frames, PX square (128 to 256, default 128)")
    run.add_argument("--workers", type=positive_int, default=2, metavar="N",
                     help="rollout workers of this process (threads on the in-process bus, processes on Kafka)")
    run.add_argument("--external-workers", action=argparse.BooleanOptionalAction, default=False,
                     help="on Kafka: leave the decisions to separate rollout workers (`robolake produce "
                          "--from-decisions --experiment ID`, any number) and wait for their episodes in the lake")
    run.add_argument("--external-learner", action=argparse.BooleanOptionalAction, default=False,
                     help="on Kafka: leave training to a separate learner process (`robolake learn --experiment "
                          "ID`) and wait for its checkpoints in the lake")
    run.add_argument("--seed", type=nonnegative_int, default=0)
    run.add_argument("-o", "--report-dir", default="report", metavar="DIR", help="where the report is written")


def parser() -> Parser:
    """`robolake run`'s flags alone: what a run config file and the Python API's robolake.run take."""
    run = Parser(prog="robolake run", parents=[settings_flags()])
    add_arguments(run)
    return run


@dataclass(frozen=True)
class RunResult:
    """What a run came to (robolake.run returns it; a run that stopped on a failure raises instead)."""
    experiment: str
    iterations: int                   # done
    stopped: str | None               # why it ended before its iterations (None: it did them all)
    success: dict                     # skill -> (successes, episodes) of the learned policy's latest evaluation
    report: Path                      # the HTML page (the Markdown beside it)
    config: dict                      # the run's keys as resolved, as recorded with the experiment


def run_experiment(args, settings: Settings) -> int:
    execute(args, settings)
    return 0


def execute(args, settings: Settings) -> RunResult:
    """The run that `args` (robolake run's flags, parsed) asks for, to its report."""
    from infra.optional import require

    if not args.experiment:
        raise UsageError("--experiment is required (on the command line or in the --config file)")
    for flag, who in (("external_workers", "the rollout workers"), ("external_learner", "the learner")):
        if getattr(args, flag) and settings.bus == "memory":
            raise UsageError(f"--{flag.replace('_', '-')} needs a shared log: {who} are other processes "
                             "(--bus kafka://HOST:PORT)")
    if args.alpha is not None and args.alpha > 1:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    chosen = (("vlm", args.vlm), ("vlm_model", args.vlm_model))
    settings = settings.replace(**{k: v for k, v in chosen if v is not None})
    from consumers.curriculum.backends import open_vlm_from_settings

    vlm = open_vlm_from_settings(settings)  # a missing key or bad backend: exit 2 before any work
    require("torch", "learner")
    require("producers.sim.env", "sim")
    require("matplotlib", "analysis")
    from producers.sim.skills import get_skill

    for skill in args.skills or ():
        get_skill(skill)  # an unknown one: exit 2 naming the known ones
    check_bus_reachable(settings)
    check_lake_writable(settings)
    reason = unwritable(Path(args.report_dir))  # now, not after days of work
    if reason:
        raise CommandFailed(f"the report cannot be written to {args.report_dir}: {reason}")
    from robolake.experiment.errors import StageFailed
    from robolake.experiment.loop import BASE_SKILLS, Run, RunConfig
    from robolake.failures import failure

    config = RunConfig(experiment_id=args.experiment, base_skills=tuple(args.skills or BASE_SKILLS),
                       iterations=args.iterations, budget_episodes=args.budget_episodes, keep_going=args.keep_going,
                       collection=args.collection, bootstrap_episodes=args.bootstrap_episodes,
                       episodes_per_decision=args.episodes, max_tasks=args.tasks, eval_episodes=args.eval_episodes,
                       eval_videos=args.eval_videos, frame_size=args.frame_size,
                       train_steps=args.train_steps, model=args.model, alpha=args.alpha, device=args.device,
                       workers=args.workers, seed=args.seed, external_workers=args.external_workers,
                       external_learner=args.external_learner)
    keys = resolved(args, settings, BASE_SKILLS)
    run = Run(settings, config, vlm=vlm, say=lambda text: print(text, flush=True), describe_failure=failure,
              recorded_config=keys)
    run.encoder.encode(["reach the red block"])  # torch before any GL context (see curriculum._retrievers)
    print(f"== robolake run: experiment {args.experiment} on bus={settings.bus} lake={settings.lake_root} "
          f"(vlm {settings.vlm}, collection {args.collection})", flush=True)
    try:
        outcome = run.run()
    except StageFailed as exc:
        _finish(settings, args, None)
        raise CommandFailed(f"the run stopped: {exc}") from None
    finally:
        run.close()
    page = _finish(settings, args, outcome)
    success = _latest_eval(outcome.state).get("success", {})
    return RunResult(args.experiment, outcome.iterations, outcome.stopped,
                     {skill: tuple(n) for skill, n in success.items()}, page, keys)


def resolved(args, settings: Settings, base_skills) -> dict:
    """The run's keys as its config file, flags and settings resolved them (in a config file, they would
    run it again). Left out: keys left unset (TOML has no None) and verbose (how much it logs)."""
    from dataclasses import fields

    from robolake.commands.run_config import keys as config_keys

    from_settings = {f.name for f in fields(Settings)}
    values = {key: getattr(settings if key in from_settings else args, key) for key in config_keys(parser())
              if key != "verbose"}
    values["skills"] = list(args.skills or base_skills)
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items() if value is not None}


def run_learner(args, settings: Settings) -> int:
    from infra.optional import require

    if settings.bus == "memory":
        raise UsageError("robolake learn serves a run in another process: it needs a shared log "
                         "(--bus kafka://HOST:PORT); on the in-process bus, `robolake run` trains itself")
    require("torch", "learner")
    from learner.pac.learning import pick_device

    pick_device(args.device)  # no CUDA for --device cuda: say so now, not at the first request
    check_bus_reachable(settings)
    check_lake_writable(settings)
    from robolake.experiment.learner_service import serve

    print(f"== robolake learn: experiment {args.experiment} on bus={settings.bus} lake={settings.lake_root} "
          f"(device {args.device}); waiting for train requests", flush=True)
    trained = serve(settings, args.experiment, device=args.device, say=lambda text: print(text, flush=True),
                    poll_s=args.poll_seconds, until_idle_s=args.until_idle)
    print(f"== {trained} training requests served; no request for {args.until_idle:.0f}s", flush=True)
    return 0


def _finish(settings: Settings, args, outcome) -> Path:
    """The report, then the summary table and where the report is (returned)."""
    from robolake.commands.report import write_report

    report, page, text = write_report(settings, args.experiment, Path(args.report_dir))
    if outcome is not None:
        print(f"\n== experiment {args.experiment}: {outcome.stopped or f'{outcome.iterations} iterations done'}")
        print(_table(report.skills, outcome.state))
    print(f"\nreport: {page.resolve()} (and {text.name} beside it)", flush=True)
    return page.resolve()


def _table(skills: dict, state) -> str:
    """Per skill: the expert's collection success, and the learned policy's at its latest evaluation
    (the eval stage's count: an episode commanded that skill's task, successful if it did it)."""
    from schemas.stats import wilson

    evaluated = _latest_eval(state)
    header = ["skill", "expert collection", f"learned policy {evaluated.get('version', '-')}"]

    def rate(wins: int, n: int) -> str:
        low, high = wilson(wins, n)
        return f"{wins}/{n} ({low:.2f}-{high:.2f})" if n else "-"

    expert = {}
    for row in skills["expert"]:
        wins, n = expert.get(row["skill_id"], (0, 0))
        expert[row["skill_id"]] = (wins + row["successes"], n + row["attempts"])
    learned = evaluated.get("success", {})
    lines = [[skill, rate(*expert.get(skill, (0, 0))), rate(*learned.get(skill, (0, 0)))]
             for skill in sorted(set(expert) | set(learned))]
    widths = [max(len(r[k]) for r in [header] + lines) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in [header] + lines)


def _latest_eval(state) -> dict:
    """The latest eval stage's detail ({} before the first)."""
    latest = max((i for i, stage in state.done if stage == "eval"), default=None)
    return state.detail(latest, "eval") if latest is not None else {}
