"""The `robolake` command line: parses arguments and settings, then hands off to one role.

Every command takes the shared settings flags (--bus, --lake, …; each also read from ROBOLAKE_*).
Every expected failure is turned into one line on stderr here, in one place (robolake/failures.py):
exit 2 for bad usage, 1 for a failure, 130 when interrupted (Ctrl-C); a reader that stops reading
(`robolake sql … | head -1`) ends the command quietly. Heavy modules are imported only by the
command that needs them, so `robolake --help` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from robolake.commands.common import Parser, load_settings, settings_flags
from robolake.failures import EXIT_BROKEN_PIPE, failure
from schemas.version import VERSION

DESCRIPTION = ("robolake: an automated RL experimenter for robot manipulation, built as an "
               "event-sourced data lake.")


def build_parser() -> argparse.ArgumentParser:
    from robolake.commands import (analysis, curriculum, demo, evaluate, export, infra, lake, log, migrate, relabel,
                                   report, rollout, run, summaries, train)

    common = settings_flags()
    parser = Parser(prog="robolake", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"robolake {VERSION}")
    parser.add_argument("-v", "--verbose", dest="top_verbose", action="count", default=0,
                        help="as after the command: -v progress logs, -vv debug logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in (demo, run, infra, rollout, log, lake, migrate, export, relabel, train, evaluate, summaries, curriculum,
                  analysis, report):
        group.register(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    command = " ".join(["robolake", args.command] + ([args.infra_command] if getattr(args, "infra_command", None) else []))
    try:
        if getattr(args, "config_file", None):  # robolake run --config FILE: the file's flags, then the given ones
            from robolake.commands import run, run_config

            args = parser.parse_args(run_config.with_file(sys.argv[1:] if argv is None else argv, args.config_file,
                                                          run.parser()))
        _log(args.verbose + args.top_verbose)
        settings = load_settings(args)
        _torch_threads(settings.torch_threads)
        return args.run(args, settings) or 0
    except (Exception, KeyboardInterrupt) as exc:
        known = failure(exc)
        if known is None:
            raise
        code, message = known
        if code == EXIT_BROKEN_PIPE:  # nobody reads our output any more: stop quietly
            _silence_stdout()
        elif message:
            print(f"{command}: {message}", file=sys.stderr)
        return code


def _log(verbosity: int) -> None:
    logging.basicConfig(level=(logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbosity < 2:  # kafka-python narrates every connection attempt (its failures reach us as BusError)
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        logging.getLogger("OpenGL").setLevel(logging.WARNING)


def _torch_threads(count: int) -> None:
    """The command's torch threads, for every part that uses torch (training, evaluation, the caption
    encoder): set before torch loads (OpenMP reads it once), or on torch if it has."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)


def _silence_stdout() -> None:
    """After a broken pipe, the interpreter's last flush of stdout must not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
