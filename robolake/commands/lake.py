"""The lake from the command line: `sink` (log -> Parquet), `compact`, `sql` (read-only queries)."""

from __future__ import annotations

import sys

from robolake.commands import positive_int, usage_error
from robolake.settings import Settings

FORMATS = ("table", "csv", "json", "parquet")


def register(commands, common) -> None:
    sink = commands.add_parser(
        "sink", parents=[common], help="write the log into the lake (Parquet), exactly once",
        description="Consume the episode and event topics and write Parquet tables to the lake. "
                    "Offsets are committed only after the objects are durable. Stops on SIGTERM/Ctrl-C "
                    "after a final flush, or with --until-idle once nothing arrives.")
    sink.add_argument("--group", default="lake-sink", help="consumer group (default lake-sink)")
    sink.add_argument("--topics", nargs="+", metavar="TOPIC",
                      help="topics to sink (default: episodes, curriculum, skills, learner, analysis)")
    sink.add_argument("--flush-seconds", type=float, default=5.0,
                      help="rotate files at least this often, also when topics go idle (default 5)")
    sink.add_argument("--file-mb", type=positive_int, default=128, help="rotate files at this size (default 128)")
    sink.add_argument("--until-idle", type=float, metavar="SECONDS",
                      help="exit once nothing has arrived for this long and everything is committed")
    sink.set_defaults(run=run_sink)

    compact = commands.add_parser(
        "compact", parents=[common], help="merge small lake files without changing any query result",
        description="Merge the lake's small data files into large ones, then delete the files that no "
                    "snapshot younger than --keep-seconds needs. Each step is a catalog transaction: safe "
                    "while sinks and readers run, and if interrupted.")
    compact.add_argument("--keep-seconds", type=float, default=600.0,
                         help="keep snapshots (and their files) this young for running readers (default 600)")
    compact.set_defaults(run=run_compact)

    replay = commands.add_parser(
        "replay", parents=[common], help="rebuild the lake into a new one, or re-stream episodes onto a topic",
        description="--to-lake: rebuild every table into a new lake from the retained log, and from this "
                    "lake where the log no longer has the data. --to-topic: re-send the episodes matching "
                    "--where (a predicate on the episodes view) onto a topic, in their original order.")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-lake", metavar="LAKE", help="file://<dir> or s3://<bucket>/<prefix> of the new lake")
    target.add_argument("--to-topic", metavar="TOPIC", help="topic to re-stream onto (created if missing)")
    replay.add_argument("--where", default="TRUE", help="predicate on the episodes view (with --to-topic)")
    replay.add_argument("--merge", action="store_true",
                        help="with --to-lake: add to a lake that already holds data (only what it lacks)")
    replay.set_defaults(run=run_replay)

    migrate = commands.add_parser(
        "migrate", parents=[common], help="convert a lake written by robolake 0.1 into this lake",
        description="Read a v1 lake (Parquet files named <topic>+<partition>+<offset>.parquet under "
                    "hive directories) and write every message it holds into --lake's tables, verifying "
                    "each episode's checksum on the way. Running it again adds only what is missing.")
    migrate.add_argument("--from-v1", required=True, metavar="LAKE", help="the v1 lake: a directory or s3://bucket/prefix")
    migrate.set_defaults(run=run_migrate)

    sql = commands.add_parser(
        "sql", parents=[common], help="read-only SQL over the lake (a shell when no query is given)",
        description="Query the lake with DuckDB. Views: episodes, steps, frames (complete episodes only), "
                    "episode_status, partial_episodes (with the problem), partial_steps, events, and the "
                    "tables episode_starts, episode_ends, steps_all, chunks, frames_all, lake_offsets. "
                    "The lake is opened read-only: only SELECT (and EXPLAIN of one) runs.")
    sql.add_argument("query", nargs="?", help="SQL; omit for an interactive shell")
    sql.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    sql.add_argument("--output", "-o", help="write to this file instead of standard output (required for parquet)")
    sql.add_argument("--explain", action="store_true", help="show the query plan instead of running it")
    sql.set_defaults(run=run_sql)


def run_compact(args, settings: Settings) -> int:
    from tqdm import tqdm

    from consumers.lake_sink.compact import compact
    from infra.lake_catalog import lake_exists

    if not lake_exists(settings):
        print(f"robolake compact: no lake at {settings.lake_root}", file=sys.stderr)
        return 1
    with tqdm(total=2, unit="step", desc="compacting", disable=None) as bar:
        stats = compact(settings, keep_s=args.keep_seconds, progress=bar.update)
    print(f"{stats.files_before} data files -> {stats.files_after} ({stats.files_deleted} deleted) "
          f"in {settings.lake_root}")
    return 0


def run_migrate(args, settings: Settings) -> int:
    from tqdm import tqdm

    from consumers.lake_sink.migrate import migrate_v1

    source = args.from_v1.removeprefix("file://")
    if not source.startswith("s3://"):
        from pathlib import Path

        source = str(Path(source).expanduser().resolve())
    try:
        with tqdm(unit="message", desc="migrating", disable=None) as bar:
            stats = migrate_v1(source.rstrip("/"), settings, progress=bar.update)
    except FileNotFoundError as exc:
        print(f"robolake migrate: {exc}", file=sys.stderr)
        return 1
    print(f"migrated {stats.messages} messages from {source} into {settings.lake_root}: "
          f"{stats.episodes_verified} episodes verified, {stats.episodes_failed} failed their v1 checksum")
    return 0


