"""A run config file (`robolake run --config FILE`) and the Python API's keywords: a command's flags as
keys, dashes as underscores (`train_steps = 200`, `skills = ["reach_red"]`, `keep_going = true`).

The keys and their types come from the command's own parser, so every flag has one and no list can
drift from it. A file's keys become flags placed before the command line's, so a flag given there
wins. A key the command lacks, or a value of the wrong type or range, is one UsageError naming the
key and where it came from.
"""

from __future__ import annotations

import argparse
import difflib
import math
from pathlib import Path

from robolake.commands.common import (UsageError, frame_size, nonnegative_float, nonnegative_int, positive_int,
                                      positive_seconds)

INTEGERS = (int, positive_int, nonnegative_int, frame_size)
NUMBERS = (float, nonnegative_float, positive_seconds)
NOT_KEYS = ("help", "config_file")  # a config file does not name another


def keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options by key (their dest)."""
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest not in NOT_KEYS}


def read(path: str | Path) -> dict:
    """A TOML file's table (UsageError if it cannot be read or is not TOML)."""
    import tomllib

    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        renamed = " (the learner's size is --model now)" if str(path) in ("tiny", "small", "base") else ""
        raise UsageError(f"config file {path}: {exc.strerror or exc}{renamed}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not valid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None


def as_flags(values: dict, parser: argparse.ArgumentParser, source: str) -> list[str]:
    """The flags that say what `values` say (checked against the parser's options; `source` names
    where they came from in an error)."""
    options = keys(parser)
    flags = []
    for key, value in values.items():
        action = options.get(key)
        if action is None:
            close = difflib.get_close_matches(str(key), options, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the keys are: " + ", ".join(sorted(options))
            raise UsageError(f"{source}: unknown key {key!r} ({hint})")
        flags += _flags(action, _checked(key, value, action, source))
    return flags


def _checked(key: str, value, action: argparse.Action, source: str):
    kind = _kind(action)
    names = {bool: "true or false", int: "an integer" + (" >= 0" if action.nargs == 0 else ""), float: "a number",
             str: "a string", list: "a list of strings"}
    fits = {bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
            list: isinstance(value, list) and value != [] and all(isinstance(v, str) for v in value)}[kind]
    if not fits or (kind is float and not math.isfinite(value)) or (action.nargs == 0 and kind is int and value < 0):
        raise UsageError(f"{source}: {key} must be {names[kind]}, got {value!r}")
    for item in value if kind is list else [value]:
        if action.type is not None and kind is not bool:
            try:
                action.type(str(item))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise UsageError(f"{source}: {key}: {exc}") from None
        if action.choices is not None and item not in action.choices:
            raise UsageError(f"{source}: {key} must be one of {', '.join(map(str, action.choices))}, got {item!r}")
    return value


def _kind(action: argparse.Action) -> type:
    if isinstance(action, argparse.BooleanOptionalAction):  # --keep-going / --no-keep-going
        return bool
    if action.nargs == 0:  # store_true, or a count (-v -v)
        return bool if action.const is True else int
    if action.nargs in ("+", "*"):
        return list
    return int if action.type in INTEGERS else float if action.type in NUMBERS else str


def _flags(action: argparse.Action, value) -> list[str]:
    if isinstance(action, argparse.BooleanOptionalAction):  # false, too, says so: it wins over a file's true
        return [next(f for f in action.option_strings if f.startswith("--no-") != bool(value))]
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return [flag] * int(value)  # true: once; a count: that many times
    if isinstance(value, list):
        return [flag, *value]
    return [f"{flag}={value}"]  # one token: a value may start with '-'


def with_file(argv: list[str], path: str, parser: argparse.ArgumentParser) -> list[str]:
    """argv with the file's flags right after the command (argv's first word), so argv's own win."""
    at = next(i for i, word in enumerate(argv) if not word.startswith("-")) + 1
    return [*argv[:at], *as_flags(read(path), parser, str(path)), *argv[at:]]
