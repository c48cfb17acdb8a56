"""`robolake curriculum`: the experimenter's curriculum consumer (consumers/curriculum)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from consumers.curriculum.replies import printable  # light: re and json
from infra.settings import VLM_BACKENDS, Settings
from robolake.commands.common import (CommandFailed, UsageError, check_bus_reachable, check_lake_writable, identifier,
                                      nonnegative_float, positive_int, positive_seconds)


def register(commands, common) -> None:
    curriculum = commands.add_parser(
        "curriculum", parents=[common], help="propose, decompose and decide tasks from the skill summaries (VLM)",
        description="The curriculum consumer. A round reads the experiment's skill summaries, the announced "
                    "skill library and a 256x256 image of the scene from the lake; the model (--vlm) proposes "
                    "tasks at the frontier, decomposes each into steps, a skill is retrieved for every step "
                    "(the model is asked only when the match is unsure), and a task whose every step has a "
                    "skill becomes a curriculum.decision that rollout workers execute (`robolake produce "
                    "--from-decisions`). Steps no skill covers become curriculum.missing_skill events; every "
                    "model call is a vlm.call event. Ids are hashes of the round's inputs: a rerun on the same "
                    "lake sends nothing new, asks nothing already answered, and asks again what failed. One "
                    "curriculum per experiment and lake runs at a time.\n\n"
                    "--replay answers from the recorded vlm.call events instead of the model: it reproduces "
                    "the rounds whose questions are asked again, that is, rounds on the same summaries, library "
                    "and scene, with the same prompts; any other question stops the replay.\n\n"
                    "--once runs one round and exits; without it, a round runs whenever new skill.summary "
                    "events arrive (`robolake summaries --emit`), which needs a shared log (Kafka). On the "
                    "in-process bus (the embedded default) no later command sees this command's decisions, so "
                    "--execute runs them here, before the events are written to the lake; on Kafka, the rollout "
                    "service runs them (`robolake produce --from-decisions`).",
        epilog="examples:\n\n"
               "  robolake curriculum --once --execute --episodes 5\n"
               "  robolake curriculum --once --vlm gemini --bus kafka://127.0.0.1:9092 --lake s3://robolake/lake\n"
               "  robolake curriculum --once --replay --experiment exp-1 --bus kafka://127.0.0.1:9092")
    curriculum.add_argument("--once", action="store_true", help="run one round and exit")
    curriculum.add_argument("--vlm", choices=VLM_BACKENDS, metavar="{" + ",".join(VLM_BACKENDS) + "}",
                            help="the model: scripted (offline rules), gemini or openai (default: the vlm setting, "
                                 "scripted)")
    curriculum.add_argument("--model", metavar="NAME", help="the backend's model (default: the vlm_model setting)")
    curriculum.add_argument("--experiment", type=identifier, default="default", metavar="ID",
                            help="experiment id (default 'default')")
    curriculum.add_argument("--tasks", type=positive_int, default=3, metavar="N",
                            help="tasks to propose per round at most (default 3)")
    curriculum.add_argument("--episodes", type=positive_int, default=10, metavar="N",
                            help="episodes each decision asks for (default 10)")
    curriculum.add_argument("--replay", action="store_true",
                            help="answer every question from the experiment's recorded vlm.call events in the lake; "
                                 "the model is never called (see above for what it reproduces)")
    curriculum.add_argument("--execute", action="store_true",
                            help="with --once on the in-process bus: run the decisions in this process")
    curriculum.add_argument("--noise", type=nonnegative_float, default=0.0, metavar="X",
                            help="with --execute: expert action noise (default 0)")
    curriculum.add_argument("--until-idle", type=positive_seconds, metavar="SECONDS",
                            help="without --once: stop once no summary arrived for this long")
    curriculum.set_defaults(run=run_curriculum)


def run_curriculum(args, settings: Settings) -> int:
    memory = settings.bus == "memory"
    if not args.once and memory:
        raise UsageError("without --once the curriculum waits for skill.summary events from a shared log, but the "
                         "in-process bus starts empty in every command: use --once (with --execute to run its "
                         "decisions), or --bus kafka://HOST:PORT")
    if args.execute and not (args.once and memory):
        raise UsageError("--execute runs the decisions of one round (--once) on the in-process bus; on Kafka the "
                         "rollout service runs them: robolake produce --from-decisions")
    if args.until_idle is not None and args.once:
        raise UsageError("--until-idle is for the consumer that waits for summaries (without --once)")
    settings = settings.replace(**{k: v for k, v in (("vlm", args.vlm), ("vlm_model", args.model)) if v is not None})
    from consumers.curriculum.backends import open_vlm_from_settings
    from consumers.curriculum.consumer import NoModel

    inner = NoModel() if args.replay else open_vlm_from_settings(settings)  # bad backend setup: exit 2 first
    with _only_curriculum_of(settings, args.experiment):  # until its events are on the log (memory: in the lake)
        return _curriculum(args, settings, inner)


def _curriculum(args, settings: Settings, inner) -> int:
    from consumers.curriculum.consumer import Curriculum, OnlyNew
    from consumers.curriculum.recorder import RecordedReplies, RecordingVLM
    from infra.optional import require

    memory = settings.bus == "memory"
    require("producers.sim.env", "sim")  # the library and the scene image (first: it picks the GL backend)
    require("sentence_transformers", "learner")  # the caption encoder behind retrieval
    from infra.bus.backend import open_bus
    from infra.lake_sql import open_lake

    check_bus_reachable(settings)
    if memory:
        check_lake_writable(settings)  # the sink runs at the end: refuse now, not after the model calls
    con = open_lake(settings)
    try:
        replay = RecordedReplies.from_lake(con, args.experiment) if args.replay else None
        producer = OnlyNew(open_bus(settings).producer(), set())
        vlm = RecordingVLM(inner, producer, args.experiment, replay)
        curriculum = Curriculum(producer, vlm, args.experiment, _retrievers(), max_tasks=args.tasks,
                                episodes=args.episodes, replay=args.replay)
        if not args.once:
            return _serve(curriculum, settings, args)
        result = curriculum.round(con)
    finally:
        con.close()
    _report(result, settings)
    if args.execute:
        _execute(settings, args, len(result.decisions))
    if memory:
        from consumers.lake_sink.sink import LakeSink

        stats = LakeSink(settings, flush_seconds=1.0).run(until_idle_s=0.5)
        print(f"wrote {stats.rows} rows in {stats.commits} transactions to {settings.lake_root}")
        if result.sent and result.decisions and not args.execute:
            print("note: on the in-process bus no later command runs these decisions; add --execute to run "
                  "them here, or use --bus kafka://HOST:PORT with robolake produce --from-decisions",
                  file=sys.stderr)
    if result.failed:  # recorded above; the round is asked again on the next run
        raise CommandFailed(f"the model calls failed: {len(result.failures)} of {result.calls} "
                            f"({_stages(result.failures)}); the last: {printable(result.failures[-1])}")
    return 0


@contextmanager
def _only_curriculum_of(settings: Settings, experiment: str):
    """Two curricula of one experiment would both send a round's events before either reaches the
    lake, so each would duplicate the other's: the second refuses (a lock file beside the lake's
    catalog; the lock goes with the process, however it ends). A running `robolake run` of the
    experiment holds its run lock and runs its own rounds: refused too."""
    from infra.lake_catalog import only_one

    with only_one(settings, f"curriculum-{experiment}", lambda path: CommandFailed(
            f"another curriculum of experiment {experiment!r} is running on {settings.lake_root} (lock {path}); "
            "wait for it to finish")), \
            only_one(settings, f"run-{experiment}", lambda path: CommandFailed(
                f"`robolake run` of experiment {experiment!r} is running on {settings.lake_root} and runs its own "
                f"curriculum rounds (lock {path}); wait for it, or stop it first")):
        yield


def _stages(failures: list[str]) -> str:
    """'3 propose, 1 decompose' from 'stage: error' lines."""
    from collections import Counter

    return ", ".join(f"{n} {stage}" for stage, n in Counter(f.split(":", 1)[0] for f in failures).items())


def _retrievers():
    """SkillRetriever per library, sharing one caption encoder, loaded now: before the scene image is
    rendered, because loading torch after an EGL context exists (Mesa llvmpipe) crashes the process."""
    from consumers.curriculum.retrieval import retrievers
    from learner.captions import CaptionEncoder

    encoder = CaptionEncoder()
    encoder.encode(["reach the red block"])
    return retrievers(encoder)


def _report(result, settings: Settings) -> None:
    """What the round did; the model's words are escaped (they may hold terminal control codes)."""
    if result.skipped:
        print(f"round {result.key[:8]}: {result.skipped}")
        return
    print(f"round {result.key[:8]}: {len(result.proposals)} proposals, {len(result.decisions)} decisions, "
          f"{len(result.missing)} missing skills; {result.sent} new events on {settings.bus} "
          f"({result.calls} model calls, {len(result.failures)} failed)")
    for p in result.proposals:
        print(f"  proposal {p.proposal_id[:8]}: '{printable(p.task)}' ({p.skill or 'no library skill'}) — {printable(p.rationale)}")
    for m in result.missing:
        closest = f" (closest: {m.best_skill} {m.similarity:.2f})" if m.best_skill else ""
        print(f"  missing skill for '{printable(m.step)}'{closest}")
    for d in result.decisions:
        print(f"  decision {d.decision_id[:8]}: {d.episodes} episodes of {' -> '.join(d.skill_sequence)}")