def run_replay(args, settings: Settings) -> int:
    import duckdb

    from consumers.lake_sink.replay import ReplayError, replay_to_lake, replay_to_topic
    from infra.bus import open_bus
    from infra.lake_catalog import LakeNotFound
    from infra.lake_sql import ReadOnlyError
    from robolake.settings import SettingsError

    if args.to_lake and args.where != "TRUE":
        return usage_error("replay", "--where filters episodes for --to-topic; --to-lake rebuilds everything")
    bus = open_bus(settings)
    try:
        if args.to_lake:
            target = settings.replace(lake=args.to_lake)
            if target.lake_root == settings.lake_root:
                return usage_error("replay", "--to-lake must name a different lake than the source")
            stats = replay_to_lake(settings, target, bus, merge=args.merge)
            print(f"rebuilt {target.lake_root}: {stats.from_lake} messages from {settings.lake_root}, "
                  f"{stats.from_bus} from {settings.bus}")
        else:
            stats = replay_to_topic(settings, bus, args.to_topic, episodes=args.where)
            print(f"re-streamed {stats.episodes} episodes ({stats.from_lake} messages) onto {args.to_topic}")
    except (SettingsError, ReadOnlyError) as exc:
        return usage_error("replay", str(exc))
    except (ReplayError, LakeNotFound) as exc:
        print(f"robolake replay: {exc}", file=sys.stderr)
        return 1
    except duckdb.Error as exc:
        print(f"robolake replay: {exc}", file=sys.stderr)
        return 1
    return 0


def run_sink(args, settings: Settings) -> int:
    from consumers.lake_sink import LakeSink
    from consumers.lake_sink.sink import LakeUnavailable, run_until_signalled
    from infra.bus import BusError

    sink = LakeSink(settings, group=args.group, source_topics=args.topics, flush_seconds=args.flush_seconds,
                    file_bytes=args.file_mb * 1024 * 1024)
    print(f"sinking {', '.join(sink.topics)} from {settings.bus} into {settings.lake_root} "
          f"(group {args.group})", file=sys.stderr)
    try:
        stats = sink.run(until_idle_s=args.until_idle) if args.until_idle else run_until_signalled(sink)
    except (LakeUnavailable, BusError) as exc:
        print(f"robolake sink: {exc}", file=sys.stderr)
        return 1
    print(f"sink stopped: {stats.messages} messages, {stats.rows} rows, {stats.commits} commits, "
          f"{stats.dead_letters} dead letters, {stats.retries} retries, {stats.fenced} fenced", file=sys.stderr)
    return 0


def run_sql(args, settings: Settings) -> int:
    import duckdb

    from infra.lake_catalog import LakeNotFound
    from infra.lake_sql import ReadOnlyError, open_lake

    if args.format == "parquet" and not args.output:
        return usage_error("sql", "--format parquet needs --output FILE")
    try:
        con = open_lake(settings)
    except LakeNotFound as exc:
        print(f"robolake sql: {exc}", file=sys.stderr)
        return 1
    if args.query is None:
        return _shell(con)
    try:
        _run_one(con, args.query, args.format, args.output, args.explain)
    except ReadOnlyError as exc:
        return usage_error("sql", str(exc))
    except duckdb.Error as exc:
        print(f"robolake sql: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_one(con, sql: str, fmt: str, output: str | None, explain: bool) -> None:
    from infra.lake_sql import query

    relation = query(con, sql)
    if explain:
        relation = con.sql(f"EXPLAIN {sql}")
        print(relation.fetchall()[0][1])
        return
    if fmt == "table":
        text = str(relation)
        if output:
            open(output, "w").write(text)
        else:
            print(text)
        return
    table = relation.to_arrow_table()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, output, compression="zstd")
        print(f"wrote {table.num_rows} rows to {output}", file=sys.stderr)
        return
    out = open(output, "wb") if output else sys.stdout.buffer
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, out)
        else:
            import json

            for row in table.to_pylist():
                out.write((json.dumps(row, default=_json_value) + "\n").encode())
        out.flush()
    finally:
        if output:
            out.close()


def _json_value(value):
    """JSON for what json.dumps does not know: SUM() of integers is a DECIMAL, frames are bytes."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return str(value)  # dates and timestamps as ISO text


def _shell(con) -> int:
    import duckdb

    from infra.lake_sql import VIEWS, ReadOnlyError

    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    print(f"robolake sql (read-only). Views: {', '.join(VIEWS)}. End statements with ';', quit with Ctrl-D.")
    buffer = ""
    while True:
        try:
            line = input("lake> " if not buffer else "  ..> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        buffer += line + "\n"
        if not buffer.strip().endswith(";"):
            continue
        statement, buffer = buffer.strip(), ""
        try:
            _run_one(con, statement, "table", None, False)
        except (ReadOnlyError, duckdb.Error) as exc:
            print(f"error: {exc}")
