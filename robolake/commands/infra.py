"""`robolake infra up|down|status` and `robolake status`."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import Parser


def register(commands, common) -> None:
    status = commands.add_parser("status", parents=[common], help="settings in force and stack health",
                                 description="Print the settings in force and the health of the native stack.")
    status.set_defaults(run=run_status)

    infra = commands.add_parser("infra", help="run the native Kafka + MinIO stack",
                                description="Run the native Kafka (KRaft) + MinIO stack on loopback.")
    actions = infra.add_subparsers(dest="infra_command", metavar="ACTION", required=True,
                                   parser_class=Parser)
    for name, doc in (("up", "install on first use, start Kafka (KRaft) and MinIO, create topics and bucket"),
                      ("down", "stop the processes 'infra up' started, and nothing else"),
                      ("status", "health of each service (exit 1 unless all are healthy)")):
        sub = actions.add_parser(name, parents=[common], help=doc, description=doc)
        sub.set_defaults(run=run_infra, action=name)


def run_status(args, settings: Settings) -> int:
    from infra import stack
    from schemas.version import VERSION

    print(f"robolake {VERSION}")
    print(f"bus   {settings.bus}")
    print(f"lake  {settings.lake}  ->  {settings.lake_root}")
    print(f"home  {settings.home}")
    for line in stack.status(settings):
        print(line.line())
    return 0


def run_infra(args, settings: Settings) -> int:
    from infra import stack
    from infra.process import ServiceError

    try:
        if args.action == "up":
            for line in stack.up(settings):
                print(line.line())
            print(f"use it with: --bus kafka://127.0.0.1:{settings.kafka_port} --lake s3://robolake/lake "
                  f"--s3-endpoint {settings.s3_endpoint}")
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
