"""`robolake report` (one experiment as an HTML page and Markdown) and `robolake dashboard` (live, on
localhost); both only read the lake (robolake/report). `robolake tail all` uses the same timeline."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from robolake.commands.common import CommandFailed, UsageError, identifier, interrupt_deferred, nonnegative_int


def register(commands, common) -> None:
    report = commands.add_parser(
        "report", parents=[common], help="write an experiment's report (one HTML page and Markdown)",
        description="Read one experiment from the lake and write DIR/<experiment>.html (self-contained: charts "
                    "and videos inline, nothing fetched) and DIR/<experiment>.md (its images and videos beside "
                    "it): success per skill with Wilson 95% intervals, learning curves, the conversation between "
                    "the modules, videos of episodes (per task, the latest with camera frames: a run's "
                    "evaluations), data volumes, and the provenance of every number (episode, decision, "
                    "proposal, model call, learner run).",
        epilog="examples:\n\n  robolake report --experiment exp-1 -o reports\n"
               "  robolake report --experiment exp-1 --video EPISODE_ID --video EPISODE_ID")
    report.add_argument("--experiment", type=identifier, required=True, metavar="ID", help="the experiment to report")
    report.add_argument("-o", "--output", default="report", metavar="DIR", help="directory to write into")
    report.add_argument("--videos", type=nonnegative_int, default=2, metavar="N",
                        help="videos per task: its latest episodes with camera frames (default 2)")
    report.add_argument("--video", action="append", default=[], metavar="EPISODE_ID",
                        help="also show this episode as a video (any with frames; repeatable)")
    report.set_defaults(run=run_report)

    video = commands.add_parser(
        "video", parents=[common], help="write one episode's camera frames as an MP4",
        description="Read one complete episode's camera frames from the lake and write them as an MP4 (H.264), "
                    "played in simulated time. Episodes have frames when recorded with `robolake produce "
                    "--frames`, or as the first episodes of a run's evaluations (--eval-videos).",
        epilog="example:\n\n  robolake video 3f2c9a41-... -o episode.mp4")
    video.add_argument("episode", metavar="EPISODE_ID", help="the episode (see `robolake sql \"SELECT DISTINCT "
                                                            "episode_id FROM frames\"`)")
    video.add_argument("-o", "--output", required=True, metavar="FILE", help="the MP4 to write")
    video.set_defaults(run=run_video)

    dashboard = commands.add_parser(
        "dashboard", parents=[common], help="serve a live, read-only dashboard of the lake on localhost",
        description="Serve a page that follows an experiment as it runs: the conversation between the modules, "
                    "the skills table with success and intervals, learning curves, videos of episodes. Read-only "
                    "(GET only); each request reads the lake afresh. Ctrl-C stops it.")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dashboard.add_argument("--port", type=int, default=8765, metavar="N", help="port (0: any free one)")
    dashboard.set_defaults(run=run_dashboard)


def run_report(args, settings: Settings) -> int:
    from infra.optional import require

    require("matplotlib", "analysis")
    report, page, text = write_report(settings, args.experiment, Path(args.output), args.videos, tuple(args.video))
    print(f"wrote {page} and {text}: {len(report.conversation)} events, "
          f"{len({r['skill_id'] for r in report.skills['learned'] + report.skills['expert']})} skills, "
          f"{report.volumes['complete episodes']} episodes")
    return 0


def write_report(settings: Settings, experiment: str, out: Path, videos_per_skill: int = 2,
                 asked: tuple[str, ...] = ()):
    """Read the experiment from the lake and write out/<experiment>.html and .md: (report, page, text)."""
    from infra.lake_sql import open_lake
    from infra.optional import require
    from robolake.report import html, markdown
    from robolake.report.queries import ExperimentNotFound
    from robolake.report.report import gather
    from robolake.report.video import NoFrames

    require("av", "analysis")
    con = open_lake(settings, read_only=True)
    try:
        report = gather(con, experiment, settings.lake_root, videos_per_skill, asked)
    except (ExperimentNotFound, NoFrames) as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        con.close()
    out.mkdir(parents=True, exist_ok=True)
    page, text = out / f"{experiment}.html", out / f"{experiment}.md"
    page.write_text(html.render(report), encoding="utf-8")
    text.write_text(markdown.render(report, out / experiment), encoding="utf-8")
    return report, page, text


def run_video(args, settings: Settings) -> int:
    from infra.lake_sql import open_lake
    from infra.optional import require
    from robolake.report.video import NoFrames, episode_video

    require("av", "analysis")
    out = Path(args.output)
    if out.is_dir():
        raise UsageError(f"-o: {out} is a directory; name the MP4 file to write")
    con = open_lake(settings, read_only=True)
    try:
        clip = episode_video(con, args.episode)
    except NoFrames as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        con.close()
    try:
        out.write_bytes(clip["mp4"])
    except OSError as exc:
        raise CommandFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}: {clip['frames']} frames at {clip['fps']:.3g} per second")
    return 0


def run_dashboard(args, settings: Settings) -> int:
    from robolake.report.dashboard import serve

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port: expected 0 to 65535, got {args.port}")
    try:
        server = serve(settings, args.host, args.port)
    except OSError as exc:
        raise CommandFailed(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.server_address[:2]
    print(f"dashboard of {settings.lake_root} on http://{host}:{port}/ (read-only; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run_tail_all(args, settings: Settings) -> int:
    """The whole conversation of one experiment, across topics, in time order, read from the lake
    (so it works on the embedded default too, while a run's sink writes)."""
    from infra.lake_catalog import LakeNotFound
    from infra.lake_sql import open_lake
    from robolake.report import queries

    if not args.experiment:
        raise UsageError("tail all: say which experiment with --experiment ID")
    cursor, shown, con = None, 0, None
    # Ctrl-C ends the loop between polls: raised inside a DuckDB query it would be its error instead.
    with interrupt_deferred() as stopped:
        try:
            while not stopped.is_set() and (args.limit is None or shown < args.limit):
                if con is None:
                    try:  # opened once: each query reads the lake's latest commit (reopening cost ~0.8 s a poll)
                        con = open_lake(settings, read_only=True)
                    except LakeNotFound:
                        if not args.follow:
                            raise
                        stopped.wait(1.0)  # --follow waits for the lake (a sink creates it) as for the experiment
                        continue
                try:
                    if cursor is None and not args.follow:
                        queries.require_experiment(con, args.experiment, settings.lake_root)
                    answer = queries.timeline(con, args.experiment, cursor)
                except queries.ExperimentNotFound as exc:
                    raise CommandFailed(str(exc)) from None
                cursor = answer["cursor"]
                for event in answer["events"][: None if args.limit is None else args.limit - shown]:
                    print(event["line"], flush=True)
                    shown += 1
                if not args.follow:
                    break
                if not answer["events"]:
                    stopped.wait(1.0)
        finally:
            if con is not None:
                con.close()
    return 0
