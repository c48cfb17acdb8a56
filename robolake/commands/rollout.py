"""Producing episodes from the command line: `produce` (simulator or synthetic) and `skills`."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import (UsageError, check_lake_writable, frame_size, identifier, interrupt_deferred,
                                      nonnegative_float, nonnegative_int, positive_int, positive_seconds)


def register(commands, common) -> None:
    produce = commands.add_parser(
        "produce", parents=[common], help="run rollout workers (or synthetic episodes) onto the bus",
        description="Run W rollout workers in the simulated Panda block-stacking domain and stream every "
                    "episode onto the episodes topic: a skill sequence (--skills, or --task for its natural "
                    "decomposition) for N episodes, or serve curriculum decisions (--from-decisions). "
                    "--synthetic N streams random-but-valid episodes without the simulator. On the "
                    "in-process bus the lake sink runs in the same process before the command returns. "
                    "Ctrl-C stops the workers at once; the episodes that finished are kept.",
        epilog="examples:\n\n"
               "  robolake produce --episodes 10 --task build_tower --workers 2\n"
               "  robolake produce --episodes 5 --skills reach_red grasp_red lift_red --noise 0.3 --frames\n"
               "  robolake produce --synthetic 100 --steps 50\n"
               "  robolake produce --from-decisions --until-idle 30 --bus kafka://127.0.0.1:9092")
    what = produce.add_mutually_exclusive_group(required=True)
    what.add_argument("--episodes", type=positive_int, metavar="N", help="simulated episodes to run")
    what.add_argument("--from-decisions", action="store_true",
                      help="run the skill sequences that curriculum.decision events ask for")
    what.add_argument("--synthetic", type=positive_int, metavar="N", help="synthetic episodes (no simulator)")
    sequence = produce.add_mutually_exclusive_group()
    sequence.add_argument("--skills", nargs="+", metavar="SKILL", help="the skill sequence (see 'robolake skills')")
    sequence.add_argument("--task", metavar="SKILL", help="a task named by its final skill, e.g. build_tower")
    produce.add_argument("--workers", type=positive_int, default=1, metavar="W", help="parallel workers (default 1)")
    produce.add_argument("--noise", type=nonnegative_float, default=0.0, metavar="X",
                         help="expert action noise, 0 = clean (default 0)")
    produce.add_argument("--switch", choices=("success", "fixed"), default="success",
                         help="switch skills when the success function fires, or after --steps-per-skill")
    produce.add_argument("--steps-per-skill", type=positive_int, default=60, metavar="N",
                         help="steps per skill at most (default 60)")
    produce.add_argument("--frames", action="store_true", help="a PNG camera frame on every step of every episode")
    produce.add_argument("--frame-every", type=positive_int, metavar="K",
                         help="frames on steps 0, K, 2K, ... only (implies --frames)")
    produce.add_argument("--frame-size", type=frame_size, default=128, metavar="PX",
                         help="frames PX square (128 to 256, default 128)")
    produce.add_argument("--eval-videos", type=nonnegative_int, default=2, metavar="N",
                         help="with --from-decisions: an evaluation decision's first N episodes record frames "
                              "(every 2nd step), its videos (default 2; 0: none)")
    produce.add_argument("--until-idle", type=positive_seconds, metavar="SECONDS",
                         help="with --from-decisions: stop once no decision arrived for this long")
    produce.add_argument("--steps", type=positive_int, default=100, metavar="N",
                         help="with --synthetic: steps per episode (default 100)")
    produce.add_argument("--chunk-steps", type=positive_int, default=50, metavar="N",
                         help="steps per message (default 50)")
    produce.add_argument("--experiment", type=identifier, metavar="ID",
                         help="experiment id (default 'default'); with --from-decisions: serve only this "
                              "experiment's decisions, in a consumer group of its own (default: every experiment's)")
    produce.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="first seed (default 0)")
    produce.set_defaults(run=run_produce)

    skills = commands.add_parser("skills", parents=[common], help="list the skill library",
                                 description="List the skill library (id, version, reward function, caption).")
    skills.add_argument("--announce", action="store_true", help="publish every skill as a skill.added event")
    skills.set_defaults(run=run_skills)


def run_produce(args, settings: Settings) -> int:
    import threading

    from tqdm import tqdm

    if args.from_decisions and settings.bus == "memory":
        raise UsageError("--from-decisions serves decisions from a shared log, but the in-process bus starts "
                         "empty in every command: use --bus kafka://HOST:PORT")
    config = None if args.synthetic is not None else _rollout_config(args)  # bad skills: exit 2 before any work
    if settings.bus == "memory":
        check_lake_writable(settings)  # the sink runs at the end: refuse now, not after the simulation
    done, lock = [0], threading.Lock()  # episodes finished and flushed, counted by the workers themselves
    interrupted = False
    with tqdm(total=args.synthetic or args.episodes, unit="episode", desc="producing", disable=None,
              file=sys.stderr) as bar:
        def finished(n: int) -> None:
            with lock:
                done[0] += n
                bar.update(n)

        try:
            if args.synthetic is not None:
                _synthetic(args, settings, finished)
            else:
                from producers import workers
                from robolake.failures import failure

                if args.from_decisions:
                    from learner.evaluate import load_for_decision

                    workers.serve_decisions(settings, config, args.workers, args.until_idle, finished, args.experiment,
                                            load_for_decision, failure)
                else:
                    workers.produce_episodes(settings, config, args.episodes, args.workers, args.seed, finished,
                                             failure)
        except KeyboardInterrupt:
            interrupted = True
    print(f"produced {done[0]} episodes on {settings.bus}" + (" (interrupted)" if interrupted else ""))
    if settings.bus == "memory":  # embedded default: the in-process log lands in the lake before we exit
        from consumers.lake_sink.sink import LakeSink

        with interrupt_deferred() as deferred:  # a second of work that keeps what finished: let it end
            stats = LakeSink(settings, flush_seconds=1.0).run(until_idle_s=0.5)
        interrupted |= deferred.is_set()
        print(f"wrote {stats.rows} rows in {stats.commits} transactions to {settings.lake_root}; "
              f"query them with: robolake sql \"SELECT * FROM episodes\"")
    if interrupted:
        raise KeyboardInterrupt  # exit 130, after keeping what finished
    return 0


def _rollout_config(args):
    from producers.rollout import VIDEO_FRAME_EVERY, RolloutConfig, task_for

    if args.from_decisions:
        skills = ("go_home",)  # replaced by each decision's sequence
    elif args.task:
        skills = task_for(args.task)
    elif args.skills:
        skills = tuple(args.skills)
    else:
        raise UsageError("say what to run: --skills SKILL [SKILL ...] or --task SKILL")
    return RolloutConfig(skills=skills, task_skill=args.task or skills[-1], switch=args.switch,
                         steps_per_skill=args.steps_per_skill, noise=args.noise,
                         frames=args.frames or args.frame_every is not None,
                         frame_every=args.frame_every or (1 if args.frames else VIDEO_FRAME_EVERY),
                         frame_size=args.frame_size, eval_videos=args.eval_videos,
                         experiment_id=args.experiment or "default", chunk_steps=args.chunk_steps,
                         worker_id=_worker_name() if args.from_decisions else "worker")


def _worker_name() -> str:
    """Rollout services on many machines, or several on one: each episode says which one ran it."""
    import os
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


def _synthetic(args, settings: Settings, progress) -> None:
    from infra.bus.backend import open_bus
    from producers.synthetic import SyntheticConfig, produce

    config = SyntheticConfig(episodes=args.synthetic, steps=args.steps, chunk_steps=args.chunk_steps,
                             experiment_id=args.experiment or "default", seed=args.seed)
    producer = open_bus(settings).producer()
    produce(producer, config, progress=progress)
    producer.close()


def run_skills(args, settings: Settings) -> int:
    from producers.sim.skills import LIBRARY

    print(f"{'skill':<22} {'v':>2}  {'reward function':<26} caption")
    for skill in LIBRARY.values():
        print(f"{skill.id:<22} {skill.version:>2}  {skill.reward[0] + ' v' + str(skill.reward[1]):<26} {skill.caption}")
    if args.announce:
        from infra.bus.backend import open_bus
        from producers.sim.announce import announce_skills
        from robolake.commands.log import warn_in_process

        count = announce_skills(open_bus(settings).producer())
        print(f"announced {count} skills on the skills topic")
        warn_in_process(settings, "the announcement is gone when this command ends")
    return 0
