"""Buffers decoded messages per (topic, partition) and writes them as lake objects.

Shared by the sink (which adds commits and crash recovery) and replay (which feeds it messages
rebuilt from the lake). Objects are named by topic, partition and first offset (schemas/lake.py).
"""

from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from consumers.lake_sink.projection import date_of, project
from infra.bus import Delivery
from infra.lake_store import LakeStore
from schemas import lake

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    messages: int = 0
    rows: int = 0
    files: int = 0
    flushes: int = 0
    dead_letters: int = 0
    retries: int = 0
    stale_files_removed: int = 0


@dataclass
class _PartitionBuffer:
    start_offset: int
    first_seen: float
    parts: dict[tuple[str, str, str], list[pa.Table]] = field(default_factory=lambda: defaultdict(list))
    nbytes: int = 0


class LakeWriter:
    def __init__(self, store: LakeStore, stats: SinkStats | None = None):
        self.store = store
        self.stats = stats or SinkStats()
        self._buffers: dict[tuple[str, int], _PartitionBuffer] = {}

    def add(self, delivery: Delivery) -> None:
        tp = (delivery.topic, delivery.partition)
        buffer = self._buffers.get(tp)
        if buffer is None:
            buffer = self._buffers[tp] = _PartitionBuffer(delivery.offset, time.monotonic())
        date = date_of(delivery.timestamp_ms)
        for table_name, experiment, rows in project(delivery):
            buffer.parts[(table_name, experiment, date)].append(rows)
            buffer.nbytes += rows.nbytes
            self.stats.rows += rows.num_rows
        self.stats.messages += 1

    def discard(self, tp: tuple[str, int]) -> None:
        """Forget the buffered rows of one partition (it is being re-read from an earlier offset)."""
        buffer = self._buffers.pop(tp, None)
        if buffer is not None:
            log.warning("dropping %d buffered bytes of %s/%d: the partition is re-read", buffer.nbytes, *tp)

    @property
    def empty(self) -> bool:
        return not self._buffers

    @property
    def pending_bytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    @property
    def oldest_age_s(self) -> float:
        return time.monotonic() - min(b.first_seen for b in self._buffers.values()) if self._buffers else 0.0

    def write(self) -> None:
        """Write every buffer; they are dropped only once all their objects are durable."""
        for (topic, partition), buffer in sorted(self._buffers.items()):
            for (table_name, experiment, date), parts in sorted(buffer.parts.items()):
                key = lake.object_key(table_name, experiment, date, topic, partition, buffer.start_offset)
                table = pa.concat_tables(parts).cast(lake.SCHEMAS[table_name])
                self.store.put(key, parquet_bytes(table))
                self.stats.files += 1
        if self._buffers:
            self.stats.flushes += 1
            log.info("flushed %d partitions to %s", len(self._buffers), self.store.root)
        self._buffers.clear()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    # One row group per file up to 1M rows: DuckDB scans large row groups far faster.
    pq.write_table(table, sink, compression="zstd", row_group_size=1_000_000)
    return sink.getvalue()
