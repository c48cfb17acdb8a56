"""The lake's contract: table names and the Arrow schemas of what the sink writes.

The lake is a set of tables in an open table format (DuckLake: Parquet data files plus a catalog
of snapshots, see infra/lake_catalog.py). Every row says where it came from (`_log`, `_topic`,
`_partition`, `_offset`): `_log` names one incarnation of a topic (a Kafka topic id, or one
in-process bus), so offsets that restart — a recreated topic, a second embedded process — never
collide. The catalog's `lake_offsets` table holds, per (log, topic, partition), the next offset
to write, and is updated in the same transaction as the rows: the lake, not Kafka, says how
far it has read.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.events import EPISODE_ENDED, EPISODE_STARTED, EPISODE_STARTED_V2, EPISODE_STEPS

EPISODE_STARTS, EPISODE_ENDS, STEPS, CHUNKS, FRAMES, EVENTS = (
    "episode_starts", "episode_ends", "steps", "chunks", "frames", "events")
# Commit order within one transaction does not matter (it is atomic); listed in data-flow order.
REWARDS = "rewards"  # derived by `robolake relabel` from steps (not from the log)
STATUS = "episode_status"  # derived at each commit from starts, ends and chunks (infra/episode_status.py)
TABLES = (EPISODE_STARTS, STEPS, CHUNKS, FRAMES, EPISODE_ENDS, EVENTS, REWARDS, STATUS)
OFFSETS = "lake_offsets"
NO_EXPERIMENT = "global"  # for events that belong to no experiment (skill.added)

# Where each row came from: enough to prove exactly-once and to replay in log order.
SOURCE_FIELDS = [
    pa.field("_log", pa.string(), nullable=False),
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
]
SOURCE_COLUMNS = [f.name for f in SOURCE_FIELDS]


def _without(schema: pa.Schema, *names: str) -> list[pa.Field]:
    return [f for f in schema if f.name not in names]


_EXPERIMENT = pa.field("experiment_id", pa.string(), nullable=False)

SCHEMAS: dict[str, pa.Schema] = {
    # Columns added later go last: a table made before them gets them appended (infra/lake_catalog.py).
    EPISODE_STARTS: pa.schema(list(EPISODE_STARTED.schema) + SOURCE_FIELDS
                              + [EPISODE_STARTED_V2.schema.field("initial_observation")]),
    EPISODE_ENDS: pa.schema(list(EPISODE_ENDED.schema) + SOURCE_FIELDS),
    STEPS: pa.schema(_without(EPISODE_STEPS.schema, "frame") + SOURCE_FIELDS),
    # One row per steps message: what arrived, so views can prove an episode complete
    # (count, order and content of its chunks against its episode.ended) without reading steps.
    CHUNKS: pa.schema([pa.field("episode_id", pa.string(), nullable=False), _EXPERIMENT,
                       pa.field("chunk", pa.int32(), nullable=False),
                       pa.field("rows", pa.int32(), nullable=False),
                       pa.field("digest", pa.string(), nullable=False)] + SOURCE_FIELDS),
    FRAMES: pa.schema([pa.field("episode_id", pa.string(), nullable=False), _EXPERIMENT,
                       pa.field("step", pa.int32(), nullable=False),
                       pa.field("frame", pa.binary(), nullable=False)] + SOURCE_FIELDS),
    EVENTS: pa.schema([_EXPERIMENT,
                       pa.field("type", pa.string(), nullable=False),
                       pa.field("version", pa.int32(), nullable=False),
                       pa.field("key", pa.string()),
                       pa.field("rows", pa.int32(), nullable=False),
                       pa.field("payload", pa.binary(), nullable=False),        # the Arrow IPC message, as sent
                       pa.field("payload_json", pa.string(), nullable=False)] + SOURCE_FIELDS),
}
# One row per (dataset, step, reward function version): what that function says of the step's observation.
SCHEMAS[REWARDS] = pa.schema([pa.field("dataset", pa.string(), nullable=False),
                              pa.field("episode_id", pa.string(), nullable=False), _EXPERIMENT,
                              pa.field("step", pa.int32(), nullable=False),
                              pa.field("reward_fn", pa.string(), nullable=False),
                              pa.field("reward_version", pa.int32(), nullable=False),
                              pa.field("source_hash", pa.string(), nullable=False),
                              pa.field("success", pa.bool_(), nullable=False),
                              pa.field("reward", pa.float32(), nullable=False),
                              # the relabel run that wrote the row (its relabel.completed event); null in rows
                              # written before the column existed
                              pa.field("relabel_id", pa.string())])
# One row per episode id seen: whether it is complete (problem NULL) or why not, kept by every commit
# that adds rows of the episode, so views join a row instead of aggregating every chunk per query.
SCHEMAS[STATUS] = pa.schema([pa.field("episode_id", pa.string(), nullable=False), _EXPERIMENT,
                             pa.field("problem", pa.string()),
                             pa.field("decision_id", pa.string()), pa.field("seed", pa.int64()),
                             pa.field("ended_at", pa.timestamp("us", tz="UTC"))])
# Data files are partitioned by experiment, so a query about one experiment reads only its files.
PARTITION_COLUMN = "experiment_id"
# Rows are written sorted by these, so row-group statistics prune point lookups of an episode.
SORT_KEYS = {EPISODE_STARTS: ["episode_id"], EPISODE_ENDS: ["episode_id"], STEPS: ["episode_id", "step"],
             CHUNKS: ["episode_id", "chunk"], FRAMES: ["episode_id", "step"], EVENTS: ["_log", "_topic", "_partition", "_offset"]}
SORT_KEYS[REWARDS] = ["dataset", "reward_fn", "reward_version", "episode_id", "step"]
