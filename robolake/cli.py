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
from robolake.commands import EXIT_USAGE, Parser
from robolake.settings import Settings, SettingsError

DESCRIPTION = ("robolake: an automated RL experimenter for robot manipulation, built as an "
               "event-sourced data lake.")


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
    from robolake.commands import demo, infra, lake, log, relabel, rollout

    common = _settings_flags()
    parser = Parser(prog="robolake", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"robolake {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in (demo, infra, rollout, log, lake, relabel):
        group.register(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # kafka-python narrates every connection attempt; PyOpenGL its imports
        for chatty in ("kafka", "OpenGL"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        settings = Settings.load(bus=args.bus, lake=args.lake, home=args.home,
                                 s3_endpoint=args.s3_endpoint, partitions=args.partitions)
    except SettingsError as exc:
        print(f"robolake: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from infra.optional import MissingExtra

    try:
        return args.run(args, settings) or 0
    except MissingExtra as exc:
        print(f"robolake {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
