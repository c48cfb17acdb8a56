"""The lake's contract: table names, object names, Arrow schemas of what the sink writes.

Objects are named as the Kafka Connect S3 sink names them, by topic, partition and the offset
of their first record, under hive partitions of experiment and date:

    <root>/<table>/experiment_id=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<start:010d>.parquet

The same input always yields the same names, which is what makes the sink exactly-once.
`robolake compact` merges the files whose start offsets run from <first> to <last> into

    <topic>+<partition>+<first:010d>-<last:010d>.parquet

and readers skip any file whose range another file's range contains, so a compaction that
died before deleting its inputs still changes no query result.
"""

from __future__ import annotations

import re

import pyarrow as pa

from schemas.events import EPISODE_ENDED, EPISODE_STARTED, EPISODE_STEPS

EPISODE_STARTS, EPISODE_ENDS, STEPS, FRAMES, EVENTS = "episode_starts", "episode_ends", "steps", "frames", "events"
TABLES = (EPISODE_STARTS, EPISODE_ENDS, STEPS, FRAMES, EVENTS)
PARTITION_COLUMNS = ("experiment_id", "date")
NO_EXPERIMENT = "global"  # for events that belong to no experiment (skill.added)

# Where each row came from: enough to prove exactly-once and to replay in log order.
SOURCE_FIELDS = [
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
]


def _without(schema: pa.Schema, *names: str) -> list[pa.Field]:
    return [f for f in schema if f.name not in names]


SCHEMAS: dict[str, pa.Schema] = {
    EPISODE_STARTS: pa.schema(_without(EPISODE_STARTED.schema, "experiment_id") + SOURCE_FIELDS),
    EPISODE_ENDS: pa.schema(_without(EPISODE_ENDED.schema, "experiment_id") + SOURCE_FIELDS),
    STEPS: pa.schema(_without(EPISODE_STEPS.schema, "experiment_id", "frame") + SOURCE_FIELDS),
    FRAMES: pa.schema([pa.field("episode_id", pa.string(), nullable=False),
                       pa.field("step", pa.int32(), nullable=False),
                       pa.field("frame", pa.binary(), nullable=False)] + SOURCE_FIELDS),
    EVENTS: pa.schema([pa.field("type", pa.string(), nullable=False),
                       pa.field("version", pa.int32(), nullable=False),
                       pa.field("key", pa.string()),
                       pa.field("rows", pa.int32(), nullable=False),
                       pa.field("payload", pa.binary(), nullable=False),        # the Arrow IPC message, as sent
                       pa.field("payload_json", pa.string(), nullable=False)] + SOURCE_FIELDS),
}

_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<start>\d{10,})(?:-(?P<last>\d{10,}))?\.parquet$")


def file_name(topic: str, partition: int, start_offset: int, last_start: int | None = None) -> str:
    merged = f"-{last_start:010d}" if last_start is not None else ""
    return f"{topic}+{partition}+{start_offset:010d}{merged}.parquet"


def parse_file_name(name: str) -> tuple[str, int, int, int] | None:
    """(topic, partition, first start offset, last start offset) of a lake object's name (first ==
    last unless compacted), or None if it is not ours."""
    match = _NAME.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    start = int(match["start"])
    return match["topic"], int(match["partition"]), start, int(match["last"] or start)


def live_files(keys: list[str]) -> list[str]:
    """The keys a reader should see: those whose offset range no other file in the same
    directory, topic and partition contains (inputs of a compaction that did not finish)."""
    groups: dict[tuple, list[tuple[int, int, str]]] = {}
    for key in keys:
        parsed = parse_file_name(key)
        if parsed is not None:
            directory = key.rsplit("/", 1)[0]
            groups.setdefault((directory, parsed[0], parsed[1]), []).append((parsed[2], parsed[3], key))
    live = []
    for files in groups.values():
        merged = [(s, l) for s, l, _ in files if s != l]  # only compacted files can contain others
        for start, last, key in files:
            if not any(s <= start and last <= l and (s, l) != (start, last) for s, l in merged):
                live.append(key)
    return sorted(live)


def object_key(table: str, experiment_id: str, date: str, topic: str, partition: int, start_offset: int) -> str:
    return f"{table}/experiment_id={experiment_id}/date={date}/{file_name(topic, partition, start_offset)}"
