"""What the command groups share (each group, one module beside this one, has `register(commands, common)`).

A command reports an expected failure by raising: `UsageError` (exit 2), `CommandFailed` (exit 1),
or any of the library's own errors; `robolake.cli.main` turns each into one line on stderr
(see `robolake.failures.failure`), so no command catches errors for printing's sake.
"""

from __future__ import annotations

import argparse
import math
import re
from contextlib import contextmanager

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(ValueError):
    """The command line asks for something that cannot be done: exit 2."""


class CommandFailed(RuntimeError):
    """The command could not do its work (the message says why): exit 1."""


class HelpFormatter(argparse.HelpFormatter):
    """One style for every command: '(default X)' after each option that has a default (unless
    its help already says it), and epilog lines that start with spaces kept as written (examples)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" not in text and "%(default)" not in text and default not in (None, False, True, [])
                and default is not argparse.SUPPRESS and action.option_strings):
            text += " (default %(default)s)"
        return text

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for block in text.split("\n\n"):
            if block.startswith("  "):
                paragraphs.append(block)
            else:
                paragraphs.append(super()._fill_text(block, width, indent))
        return "\n\n".join(paragraphs)


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, exit code 2 (not a usage dump)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def settings_flags(catalog: bool = True) -> argparse.ArgumentParser:
    """The settings flags every command takes (a parent parser); `catalog=False` for a command whose
    own --catalog means something else (robolake migrate)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (also from ROBOLAKE_<NAME> environment variables)")
    group.add_argument("--bus", metavar="URL", help="'memory' (default) or kafka://host:port[,host:port]")
    group.add_argument("--lake", metavar="URL", help="file://<dir> (default file://lake) or s3://<bucket>/<prefix>")
    if catalog:
        group.add_argument("--catalog", metavar="URL",
                           help="the lake's catalog: sqlite:<file> (default <lake>/catalog.sqlite) or "
                                "postgresql://user@host:port/database (writers on many machines)")
    group.add_argument("--home", metavar="DIR", help="cache and stack state directory (default ~/.cache/robolake)")
    group.add_argument("--s3-endpoint", metavar="HOST:PORT", help="S3/MinIO endpoint (default 127.0.0.1:9000)")
    group.add_argument("--partitions", type=int, metavar="N", help="partitions per topic (default 4)")
    group.add_argument("--kafka-connect-timeout", type=float, metavar="SECONDS",
                       help="how long to wait for an unreachable Kafka (default 15; refused connections fail at once)")
    group.add_argument("--threads", type=positive_int, metavar="N", dest="torch_threads",
                       help="torch threads (training, evaluation, captions; default 1: fastest beside other work on few cores)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="-v: progress logs (INFO), -vv: debug logs, also the Kafka client's")
    return common


def load_settings(args):
    """The settings in force: defaults, then ROBOLAKE_* variables, then the flags given."""
    from infra.settings import Settings

    return Settings.load(bus=args.bus, lake=args.lake, catalog=getattr(args, "catalog", None),
                         home=args.home, s3_endpoint=args.s3_endpoint,
                         partitions=args.partitions, kafka_connect_timeout=args.kafka_connect_timeout,
                         torch_threads=args.torch_threads,
                         # a command's own settings flags (robolake sql --timeout, --memory-limit)
                         sql_timeout_s=getattr(args, "sql_timeout_s", None),
                         sql_memory_limit=getattr(args, "sql_memory_limit", None))


def usage_error(command: str, message: str) -> int:
    import sys

    print(f"robolake {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def nonnegative_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2^32-1, got {text!r}")
    return int(text)


def frame_size(text: str) -> int:
    from producers.rollout import FRAME_SIZES

    if not (text.isascii() and text.isdigit()) or int(text) not in FRAME_SIZES:
        raise argparse.ArgumentTypeError(f"expected {FRAME_SIZES.start} to {FRAME_SIZES[-1]} (px), got {text!r}")
    return int(text)


def identifier(text: str) -> str:
    """An experiment or run id: it names lake partitions and checkpoint folders."""
    from schemas.codec import EXPERIMENT_ID_PATTERN

    if not re.fullmatch(EXPERIMENT_ID_PATTERN, text):
        raise argparse.ArgumentTypeError(f"expected ASCII letters, digits, '.', '_' or '-' (at most 128, not "
                                         f"starting with '.', '_' or '-'), got {text!r}")
    return text


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def check_lake_writable(settings) -> None:
    """Before any work: the lake's directory and its catalog's can be created and written
    (CommandFailed naming the path if not). Touches nothing: a probe file is made and removed
    in the nearest directory that exists. A lake on S3 is checked by its first write."""
    from pathlib import Path

    from infra.lake_catalog import catalog

    local = catalog(settings).local_dir  # a catalog on a server is checked by its first write
    paths = [local] if local is not None else []
    if not settings.lake_is_s3:
        paths.insert(0, Path(settings.lake_root))
    for path in paths:
        reason = unwritable(path)
        if reason:
            raise CommandFailed(f"the lake at {settings.lake_root} cannot be opened for writing: {reason}")


def unwritable(path) -> str | None:
    """Why files cannot be created at `path` (the nearest directory that exists is probed, nothing
    left behind), or None."""
    import tempfile

    existing = path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        return f"cannot create files in {existing} ({exc.strerror or exc})"
    return None


def check_bus_reachable(settings) -> None:
    """Before any work: a Kafka bus where nothing listens fails now, with the client's own message
    (one line, no half-done work). Anything but a refused connection is left to the client's wait."""
    if settings.bus == "memory":
        return
    from infra.bus.interface import BusError
    from infra.bus.kafka import _all_refuse

    if _all_refuse(settings.kafka_bootstrap):
        raise BusError(f"cannot reach Kafka at {','.join(settings.kafka_bootstrap)}: connection refused "
                       "(nothing listens there; `robolake infra up` starts a broker)")


def one_line(text: str) -> str:
    """The first paragraph of a (possibly multi-line) error message, on one line."""
    first = re.split(r"\n\s*\n|\nLINE \d+:", str(text).strip(), maxsplit=1)[0]
    return " ".join(part.strip() for part in first.splitlines() if part.strip())


def inside_lake(path, settings) -> bool:
    """Whether `path` is inside the lake or beside its catalog, where a read-only command writes nothing."""
    from pathlib import Path

    from infra.lake_catalog import catalog

    local = catalog(settings).local_dir
    guarded = [local.resolve()] if local is not None else []
    if not settings.lake_is_s3:
        guarded.append(Path(settings.lake_root).resolve())
    return any(Path(path).resolve().is_relative_to(g) for g in guarded)


@contextmanager
def interrupt_deferred():
    """Ctrl-C inside the block is remembered (the event is set) instead of raised."""
    import signal
    import threading

    hit = threading.Event()
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: hit.set())
    except ValueError:  # not the main thread: nothing to defer
        yield hit
        return
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, previous)
