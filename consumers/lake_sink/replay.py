"""Replay: rebuild a lake from the log, or re-stream historic episodes onto a topic.

The lake keeps everything needed to rebuild the messages it came from: episode rows carry all
their event fields plus their source topic, partition, offset and timestamp, and other events
are kept as their original Arrow payload. So `lake_deliveries` turns lake rows back into the
messages they were, in log order, and both replays are built on it:

- to a new lake: messages still retained on the bus are sunk from the bus; older ones (gone from
  Kafka by retention, or from a finished in-process run) are rebuilt from the source lake.
  Both land under the same offset-based names, so the new lake answers every query alike.
- to a topic: the messages of the episodes matching a predicate, re-sent in their original order.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from consumers.lake_sink.sink import SOURCE_TOPICS, LakeSink
from consumers.lake_sink.writer import LakeWriter
from infra.bus import Bus, Delivery
from infra.lake_sql import check_read_only, open_lake
from infra.lake_store import open_store
from robolake.settings import Settings
from schemas.codec import HEADER_TYPE, HEADER_VERSION, build, decode
from schemas.events import EPISODE_ENDED, EPISODE_STARTED, EPISODE_STEPS

log = logging.getLogger(__name__)

_EPISODE_VIEWS = {"episode_starts": EPISODE_STARTED, "episode_ends": EPISODE_ENDED}
_STEPS_WITH_FRAMES = """
    SELECT s.*, f.frame FROM steps_all s
    LEFT JOIN frames_all f USING (_topic, _partition, _offset, episode_id, step)"""


@dataclass
class ReplayStats:
    from_lake: int = 0      # messages rebuilt from the source lake
    from_bus: int = 0       # messages sunk from the retained log
    episodes: int = 0


def lake_deliveries(settings: Settings, where: str = "TRUE", episodes: str | None = None) -> Iterator[Delivery]:
    """The messages the lake was built from, in log order. `where` filters on the source columns
    (_topic, _partition, _offset); `episodes` is a predicate on the `episodes` view."""
    con = open_lake(settings)
    if episodes is not None:
        check_read_only(con, f"SELECT episode_id FROM episodes WHERE {episodes}")
        where = f"({where}) AND episode_id IN (SELECT episode_id FROM episodes WHERE {episodes})"
    deliveries: list[Delivery] = []
    for view, event_type in _EPISODE_VIEWS.items():
        deliveries += _episode_messages(con.sql(f"SELECT * FROM {view} WHERE {where}").to_arrow_table(),
                                        event_type)
    deliveries += _episode_messages(con.sql(f"SELECT * FROM ({_STEPS_WITH_FRAMES}) WHERE {where} "
                                            "ORDER BY _topic, _partition, _offset, step").to_arrow_table(),
                                    EPISODE_STEPS)
    if episodes is None:  # other events belong to no episode
        for row in con.sql(f"SELECT * FROM events WHERE {where}").to_arrow_table().to_pylist():
            headers = [(HEADER_TYPE, row["type"].encode()), (HEADER_VERSION, str(row["version"]).encode())]
            deliveries.append(_delivery(row, row["key"], decode(row["payload"], headers)))
    con.close()
    yield from sorted(deliveries, key=lambda d: (d.topic, d.partition, d.offset))


def _episode_messages(table: pa.Table, event_type) -> list[Delivery]:
    """Rows -> one delivery per source message (rows sharing topic, partition and offset)."""
    if table.num_rows == 0:
        return []
    keys = pc.binary_join_element_wise(table["_topic"], pc.cast(table["_partition"], pa.string()),
                                       pc.cast(table["_offset"], pa.string()), "/")
    out = []
    boundaries = [0] + [i for i in range(1, table.num_rows) if keys[i] != keys[i - 1]] + [table.num_rows]
    for start, end in zip(boundaries, boundaries[1:]):
        rows = table.slice(start, end - start)
        first = rows.slice(0, 1).to_pylist()[0]
        batch = build(event_type, rows.select(event_type.schema.names).cast(event_type.schema))
        out.append(_delivery(first, first["episode_id"], batch))
    return out


def _delivery(row: dict, key, batch) -> Delivery:
    timestamp_ms = int(row["_timestamp"].timestamp() * 1000)
    return Delivery(row["_topic"], row["_partition"], row["_offset"], key, batch, timestamp_ms)


def replay_to_lake(source: Settings, target: Settings, bus: Bus, topics: list[str] | None = None,
                   progress=None) -> ReplayStats:
    """Rebuild every table of `source`'s lake into `target`'s lake."""
    topics = topics or SOURCE_TOPICS
    stats = ReplayStats()
    retained = bus.log_start_offsets(topics)
    # Everything below a partition's log start exists only in the lake.
    gone = " OR ".join(f"(_topic = '{t}' AND _partition = {p} AND _offset >= {start})"
                       for (t, p), start in sorted(retained.items()))
    writer = LakeWriter(open_store(target))
    for delivery in lake_deliveries(source, where=f"NOT ({gone})" if gone else "TRUE"):
        writer.add(delivery)
        stats.from_lake += 1
        if writer.pending_bytes >= 128 * 1024 * 1024:
            writer.write()
        if progress is not None:
            progress(1)
    writer.write()
    sink = LakeSink(target, bus=bus, group=f"replay-{uuid.uuid4().hex[:8]}", source_topics=topics,
                    flush_seconds=2.0)
    stats.from_bus = sink.run(until_idle_s=1.0).messages
    log.info("rebuilt %s: %d messages from the lake, %d from the log", target.lake_root, stats.from_lake,
             stats.from_bus)
    return stats


def replay_to_topic(source: Settings, bus: Bus, topic: str, episodes: str = "TRUE") -> ReplayStats:
    """Re-send the messages of the complete episodes matching `episodes` onto `topic`."""
    bus.ensure_topics([topic])
    producer = bus.producer()
    stats, seen = ReplayStats(), set()
    for delivery in lake_deliveries(source, episodes=episodes):
        producer.send(topic, delivery.key, delivery.batch)
        seen.add(delivery.key)
        stats.from_lake += 1
    producer.close()
    stats.episodes = len(seen)
    return stats
