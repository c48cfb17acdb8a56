"""`robolake export`: episodes of the lake as another tool's dataset (LeRobot)."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from robolake.commands.common import CommandFailed, UsageError, inside_lake

FORMATS = ("lerobot",)


def register(commands, common) -> None:
    export = commands.add_parser(
        "export", parents=[common], help="write episodes of the lake as a LeRobot dataset",
        description="Write the complete episodes matching --where (a predicate on the episodes view, read-only "
                    "as in `robolake sql`) to the directory OUT as a LeRobot dataset (format v3.0): each frame's "
                    "state (the observation's floats, named) and action, the task caption of each episode, and "
                    "the camera as MP4 where the episodes have frames (video needs the `export` extra). "
                    "LeRobot loads it with LeRobotDataset(repo_id, root=OUT). OUT must not exist, or be empty.",
        epilog="examples:\n\n"
               "  robolake export --format lerobot datasets/all\n"
               "  robolake export --format lerobot --where \"task_success AND experiment_id = 'demo'\" datasets/demo\n"
               "  robolake export --format lerobot --where \"task LIKE '%red%'\" --no-video datasets/red")
    export.add_argument("out", metavar="OUT", help="the directory to write")
    export.add_argument("--format", required=True, choices=FORMATS, help="the dataset format: lerobot (v3.0)")
    export.add_argument("--where", default="TRUE", metavar="PREDICATE",
                        help="predicate on the episodes view (default all)")
    export.add_argument("--no-video", action="store_true", help="leave the camera frames out")
    export.set_defaults(run=run_export)


def run_export(args, settings: Settings) -> int:
    from consumers.export.lerobot import export_lerobot
    from infra.lake_catalog import lake_exists

    out = Path(args.out)
    _check_out(out, settings)
    if not lake_exists(settings):
        raise CommandFailed(f"no lake at {settings.lake_root}")
    stats = export_lerobot(settings, out, where=args.where, video=not args.no_video)
    print(f"exported {stats.episodes} episodes ({stats.frames} frames at {stats.fps} fps; tasks: {stats.tasks}; "
          f"{'video' if stats.video else 'no video'}) to {out}")
    return 0


def _check_out(out: Path, settings: Settings) -> None:
    """Before any work: OUT is new or an empty directory, in a directory that exists, outside the lake."""
    if inside_lake(out, settings):
        raise UsageError(f"{out} is inside the lake; write the dataset elsewhere")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty directory")
    if not out.resolve().parent.is_dir():
        raise CommandFailed(f"{out}: directory {out.resolve().parent} does not exist")
