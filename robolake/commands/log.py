"""The event log from the command line: `tail`, `dlq`."""

from __future__ import annotations

import sys

from robolake.commands import positive_int, usage_error
from robolake.settings import Settings


def register(commands, common) -> None:
    tail = commands.add_parser("tail", parents=[common], help="print a topic as a readable conversation",
                               description="Print a topic's events, oldest first, one readable line each.")
    tail.add_argument("topic", help="topic name, with or without the 'robolake.' prefix (e.g. episodes)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep waiting for new events")
    tail.add_argument("--limit", type=positive_int, help="stop after this many events")
    tail.set_defaults(run=run_tail)

    dlq = commands.add_parser("dlq", parents=[common], help="list dead letters and why they died",
                              description="List the dead-letter topic: reason, source topic/partition/offset, detail.")
    dlq.add_argument("--follow", "-f", action="store_true", help="keep waiting for new dead letters")
    dlq.set_defaults(run=run_dlq, topic="robolake.dlq", limit=None)


def resolve_topic(name: str) -> str | None:
    from schemas import topics

    for candidate in (name, f"robolake.{name}"):
        if candidate in topics.ALL:
            return candidate
    return None


def run_tail(args, settings: Settings) -> int:
    from consumers.conversation import describe, describe_dead_letter
    from infra.bus import BusError, open_bus
    from schemas import topics

    topic = resolve_topic(args.topic)
    if topic is None:
        known = ", ".join(t.removeprefix("robolake.") for t in topics.ALL)
        return usage_error(args.command, f"unknown topic {args.topic!r}; known: {known}")
    try:
        reader = open_bus(settings).consumer(None, [topic])
    except BusError as exc:
        print(f"robolake {args.command}: {exc}", file=sys.stderr)
        return 1
    shown = 0
    try:
        while args.limit is None or shown < args.limit:
            if topic == topics.DLQ:
                lines = [describe_dead_letter(m) for m in reader.poll_raw(1.0)]
            else:
                lines = [describe(d) for d in reader.poll(1.0)]
            for line in lines[: None if args.limit is None else args.limit - shown]:
                print(line, flush=True)
                shown += 1
            if not lines and not args.follow:
                break
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    if reader.skipped:
        print(f"({reader.skipped} undecodable messages skipped; a consumer group dead-letters them "
              f"to {topics.DLQ}, see 'robolake dlq')", file=sys.stderr)
    return 0


run_dlq = run_tail
