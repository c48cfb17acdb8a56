"""`robolake compact`: merge small lake files into large ones without changing any query result.

Only files whose offsets the sink has committed are merged (a running sink may still rewrite
the others). The merged file is written first and named by the range it covers; the inputs are
deleted after. A compaction that dies in between leaves both, and readers skip the inputs
(schemas.lake.live_files), so the lake reads the same at every moment.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from consumers.lake_sink.writer import parquet_bytes
from infra.lake_store import LakeStore
from schemas import lake

log = logging.getLogger(__name__)


@dataclass
class CompactionStats:
    files_before: int = 0
    files_after: int = 0
    merged_files: int = 0
    rows: int = 0


def compact(store: LakeStore, committed: dict[tuple[str, int], int] | None,
            target_rows: int = 2_000_000, progress=None) -> CompactionStats:
    """Merge runs of live files per table, hive partition, topic and partition.
    `committed` maps (topic, partition) to the sink's committed offset; None means no sink is
    running and every file is final (the embedded default)."""
    stats = CompactionStats()
    for table_name in lake.TABLES:
        keys = store.list(f"{table_name}/")
        live = set(lake.live_files(keys))
        stats.files_before += len(keys)
        groups: dict[tuple, list[tuple[int, int, str]]] = defaultdict(list)
        for key in keys:
            topic, partition, start, last = lake.parse_file_name(key) or (None, 0, 0, 0)
            if topic is None:
                continue
            if key not in live:  # the input of an earlier compaction that died before deleting it
                store.delete([key])
                continue
            if committed is None or start < committed.get((topic, partition), 0):
                groups[(key.rsplit("/", 1)[0], topic, partition)].append((start, last, key))
        for (directory, topic, partition), files in sorted(groups.items()):
            run: list[tuple[int, int, str, pa.Table]] = []
            for start, last, key in sorted(files):
                table = pq.read_table(io.BytesIO(store.get(key)))
                if run and sum(t.num_rows for *_, t in run) + table.num_rows > target_rows:
                    _merge(store, directory, topic, partition, run, stats, progress)
                    run = []
                run.append((start, last, key, table))
            _merge(store, directory, topic, partition, run, stats, progress)
        stats.files_after += len(store.list(f"{table_name}/"))
    return stats


def _merge(store: LakeStore, directory: str, topic: str, partition: int, run: list, stats: CompactionStats,
           progress) -> None:
    if len(run) < 2:
        return
    # Inputs are in offset order already; files of older schema versions gain nulls.
    merged = pa.concat_tables([t for *_, t in run], promote_options="default")
    name = lake.file_name(topic, partition, run[0][0], run[-1][1])
    store.put(f"{directory}/{name}", parquet_bytes(merged))
    store.delete([key for _, _, key, _ in run])  # only once the merged file is durable
    stats.merged_files += len(run)
    stats.rows += merged.num_rows
    log.info("merged %d files (%d rows) into %s/%s", len(run), merged.num_rows, directory, name)
    if progress is not None:
        progress(len(run))


def committed_offsets(settings, group: str) -> dict[tuple[str, int], int] | None:
    """The sink group's committed offsets on Kafka (read without joining the group), or None
    on the in-process bus, whose sink has finished before any other command runs."""
    if settings.bus == "memory":
        return None
    from infra.topics import admin_client

    client = admin_client(settings.kafka_bootstrap)
    try:
        offsets = client.list_group_offsets({group: None}).get(group, {})
    finally:
        client.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
