"""Buffers decoded messages per (log, topic, partition) and commits them to the lake's tables.

Shared by the sink (which reads from the bus) and replay (which feeds it messages rebuilt from a
lake). A partition is tracked from the offset the lake says comes next; messages must follow on
without a gap, and a commit moves the lake's offset to the end of what was buffered in the same
transaction as the rows (infra/lake_catalog.py). A partition another writer moved meanwhile is
fenced: its buffer is dropped, never written, and the caller re-reads it from the lake's offset.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa

from consumers.lake_sink.projection import Rows, project, size, with_source
from infra.bus.interface import Delivery
from infra.lake_catalog import Fenced, LakeTables, OffsetKey
from schemas import lake

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    messages: int = 0
    rows: int = 0
    commits: int = 0
    dead_letters: int = 0
    retries: int = 0
    fenced: int = 0


@dataclass
class _Partition:
    expected: int | None      # the lake's next offset when the buffer began (None: the lake has none)
    next: int                 # the offset that must come next
    start: int                # where tracking began
    dirty_since: float = field(default_factory=time.monotonic)  # when the first message not yet committed was read
    parts: dict[str, list[tuple[Rows, int, int]]] = field(default_factory=lambda: defaultdict(list))  # (rows, offset, ms)
    nbytes: int = 0

    @property
    def dirty(self) -> bool:  # a partition the lake has never seen is new only once we read some of it
        return self.next != (self.start if self.expected is None else self.expected)


class Gap(ValueError):
    """A message does not follow on from what the writer holds for its partition."""


class LakeWriter:
    def __init__(self, tables: LakeTables, stats: SinkStats | None = None, contiguous: bool = True):
        self.tables, self.contiguous = tables, contiguous  # replay from a lake has gaps (dead letters)
        self.stats = stats or SinkStats()
        self._partitions: dict[OffsetKey, _Partition] = {}

    def track(self, key: OffsetKey, lake_next: int | None, start: int) -> None:
        """Start (or restart) buffering `key` at `start`; the lake's offset for it is `lake_next`."""
        self.drop(key)
        self._partitions[key] = _Partition(lake_next, start, start)

    def position(self, key: OffsetKey) -> int | None:
        """The offset `key` must continue at, or None if it is not tracked."""
        partition = self._partitions.get(key)
        return None if partition is None else partition.next

    def add(self, key: OffsetKey, delivery: Delivery) -> None:
        partition = self._expect(key, delivery.offset)
        for table_name, rows in project(delivery):
            partition.parts[table_name].append((rows, delivery.offset, delivery.timestamp_ms))
            partition.nbytes += size(rows)
            self.stats.rows += rows.num_rows if isinstance(rows, pa.Table) else 1
        self._move(partition, delivery.offset + 1)
        self.stats.messages += 1

    def skip(self, key: OffsetKey, offset: int) -> None:
        """A message that was dead-lettered: read, but nothing to write."""
        self._move(self._expect(key, offset), offset + 1)

    @staticmethod
    def _move(partition: _Partition, next_offset: int) -> None:
        if not partition.dirty:
            partition.dirty_since = time.monotonic()
        partition.next = next_offset

    def advance(self, key: OffsetKey, offset: int) -> None:
        """Replay: the source's offsets go on to `offset` (messages it dead-lettered, or no rows)."""
        partition = self._partitions[key]
        self._move(partition, max(partition.next, offset))

    def drop(self, key: OffsetKey) -> None:
        """Forget `key` and its buffered rows (it is re-read from the lake's offset, or no longer ours)."""
        partition = self._partitions.pop(key, None)
        if partition is not None and partition.nbytes:
            log.warning("dropping %d buffered bytes of %s/%d: the partition is re-read or no longer ours",
                        partition.nbytes, key[1], key[2])

    def keys(self) -> list[OffsetKey]:
        return list(self._partitions)

    @property
    def dirty(self) -> bool:
        return any(p.dirty for p in self._partitions.values())

    @property
    def pending_bytes(self) -> int:
        return sum(p.nbytes for p in self._partitions.values())

    @property
    def age_s(self) -> float:
        """Seconds since the oldest message not yet committed was read (0 when there is none)."""
        since = [p.dirty_since for p in self._partitions.values() if p.dirty]
        return time.monotonic() - min(since) if since else 0.0

    def commit(self) -> set[OffsetKey]:
        """Commit every dirty partition in one transaction. Returns the partitions that were
        fenced (dropped, not written); the others are committed when this returns."""
        fenced: set[OffsetKey] = set()
        while True:
            dirty = {k: p for k, p in self._partitions.items() if p.dirty}
            if not dirty:
                return fenced
            parts: dict[str, list[pa.Table]] = defaultdict(list)
            for key, partition in dirty.items():
                for table_name, rows in partition.parts.items():
                    parts[table_name].append(with_source(table_name, rows, *key))
            try:
                self.tables.commit({name: _sorted(name, tables) for name, tables in parts.items()},
                                   {k: (p.expected, p.next) for k, p in dirty.items()})
            except Fenced as exc:
                log.warning("%s; dropping our rows of those partitions", exc)
                for key in exc.stored:
                    self.drop(key)
                    fenced.add(key)
                self.stats.fenced += len(exc.stored)
                continue
            for partition in dirty.values():
                partition.expected, partition.parts, partition.nbytes = partition.next, defaultdict(list), 0
            self.stats.commits += 1
            log.info("committed %d partitions to %s", len(dirty), self.tables.root)
            return fenced

    def _expect(self, key: OffsetKey, offset: int) -> _Partition:
        partition = self._partitions.get(key)
        if partition is None or offset < partition.next or (self.contiguous and offset != partition.next):
            raise Gap(f"{key[1]}/{key[2]}: offset {offset} does not follow "
                      f"{'nothing' if partition is None else partition.next}")
        return partition


def _sorted(table_name: str, tables: list[pa.Table]) -> pa.Table:
    # Older event versions lack later optional fields: promote, fill what no batch had with nulls,
    # then put the columns in the lake's order and cast to its types.
    schema = lake.SCHEMAS[table_name]
    table = pa.concat_tables(tables, promote_options="default")
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    table = table.select(schema.names).cast(schema)
    return table.sort_by([(k, "ascending") for k in lake.SORT_KEYS[table_name]])
