"""The `robolake` command line: parses arguments and settings, then hands off to one role.

Every command takes the shared settings flags (--bus, --lake, …; each also read from ROBOLAKE_*).
Bad arguments print one line naming the problem and exit 2; heavy modules are imported only
by the command that needs them, so `robolake --help` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys

from robolake import __version__
from robolake.settings import Settings, SettingsError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not a usage dump
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _settings_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (also from ROBOLAKE_<NAME> environment variables)")
    group.add_argument("--bus", help="'memory' (default) or kafka://host:port[,host:port]")
    group.add_argument("--lake", help="file://<dir> (default file://lake) or s3://<bucket>/<prefix>")
    group.add_argument("--home", help="cache and stack state directory (default ~/.cache/robolake)")
    group.add_argument("--s3-endpoint", help="S3/MinIO endpoint host:port (default 127.0.0.1:9000)")
    group.add_argument("--partitions", type=int, help="partitions per topic (default 4)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _settings_flags()
    parser = _Parser(prog="robolake", description=__doc__.split("\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"robolake {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    status = commands.add_parser("status", parents=[common], help="settings in force and stack health")
    status.set_defaults(run=_status)

    infra = commands.add_parser("infra", help="run the native Kafka + MinIO stack")
    infra_commands = infra.add_subparsers(dest="infra_command", metavar="ACTION", required=True,
                                          parser_class=_Parser)
    for name, doc in (("up", "install on first use, start Kafka (KRaft) and MinIO, create topics and bucket"),
                      ("down", "stop the processes 'infra up' started, and nothing else"),
                      ("status", "health of each service")):
        sub = infra_commands.add_parser(name, parents=[common], help=doc, description=doc)
        sub.set_defaults(run=_infra, action=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # kafka-python narrates every connection attempt at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        settings = Settings.load(bus=args.bus, lake=args.lake, home=args.home,
                                 s3_endpoint=args.s3_endpoint, partitions=args.partitions)
    except SettingsError as exc:
        print(f"robolake: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return args.run(args, settings) or 0


def _status(args, settings: Settings) -> int:
    print(f"robolake {__version__}")
    print(f"bus   {settings.bus}")
    print(f"lake  {settings.lake}  ->  {settings.lake_root}")
    print(f"home  {settings.home}")
    from infra import stack

    for line in stack.status(settings):
        print(line.line())
    return 0


def _infra(args, settings: Settings) -> int:
    from infra import stack
    from infra.process import ServiceError

    try:
        if args.action == "up":
            for line in stack.up(settings):
                print(line.line())
            print(f"use it with: --bus kafka://127.0.0.1:{settings.kafka_port} --lake s3://robolake/lake")
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


if __name__ == "__main__":
    sys.exit(main())
