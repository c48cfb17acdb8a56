"""The event log from the command line: `tail`, `dlq`."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import UsageError, identifier, positive_int


def register(commands, common) -> None:
    tail = commands.add_parser("tail", parents=[common],
                               help="print a topic (or all: one experiment's whole conversation) as readable lines",
                               description="Print a topic's events, oldest first, one readable line each.")
    tail.add_argument("topic", help="topic name, with or without the 'robolake.' prefix (e.g. episodes), any other "
                                    "topic the bus has (e.g. one `replay --to-topic` filled), or 'all': one "
                                    "experiment's whole conversation, in time order, from the lake")
    tail.add_argument("--experiment", type=identifier, metavar="ID", help="with 'all': the experiment to follow")
    tail.add_argument("--follow", "-f", action="store_true", help="keep waiting for new events")
    tail.add_argument("--limit", type=positive_int, metavar="N", help="stop after this many events")
    tail.set_defaults(run=run_tail)

    dlq = commands.add_parser("dlq", parents=[common], help="list dead letters and why they died",
                              description="List the dead-letter topic: reason, source topic/partition/offset, detail.")
    dlq.add_argument("--follow", "-f", action="store_true", help="keep waiting for new dead letters")
    dlq.add_argument("--limit", type=positive_int, metavar="N", help="stop after this many dead letters")
    dlq.set_defaults(run=run_dlq, topic="robolake.dlq")


def resolve_topic(name: str) -> str | None:
    from schemas import topics

    for candidate in (name, f"robolake.{name}"):
        if candidate in topics.ALL:
            return candidate
    return None


def topic_or_usage_error(name: str, any_full_name: bool = False, bus_has_others: bool = False) -> str:
    """A robolake topic by its full or short name (`episodes`); UsageError listing them if unknown.
    With `any_full_name`, a dotted name that is not ours is taken as a topic of the user's own."""
    from schemas import topics

    topic = resolve_topic(name)
    if topic is None and any_full_name and "." in name:
        return name
    if topic is None:
        known = ", ".join(t.removeprefix("robolake.") for t in topics.ALL)
        raise UsageError(f"unknown topic {name!r}; known: {known}" + (", or any topic the bus has" if bus_has_others else ""))
    return topic


def warn_in_process(settings: Settings, what: str) -> None:
    """The in-process bus lives and dies with one command: say so where a user would expect what
    was sent (or read) to be shared with other commands."""
    if settings.bus == "memory":
        print(f"note: {what}: the in-process bus (--bus memory) lives only as long as this command; "
              "use --bus kafka://HOST:PORT for a log other commands share (`robolake demo` runs the "
              "whole loop in one process)", file=sys.stderr)


def run_tail(args, settings: Settings) -> int:
    from consumers.conversation import describe, describe_dead_letter
    from infra.bus.backend import open_bus
    from schemas import topics

    if args.topic == "all":
        from robolake.commands.report import run_tail_all

        return run_tail_all(args, settings)
    if getattr(args, "experiment", None):
        raise UsageError("--experiment goes with 'tail all' (a topic is shown whole)")
    if settings.bus == "memory" and args.follow:
        raise UsageError("--follow on the in-process bus would wait forever: nothing else writes to it; "
                         "use --bus kafka://HOST:PORT")
    bus = open_bus(settings)
    topic = resolve_topic(args.topic)
    if topic is None and args.topic.strip() and bus.log_end_offsets([args.topic]):
        topic = args.topic  # a topic of the user's own, e.g. one `robolake replay --to-topic` filled
    topic = topic or topic_or_usage_error(args.topic, bus_has_others=True)
    warn_in_process(settings, f"{topic} starts empty here")
    reader = bus.consumer(None, [topic])
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
    if not shown:  # on stderr: stdout stays the events alone, for pipes
        print(f"{'no dead letters' if topic == topics.DLQ else 'no events'}: {topic} is empty", file=sys.stderr)
    if reader.skipped:
        print(f"({reader.skipped} undecodable messages skipped; a consumer group dead-letters them "
              f"to {topics.DLQ}, see 'robolake dlq')", file=sys.stderr)
    return 0


run_dlq = run_tail
