"""`robolake infra up|down|status` and `robolake status`."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import Parser


def register(commands, common) -> None:
    status = commands.add_parser("status", parents=[common], help="settings in force and stack health",
                                 description="Print the settings in force and the health of the native stack.")
    status.set_defaults(run=run_status)

    infra = commands.add_parser("infra", help="run the native Kafka + MinIO (+ PostgreSQL) stack",
                                description="Run the native Kafka (KRaft) + MinIO stack on loopback, and a "
                                            "PostgreSQL for the lake's catalog when ROBOLAKE_POSTGRES_PORT is set or "
                                            "the catalog (--catalog, ROBOLAKE_CATALOG) is a postgresql:// URL on "
                                            "this machine (Debian's postgresql package).")
    actions = infra.add_subparsers(dest="infra_command", metavar="ACTION", required=True,
                                   parser_class=Parser)
    for name, doc in (("up", "install on first use, start Kafka (KRaft) and MinIO (and PostgreSQL), create topics, "
                             "bucket (and the catalog's database)"),
                      ("down", "stop the processes 'infra up' started, and nothing else"),
                      ("status", "health of each service (exit 1 unless all are healthy)")):
        sub = actions.add_parser(name, parents=[common], help=doc, description=doc)
        sub.set_defaults(run=run_infra, action=name)


def run_status(args, settings: Settings) -> int:
    from infra import stack
    from infra.lake_catalog import catalog
    from schemas.version import VERSION

    print(f"robolake {VERSION}")
    print(f"bus   {settings.bus}")
    print(f"lake  {settings.lake}  ->  {settings.lake_root}")
    print(f"catalog {catalog(settings)}")
    print(f"home  {settings.home}")
    print(f"threads {settings.torch_threads} (torch: training, evaluation, captions)")
    for line in stack.status(settings):
        print(line.line())
    _print_health(settings)
    return 0


def _print_health(settings: Settings) -> None:
    """The sink's lag per partition, the live workers, the learners: what a person watching a long
    run asks first. A part that cannot be read (no lake yet, the bus down) says why in its line."""
    from consumers.lake_sink.sink import SOURCE_TOPICS
    from infra.bus.backend import open_bus
    from infra.lake_catalog import LakeNotFound
    from infra.lake_sql import open_lake
    from robolake.report import health

    try:
        con = open_lake(settings)
    except LakeNotFound as exc:
        print(f"lake    {exc}")
        return
    try:
        if settings.bus == "memory":
            print("sink    the in-process bus lives inside one command: no lag to measure from here")
        else:
            try:
                lag = health.sink_lag(open_bus(settings), con, SOURCE_TOPICS)
            except Exception as exc:  # the bus down: the lake's part below still answers
                print(f"sink    lag unknown: {str(exc).splitlines()[0]}")
            else:
                behind = [r for r in lag if r["lag"]]
                print(f"sink    {sum(r['lag'] for r in lag)} messages behind the log on {len(behind)} of {len(lag)} "
                      "partitions" + "".join(f"\n         {r['topic']}/{r['partition']}: {r['lag']} "
                                             f"(log end {r['end']}, lake at {r['lake']})" for r in behind))
        seen = health.workers(con)
        live = [w for w in seen if w["live"]]
        print(f"workers {len(live)} live (an episode started in the last {health.LIVE_S} s), {len(seen)} seen"
              + "".join(f"\n         {w['worker']}: {w['episodes']} episodes, last started {_ago(w['last'])}"
                        for w in seen[:8]))
        runs = health.learners(con)
        print(f"learner {len(runs)} run{'s' * (len(runs) != 1)}" + "".join(
            f"\n         {r['run']} ({r['experiment']}): step {r['step']}, last metrics {_ago(r['last'])}"
            for r in runs[:5]))
    finally:
        con.close()


def _ago(when) -> str:
    from datetime import datetime, timezone

    seconds = (datetime.now(timezone.utc) - when).total_seconds()
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({seconds / 60:.0f} min ago)" if seconds >= 60 else \
        f"{when:%Y-%m-%d %H:%M:%S} UTC ({seconds:.0f} s ago)"


def run_infra(args, settings: Settings) -> int:
    from infra import stack
    from infra.process import ServiceError

    try:
        if args.action == "up":
            for line in stack.up(settings):
                print(line.line())
            served = stack.stack_catalog(settings)
            catalog = f" --catalog {served}" if served is not None else ""  # never its password
            print(f"use it with: --bus kafka://127.0.0.1:{settings.kafka_port} --lake s3://robolake/lake "
                  f"--s3-endpoint {settings.s3_endpoint}{catalog}")
        elif args.action == "down":
            stopped = stack.down(settings)
            print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
        else:
            lines = stack.status(settings)
            for line in lines:
                print(line.line())
            return 0 if all(line.healthy for line in lines) else 1
    except ServiceError as exc:
        print(f"robolake infra {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