def _execute(settings: Settings, args, decisions: int) -> None:
    from tqdm import tqdm

    from learner.evaluate import load_for_decision
    from producers import workers
    from producers.rollout import RolloutConfig
    from robolake.failures import failure

    config = RolloutConfig(skills=("go_home",), task_skill="go_home", noise=args.noise,
                           experiment_id=args.experiment)  # each decision's sequence replaces the skills
    done = [0]

    with tqdm(total=decisions * args.episodes, unit="episode", desc="executing", disable=None, file=sys.stderr) as bar:
        def finished(n: int) -> None:
            done[0] += n
            bar.update(n)

        workers.serve_decisions(settings, config, 1, 0.5, finished, load_learned=load_for_decision,
                                describe_failure=failure)
    print(f"executed {done[0]} episodes of {decisions} decisions")


def _serve(curriculum, settings: Settings, args) -> int:
    import signal
    import threading

    from infra.bus.backend import open_bus
    from infra.lake_sql import open_lake

    stop = threading.Event()
    try:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except ValueError:  # not the main thread (tests)
        pass
    print(f"curriculum of experiment {args.experiment}: waiting for skill.summary events on {settings.bus}",
          file=sys.stderr)
    rounds = curriculum.serve(open_bus(settings), lambda: open_lake(settings), stop, args.until_idle,
                              on_round=lambda result: _report(result, settings))
    print(f"ran {rounds} rounds")
    return 0
