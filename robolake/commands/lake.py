"""The lake from the command line: `sink` (log -> Parquet), `compact`, `sql` (read-only queries)."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import (CommandFailed, UsageError, check_bus_reachable, check_lake_writable, identifier,
                                      inside_lake, nonnegative_float, one_line, positive_int, positive_seconds)

FORMATS = ("table", "csv", "json", "parquet")


def register(commands, common) -> None:
    sink = commands.add_parser(
        "sink", parents=[common], help="write the log into the lake (Parquet), exactly once",
        description="Consume the episode and event topics and write Parquet tables to the lake. "
                    "Offsets are committed only after the objects are durable. Stops on SIGTERM/Ctrl-C "
                    "after a final flush, or with --until-idle once nothing arrives.")
    sink.add_argument("--group", metavar="NAME",
                      help="consumer group (default: lake-sink-<hash of the lake's root>, one per lake)")
    sink.add_argument("--topics", nargs="+", metavar="TOPIC",
                      help="topics to sink: ours with or without the 'robolake.' prefix, or any full topic name "
                           "(default: episodes, curriculum, skills, learner, analysis, lineage)")
    sink.add_argument("--flush-seconds", type=positive_seconds, default=5.0, metavar="SECONDS",
                      help="commit so that what arrives is visible in SQL about this long after the sink "
                           "read it, also when topics go idle; 0.5 gives sub-second freshness (default 5)")
    sink.add_argument("--file-mb", type=positive_int, default=128, metavar="MB",
                      help="rotate files at this size (default 128)")
    sink.add_argument("--until-idle", type=positive_seconds, metavar="SECONDS",
                      help="exit once nothing has arrived for this long and everything is committed")
    sink.set_defaults(run=run_sink)

    compact = commands.add_parser(
        "compact", parents=[common], help="merge small lake files without changing any query result",
        description="Merge the lake's small data files into large ones, then delete the files that no "
                    "snapshot younger than --keep-seconds needs. Each step is a catalog transaction: safe "
                    "while sinks and readers run, and if interrupted.")
    compact.add_argument("--keep-seconds", type=nonnegative_float, default=600.0, metavar="SECONDS",
                         help="keep snapshots (and their files) this young for running readers (default 600)")
    compact.set_defaults(run=run_compact)

    replay = commands.add_parser(
        "replay", parents=[common], help="rebuild the lake into a new one, or re-stream episodes onto a topic",
        description="--to-lake: rebuild every table into a new lake from the retained log, and from this "
                    "lake where the log no longer has the data. --to-topic: re-send the episodes matching "
                    "--where (a predicate on the episodes view) onto a topic, in their original order.",
        epilog="examples:\n\n"
               "  robolake replay --to-lake file://lake-copy\n"
               "  robolake replay --to-lake s3://robolake/lake2 --merge --lake file://lake\n"
               "  robolake replay --to-topic episodes --where \"task_success AND length < 100\" "
               "--bus kafka://127.0.0.1:9092")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-lake", metavar="LAKE", help="file://<dir> or s3://<bucket>/<prefix> of the new lake")
    target.add_argument("--to-topic", metavar="TOPIC",
                        help="topic to re-stream onto: a robolake topic with or without its 'robolake.' prefix, "
                             "or any other name (created if missing)")
    replay.add_argument("--where", default="TRUE", metavar="PREDICATE",
                        help="predicate on the episodes view (with --to-topic; default all)")
    replay.add_argument("--merge", action="store_true",
                        help="with --to-lake: add to a lake that already holds data (only what it lacks)")
    replay.set_defaults(run=run_replay)

    sql = commands.add_parser(
        "sql", parents=[common], help="read-only SQL over the lake (a shell when no query is given)",
        description="Query the lake with DuckDB. Views: episodes, steps, frames (complete episodes only), "
                    "episode_status, partial_episodes (with the problem), partial_steps, events, and the "
                    "tables episode_starts, episode_ends, steps_all, chunks, frames_all, lake_offsets. "
                    "The lake is opened read-only: only SELECT (and EXPLAIN of one) runs, naming only these "
                    "views, its own CTEs and DuckDB's built-in scalar, aggregate and window functions (no "
                    "table functions), within a timeout and a memory cap. 'table' is a "
                    "preview for the terminal; csv (nested values as JSON text), json (one object per line) "
                    "and parquet write every row.",
        epilog="examples:\n\n"
               "  robolake sql \"SELECT task, avg(task_success::INT) FROM episodes GROUP BY ALL\"\n"
               "  robolake sql \"SELECT * FROM steps WHERE episode_id = 'ep-1'\" --format csv -o steps.csv\n"
               "  robolake sql \"SELECT * FROM partial_episodes\" --format json | head -1\n"
               "  robolake sql                      # an interactive shell")
    sql.add_argument("query", nargs="?", help="SQL; omit for an interactive shell")
    sql.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    sql.add_argument("--output", "-o", metavar="FILE",
                     help="write to this file instead of standard output (needed for parquet; not for table)")
    sql.add_argument("--explain", action="store_true", help="show the query plan instead of running it")
    sql.add_argument("--timeout", dest="sql_timeout_s", type=positive_seconds, metavar="SECONDS",
                     help="end a query running longer (setting sql_timeout_s; default 60)")
    sql.add_argument("--memory-limit", dest="sql_memory_limit", metavar="SIZE",
                     help="end a query needing more memory: 4GB, 512MiB or a share of RAM like 25%% "
                          "(setting sql_memory_limit; default 25%%)")
    sql.set_defaults(run=run_sql)

    verify = commands.add_parser(
        "verify", parents=[common], help="check the stored steps against the digests recorded when they arrived",
        description="Recompute every episode's chunk digests from the steps stored in the lake and compare them "
                    "with the digests recorded at commit (the chunks table) and the episode's checksum, and each "
                    "episode's kept status (episode_status) with what its rows say now. Damaged "
                    "episodes are listed with the data files that hold them; exit 1 if there is any.")
    verify.add_argument("--experiment", type=identifier, metavar="ID", help="only this experiment's episodes")
    verify.set_defaults(run=run_verify)


def run_compact(args, settings: Settings) -> int:
    from tqdm import tqdm

    from consumers.lake_sink.compact import compact
    from infra.lake_catalog import lake_exists

    if not lake_exists(settings):
        raise CommandFailed(f"no lake at {settings.lake_root}")
    with tqdm(total=2, unit="step", desc="compacting", disable=None, file=sys.stderr) as bar:
        stats = compact(settings, keep_s=args.keep_seconds, progress=bar.update)
    print(f"{stats.files_before} data files -> {stats.files_after} ({stats.files_deleted} deleted) "
          f"in {settings.lake_root}")
    return 0


def run_replay(args, settings: Settings) -> int:
    from consumers.lake_sink.replay import replay_to_lake, replay_to_topic
    from infra.bus.backend import open_bus
    from infra.lake_catalog import lake_exists
    from robolake.commands.log import resolve_topic, warn_in_process

    if args.to_lake and args.where != "TRUE":
        raise UsageError("--where filters episodes for --to-topic; --to-lake rebuilds everything")
    if not lake_exists(settings):
        raise CommandFailed(f"no lake at {settings.lake_root} to replay from")
    if args.to_lake:
        target = settings.replace(lake=args.to_lake)
        inside = (not target.lake_is_s3 and not settings.lake_is_s3
                  and (f"{target.lake_root}/".startswith(f"{settings.lake_root}/")
                       or f"{settings.lake_root}/".startswith(f"{target.lake_root}/")))
        if target.lake_root == settings.lake_root or inside:
            raise UsageError("--to-lake must name a different lake than the source, neither inside the other")
        check_lake_writable(target)
        check_bus_reachable(settings)
        stats = replay_to_lake(settings, target, open_bus(settings), merge=args.merge)
        print(f"rebuilt {target.lake_root}: {stats.from_lake} messages from {settings.lake_root}, "
              f"{stats.from_bus} from {settings.bus}; {stats.rewards} relabelled rewards rows copied as they are "
              "(relabel it for what the log added)")
    else:
        topic = resolve_topic(args.to_topic) or args.to_topic
        if not topic.strip():
            raise UsageError("--to-topic needs a topic name")
        check_bus_reachable(settings)
        stats = replay_to_topic(settings, open_bus(settings), topic, episodes=args.where)
        print(f"re-streamed {stats.episodes} episodes ({stats.from_lake} messages) onto {topic}")
        warn_in_process(settings, f"the episodes re-streamed onto {topic} are gone when it ends")
    return 0


def run_sink(args, settings: Settings) -> int:
    from consumers.lake_sink.sink import LakeSink
    from consumers.lake_sink.sink import run_until_signalled
    from robolake.commands.log import topic_or_usage_error

    topics = [topic_or_usage_error(name, any_full_name=True) for name in args.topics] if args.topics else None
    check_lake_writable(settings)
    check_bus_reachable(settings)
    sink = LakeSink(settings, group=args.group, source_topics=topics, flush_seconds=args.flush_seconds,
                    file_bytes=args.file_mb * 1024 * 1024)
    if sys.stderr.isatty():  # progress, like a progress bar: for a person watching, not for logs
        print(f"sinking {', '.join(sink.topics)} from {settings.bus} into {settings.lake_root} "
              f"(group {args.group}); Ctrl-C or SIGTERM stops after a final flush", file=sys.stderr)
    stats = sink.run(until_idle_s=args.until_idle) if args.until_idle is not None else run_until_signalled(sink)
    print(f"sink stopped: {stats.messages} messages, {stats.rows} rows, {stats.commits} commits, "
          f"{stats.dead_letters} dead letters, {stats.retries} retries, {stats.fenced} fenced", file=sys.stderr)
    return 0


def run_sql(args, settings: Settings) -> int:
    import duckdb

    from infra.lake_sql import open_lake

    if args.format == "parquet" and not args.output:
        raise UsageError("--format parquet needs --output FILE")
    if args.format == "table" and args.output:
        raise UsageError("--format table is a preview for the terminal; write files as csv, json or parquet")
    if args.query is None and (args.output or args.explain or args.format != "table"):
        raise UsageError("--output, --explain and --format need a query (the shell prints tables)")
    if args.output:
        _check_output(args.output, settings)
    con = open_lake(settings)
    if args.query is None:
        return _shell(con, settings)
    try:
        _run_one(con, settings, args.query, args.format, args.output, args.explain)
    except duckdb.Error as exc:
        raise _naming_the_file(con, exc) from exc
    return 0


def _naming_the_file(con, exc: Exception) -> Exception:
    """A read that failed on a damaged data file, as one line naming the file (DuckDB's says none)."""
    from infra.lake_files import damaged_file, looks_like_file_error

    found = damaged_file(con) if looks_like_file_error(exc) else None
    if found is None:
        return exc
    return CommandFailed(f"the lake's data file {found[0]} is damaged ({found[1][:200]}); "
                         "`robolake verify` lists the episodes it holds")


def run_verify(args, settings: Settings) -> int:
    from tqdm import tqdm

    from consumers.lake_sink.verify import verify

    with tqdm(unit="episode", desc="verifying", disable=None, file=sys.stderr) as bar:
        result = verify(settings, args.experiment, progress=bar.update)
    if not result.damaged:
        print(f"{result.episodes} episodes verified: every chunk matches its recorded digest, every episode's "
              "status what its rows say")
        return 0
    print(f"{'episode':<38} {'experiment':<16} problem; files")
    for d in result.damaged:
        print(f"{d.episode_id:<38} {d.experiment_id:<16} {d.problem}; {', '.join(d.files) or '(rows in the catalog)'}")
    raise CommandFailed(f"{len({d.episode_id for d in result.damaged})} of {result.episodes} episodes do not match "
                        "what was recorded when they arrived")


def _check_output(path: str, settings: Settings) -> None:
    """Before the query runs: the output file can be written (its directory exists, it is no
    directory) and is not inside the lake or beside its catalog (a read-only command writes nothing there)."""
    from pathlib import Path

    target = Path(path)
    if inside_lake(target, settings):
        raise UsageError(f"--output {path} is inside the lake; write results elsewhere")
    if target.is_dir():
        raise CommandFailed(f"--output {path} is a directory; name a file")
    if not target.resolve().parent.is_dir():
        raise CommandFailed(f"--output {path}: directory {target.resolve().parent} does not exist")


def _run_one(con, settings: Settings, sql: str, fmt: str, output: str | None, explain: bool) -> None:
    from infra.lake_sql import limits, query

    _refuse_pivot_without_values(con, sql)
    with limits(con, settings):
        _run_checked(con, query(con, sql), sql, fmt, output, explain)


def _run_checked(con, relation, sql: str, fmt: str, output: str | None, explain: bool) -> None:
    if explain:
        if len(con.extract_statements(sql)) != 1:
            raise UsageError("--explain takes one statement")
        relation = con.sql(f"EXPLAIN {sql}")
        print(relation.fetchall()[0][1])
        return
    if fmt == "table":
        print(relation)
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

            pacsv.write_csv(_csv_ready(table), out)
        else:
            import json

            for row in table.to_pylist():
                out.write((json.dumps(_json_ready(row), allow_nan=False) + "\n").encode())
        out.flush()
    finally:
        if output:
            out.close()


def _refuse_pivot_without_values(con, sql: str) -> None:
    """A read, but DuckDB runs `PIVOT t ON c` as CREATE TYPE (an enum of c's values) + SELECT, which
    the read-only lake refuses: say how to write it so that it is a plain SELECT."""
    import re

    import duckdb

    if not re.match(r"\s*PIVOT\b", sql, re.IGNORECASE):
        return
    try:
        kinds = [s.type.name for s in con.extract_statements(sql)]
    except duckdb.Error:
        return  # the parse error is reported by the query itself
    if kinds and kinds[0] == "CREATE":
        raise UsageError("PIVOT without an IN list needs a CREATE (DuckDB makes an enum of the values), which "
                         "the read-only lake refuses; name the values: PIVOT episodes ON task IN ('a', 'b') "
                         "USING count(*)")


def _json_ready(value):
    """Plain JSON: NaN and infinities are null, DECIMALs numbers, bytes (frames) base64, intervals
    and dates ISO-like text; lists, structs and maps recursively."""
    import base64
    import datetime
    import math
    from decimal import Decimal

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if type(value).__name__ == "MonthDayNano":  # pyarrow's interval: a tuple, but not a list
        return f"{value.months} months {value.days} days {value.nanoseconds} ns"
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _csv_ready(table):
    """CSV has no nested values: list, struct, map, interval and binary columns become JSON text."""
    import json

    import pyarrow as pa

    def plain(t) -> bool:
        return not (pa.types.is_nested(t) or pa.types.is_interval(t) or pa.types.is_binary(t)
                    or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))

    for i, field in enumerate(table.schema):
        if not plain(field.type):
            text = [None if v is None else json.dumps(_json_ready(v), allow_nan=False)
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def _shell(con, settings: Settings) -> int:
    import duckdb

    from infra.lake_sql import VIEWS, QueryLimitError, ReadOnlyError

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
            _run_one(con, settings, statement, "table", None, False)
        except (ReadOnlyError, QueryLimitError) as exc:
            print(f"error: {exc}")
        except duckdb.Error as exc:
            print(f"error: {one_line(_naming_the_file(con, exc))}")
