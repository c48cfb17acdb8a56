"""The lake's contract: table names, object names, Arrow schemas of what the sink writes.

Objects are named as the Kafka Connect S3 sink names them, by topic, partition and the offset
of their first record, under hive partitions of experiment and date:

    <root>/<table>/experiment_id=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<start:010d>.parquet

The same input always yields the same names, which is what makes the sink exactly-once.
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

_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<start>\d{10,})\.parquet$")


def file_name(topic: str, partition: int, start_offset: int) -> str:
    return f"{topic}+{partition}+{start_offset:010d}.parquet"


def parse_file_name(name: str) -> tuple[str, int, int] | None:
    """(topic, partition, start offset) of a lake object's base name, or None if it is not ours."""
    match = _NAME.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return match["topic"], int(match["partition"]), int(match["start"])


def object_key(table: str, experiment_id: str, date: str, topic: str, partition: int, start_offset: int) -> str:
    return f"{table}/experiment_id={experiment_id}/date={date}/{file_name(topic, partition, start_offset)}"
