"""One module per command group; each has `register(commands, common)` adding its subcommands."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, exit code 2 (not a usage dump)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def usage_error(command: str, message: str) -> int:
    import sys

    print(f"robolake {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)
