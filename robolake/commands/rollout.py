"""Producing episodes from the command line: `produce` (simulator or synthetic) and `skills`."""

from __future__ import annotations

import sys

from robolake.commands import positive_int, usage_error
from robolake.settings import Settings


def register(commands, common) -> None:
    produce = commands.add_parser(
        "produce", parents=[common], help="run rollout workers (or synthetic episodes) onto the bus",
        description="Run W rollout workers in the simulated Panda block-stacking domain and stream every "
                    "episode onto the episodes topic: a skill sequence (--skills, or --task for its natural "
                    "decomposition) for N episodes, or serve curriculum decisions (--from-decisions). "
                    "--synthetic N streams random-but-valid episodes without the simulator. On the "
                    "in-process bus the lake sink runs in the same process before the command returns.")
    what = produce.add_mutually_exclusive_group(required=True)
    what.add_argument("--episodes", type=positive_int, metavar="N", help="simulated episodes to run")
    what.add_argument("--from-decisions", action="store_true",
                      help="run the skill sequences that curriculum.decision events ask for")
    what.add_argument("--synthetic", type=positive_int, metavar="N", help="synthetic episodes (no simulator)")
    sequence = produce.add_mutually_exclusive_group()
    sequence.add_argument("--skills", nargs="+", metavar="SKILL", help="the skill sequence (see 'robolake skills')")
    sequence.add_argument("--task", metavar="SKILL", help="a task named by its final skill, e.g. build_tower")
    produce.add_argument("--workers", type=positive_int, default=1, help="parallel workers (default 1)")
    produce.add_argument("--noise", type=float, default=0.0, help="expert action noise, 0 = clean (default 0)")
    produce.add_argument("--switch", choices=("success", "fixed"), default="success",
                         help="switch skills when the success function fires, or after --steps-per-skill")
    produce.add_argument("--steps-per-skill", type=positive_int, default=60, help="steps per skill at most (60)")
    produce.add_argument("--frames", action="store_true", help="a 64x64 PNG camera frame on every step")
    produce.add_argument("--frame-every", type=positive_int, metavar="K",
                         help="frames on steps 0, K, 2K, ... only (implies --frames)")
    produce.add_argument("--until-idle", type=float, metavar="S", help="with --from-decisions: stop when idle")
    produce.add_argument("--steps", type=positive_int, default=100, help="with --synthetic: steps per episode")
    produce.add_argument("--chunk-steps", type=positive_int, default=50, help="steps per message (default 50)")
    produce.add_argument("--experiment", default="default", help="experiment id (default 'default')")
    produce.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    produce.set_defaults(run=run_produce)

    skills = commands.add_parser("skills", parents=[common], help="list the skill library",
                                 description="List the skill library (id, version, reward function, caption).")
    skills.add_argument("--announce", action="store_true", help="publish every skill as a skill.added event")
    skills.set_defaults(run=run_skills)


def run_produce(args, settings: Settings) -> int:
    from tqdm import tqdm

    from infra.bus import BusError

    if args.synthetic is None and args.noise < 0:
        return usage_error("produce", f"--noise must be >= 0, got {args.noise}")
    try:
        with tqdm(total=args.synthetic or args.episodes, unit="episode", desc="producing", disable=None) as bar:
            if args.synthetic is not None:
                _synthetic(args, settings, bar.update)
            else:
                from producers.sim.skills import UnknownSkill

                try:
                    config = _rollout_config(args)
                except (UnknownSkill, ValueError) as exc:
                    return usage_error("produce", str(exc))
                from producers import workers

                if args.from_decisions:
                    workers.serve_decisions(settings, config, args.workers, args.until_idle, bar.update)
                else:
                    workers.produce_episodes(settings, config, args.episodes, args.workers, args.seed, bar.update)
            produced = bar.n
    except BusError as exc:
        print(f"robolake produce: {exc}", file=sys.stderr)
        return 1
    print(f"produced {produced} episodes on {settings.bus}")
    if settings.bus == "memory":  # embedded default: the in-process log lands in the lake before we exit
        from consumers.lake_sink import LakeSink

        stats = LakeSink(settings, flush_seconds=1.0).run(until_idle_s=0.5)
        print(f"wrote {stats.rows} rows in {stats.commits} transactions to {settings.lake_root}; "
              f"query them with: robolake sql \"SELECT * FROM episodes\"")
    return 0


def _rollout_config(args):
    from producers.rollout import RolloutConfig, task_for

    if args.from_decisions:
        skills = ("go_home",)  # replaced by each decision's sequence
    elif args.task:
        skills = task_for(args.task)
    elif args.skills:
        skills = tuple(args.skills)
    else:
        raise ValueError("say what to run: --skills SKILL [SKILL ...] or --task SKILL")
    return RolloutConfig(skills=skills, task_skill=args.task or skills[-1], switch=args.switch,
                         steps_per_skill=args.steps_per_skill, noise=args.noise,
                         frames=args.frames or args.frame_every is not None, frame_every=args.frame_every or 1,
                         experiment_id=args.experiment, chunk_steps=args.chunk_steps)


def _synthetic(args, settings: Settings, progress) -> None:
    from infra.bus import open_bus
    from producers.synthetic import SyntheticConfig, produce

    config = SyntheticConfig(episodes=args.synthetic, steps=args.steps, chunk_steps=args.chunk_steps,
                             experiment_id=args.experiment, seed=args.seed)
    producer = open_bus(settings).producer()
    produce(producer, config, progress=progress)
    producer.close()


def run_skills(args, settings: Settings) -> int:
    from producers.sim.skills import LIBRARY

    print(f"{'skill':<22} {'v':>2}  {'reward function':<26} caption")
    for skill in LIBRARY.values():
        print(f"{skill.id:<22} {skill.version:>2}  {skill.reward[0] + ' v' + str(skill.reward[1]):<26} {skill.caption}")
    if args.announce:
        from infra.bus import open_bus
        from producers.sim.announce import announce_skills

        count = announce_skills(open_bus(settings).producer())
        print(f"announced {count} skills on the skills topic")
    return 0
