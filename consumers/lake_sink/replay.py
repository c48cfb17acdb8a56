"""Replay: rebuild a lake from a lake (and the log), or re-stream historic episodes onto a topic.

The lake keeps everything needed to rebuild the messages it came from: episode rows carry all
their event fields plus their source log, topic, partition, offset and timestamp, and other
events are kept as their original Arrow payload. `lake_deliveries` turns lake rows back into the
messages they were, in log order, a window of offsets at a time (bounded memory), and both
replays are built on it:

- to a lake: every message is written to the target under its original source offsets, and the
  target's offsets end where the source's do, and the relabelled rewards are copied as they are
  (they are computed, not logged); then a sink on the target catches up with whatever the log
  holds beyond that. Poison is not re-sent: it was dead-lettered when first consumed.
- to a topic: the messages of the complete episodes matching a predicate, in their original order.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from consumers.lake_sink.sink import SOURCE_TOPICS, LakeSink
from consumers.lake_sink.writer import LakeWriter
from infra.bus.interface import Bus, Delivery
from infra.duck import sql_str
from infra.lake_catalog import LakeTables, OffsetKey, lake_exists
from infra.lake_sql import check_read_only, open_lake
from schemas import lake
from schemas.codec import HEADER_TYPE, HEADER_VERSION, build, decode
from schemas.events import EPISODE_ENDED, EPISODE_STARTED_V2, EPISODE_STEPS

log = logging.getLogger(__name__)

WINDOW = 2000  # offsets per query: ~100k step rows at 50 steps a message
_EPISODE_TABLES = {"episode_starts": EPISODE_STARTED_V2, "episode_ends": EPISODE_ENDED}
_STEPS_WITH_FRAMES = """
    SELECT s.*, f.frame FROM steps_all s
    LEFT JOIN frames_all f USING (_log, _topic, _partition, _offset, episode_id, step)"""


class ReplayError(ValueError):
    pass


@dataclass
class ReplayStats:
    from_lake: int = 0      # messages rebuilt from the source lake
    from_bus: int = 0       # messages sunk from the log afterwards
    rewards: int = 0        # relabelled rewards rows copied (they are computed, not logged)
    episodes: int = 0


def lake_deliveries(settings, episodes: str | None = None) -> Iterator[tuple[OffsetKey, Delivery]]:
    """The messages the lake was built from, in log order per (log, topic, partition), with that
    key. `episodes` is a predicate on the `episodes` view (then only those episodes' messages)."""
    con, keys = _pinned(settings)
    where = "TRUE"
    try:
        if episodes is not None:
            check_read_only(con, f"SELECT episode_id FROM episodes WHERE {episodes}")
            # The ids first, alone: inside IN (…) a column the view lacks would bind to the outer table.
            con.register("_chosen", con.execute(f"SELECT episode_id FROM episodes WHERE {episodes}").to_arrow_table())
            where = "episode_id IN (SELECT episode_id FROM _chosen)"
        yield from table_deliveries(con, keys, where, events=episodes is None)
    finally:
        con.close()


def _pinned(settings):
    """A read-only connection inside one transaction, so every query sees one snapshot of the lake
    (a sink committing meanwhile changes nothing we read), and the offsets of that snapshot."""
    con = open_lake(settings)
    con.execute("BEGIN TRANSACTION")
    keys = con.execute("SELECT _log, _topic, _partition, next_offset FROM lake_offsets ORDER BY ALL").fetchall()
    return con, keys


def table_deliveries(con, keys, where: str = "TRUE", events: bool = True) -> Iterator[tuple[OffsetKey, Delivery]]:
    """Messages rebuilt from the views episode_starts, episode_ends, steps_all, frames_all and
    events of `con`, for each (log, topic, partition, end offset) of `keys`, a window at a time."""
    for log_id, topic, partition, end in keys:
        for low in range(0, end, WINDOW):
            source = (f"_log = {sql_str(log_id)} AND _topic = {sql_str(topic)} AND _partition = {partition} "
                      f"AND _offset >= {low} AND _offset < {low + WINDOW}")
            window: list[Delivery] = []
            for view, event_type in _EPISODE_TABLES.items():
                window += _messages(con.sql(f"SELECT * FROM {view} WHERE {source} AND {where}"), event_type)
            window += _messages(con.sql(f"SELECT * FROM ({_STEPS_WITH_FRAMES}) WHERE {source} AND {where} "
                                        "ORDER BY _offset, step"), EPISODE_STEPS)
            if events:  # other events belong to no episode
                for row in con.sql(f"SELECT * FROM events WHERE {source}").to_arrow_table().to_pylist():
                    headers = [(HEADER_TYPE, row["type"].encode()), (HEADER_VERSION, str(row["version"]).encode())]
                    window.append(_delivery(row, row["key"], decode(row["payload"], headers)))
            for delivery in sorted(window, key=lambda d: d.offset):
                yield (log_id, topic, partition), delivery


def _messages(relation, event_type) -> list[Delivery]:
    """Rows -> one delivery per source message (rows sharing an offset)."""
    table = relation.to_arrow_table()
    if table.num_rows == 0:
        return []
    table = table.sort_by([("_offset", "ascending")]) if event_type is not EPISODE_STEPS else table
    offsets = table["_offset"].to_numpy()
    out, start = [], 0
    for end in [i for i in range(1, len(offsets)) if offsets[i] != offsets[i - 1]] + [len(offsets)]:
        rows = table.slice(start, end - start)
        first = rows.slice(0, 1).to_pylist()[0]
        for f in event_type.schema:  # tables from before an optional field (a v1 lake) lack its column
            if f.name not in rows.column_names:
                rows = rows.append_column(f, pa.nulls(rows.num_rows, f.type))
        batch = build(event_type, rows.select(event_type.schema.names).cast(event_type.schema))
        out.append(_delivery(first, first["episode_id"], batch))
        start = end
    return out


def _delivery(row: dict, key, batch) -> Delivery:
    timestamp_ms = int(row["_timestamp"].timestamp() * 1000)
    return Delivery(row["_topic"], row["_partition"], row["_offset"], key, batch, timestamp_ms)


def replay_to_lake(source, target, bus: Bus | None = None, topics: list[str] | None = None,
                   merge: bool = False, progress=None) -> ReplayStats:
    """Rebuild every table of `source`'s lake into `target`'s lake, then catch up from `bus`."""
    if not lake_exists(source):
        raise ReplayError(f"no lake at {source.lake_root} to replay from")
    stats = ReplayStats()
    tables = LakeTables(target, writer=f"replay-from:{source.lake_root}")
    try:
        existing = tables.all_offsets()
        if existing and not merge:
            raise ReplayError(f"{target.lake_root} already holds data from {len(existing)} partitions; "
                              "replay into an empty lake, or pass --merge to add what it lacks")
        con, keys = _pinned(source)
        try:
            writer = LakeWriter(tables, contiguous=False)
            for key, delivery in table_deliveries(con, keys):
                if writer.position(key) is None:
                    writer.track(key, existing.get(key), existing.get(key) or 0)
                if delivery.offset >= writer.position(key):  # with --merge: only what the target lacks
                    writer.add(key, delivery)
                    stats.from_lake += 1
                if writer.pending_bytes >= 64 * 1024 * 1024:
                    writer.commit()
                if progress is not None:
                    progress(1)
            for log_id, topic, partition, end in keys:  # offsets end where the source's do, dead letters included
                key = (log_id, topic, partition)
                if writer.position(key) is None:
                    writer.track(key, existing.get(key), existing.get(key) or 0)
                writer.advance(key, end)
            writer.commit()
            stats.rewards = _copy_rewards(con, target, tables, merge)
        finally:
            con.close()
    finally:
        tables.close()
    if bus is not None:
        sink = LakeSink(target, bus=bus, group=f"replay-{uuid.uuid4().hex[:8]}", source_topics=topics or SOURCE_TOPICS,
                        flush_seconds=2.0, dead_letter=False)
        stats.from_bus = sink.run(until_idle_s=1.0).messages
    log.info("rebuilt %s: %d messages from %s, %d from the log", target.lake_root, stats.from_lake,
             source.lake_root, stats.from_bus)
    return stats


def _copy_rewards(con, target, tables: LakeTables, merge: bool) -> int:
    """The source's relabelled rewards, as they are: `rewards` is computed by `robolake relabel`,
    not logged, so no message rebuilds it. With `merge`, only (dataset, function, episode) groups
    the target lacks."""
    where = "TRUE"
    if merge:
        have = open_lake(target)
        try:
            con.register("_have", have.execute("SELECT DISTINCT dataset, reward_fn, reward_version, episode_id "
                                               "FROM rewards").to_arrow_table())
        finally:
            have.close()
        where = "(dataset, reward_fn, reward_version, episode_id) NOT IN (SELECT * FROM _have)"
    copied = 0
    for batch in con.execute(f"SELECT * FROM rewards WHERE {where}").to_arrow_reader(1_000_000):
        tables.commit({lake.REWARDS: pa.Table.from_batches([batch])}, offsets={})  # not a bus consumer: no offsets
        copied += batch.num_rows
    return copied


def replay_to_topic(source, bus: Bus, topic: str, episodes: str = "TRUE") -> ReplayStats:
    """Re-send the messages of the complete episodes matching `episodes` onto `topic`."""
    bus.ensure_topics([topic])
    producer = bus.producer()
    stats, seen = ReplayStats(), set()
    for _, delivery in lake_deliveries(source, episodes=episodes):
        producer.send(topic, delivery.key, delivery.batch)
        seen.add(delivery.key)
        stats.from_lake += 1
    producer.close()
    stats.episodes = len(seen)
    return stats

