"""`robolake migrate --from-v1 LAKE`: convert a lake written by robolake 0.1 (plain Parquet files
named <topic>+<partition>+<first offset>.parquet under hive directories) into the lake's tables.

Every message is rebuilt from the v1 rows (as replay does) and written through the same fenced
commits, under the source log `v1:<old lake>`; offsets are the old ones. v1 episodes carry a
checksum over the whole stream of their steps: it is verified here, and an episode that passes
gets the current checksum (over its chunk digests), so the views can prove it complete. One that
fails keeps its old checksum and shows up in `partial_episodes` as a checksum mismatch.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from consumers.lake_sink.replay import table_deliveries
from consumers.lake_sink.writer import LakeWriter
from infra.bus.interface import Delivery
from infra.duck import connect, sql_str
from infra.lake_catalog import LakeTables
from schemas import lake
from schemas.codec import EventBatch, chunk_digest, episode_checksum

log = logging.getLogger(__name__)

_V1_TABLES = {"episode_starts": "episode_starts", "episode_ends": "episode_ends", "steps": "steps_all",
              "frames": "frames_all", "events": "events"}
_NAME = re.compile(r"\+(\d+)\+(\d{10,})(?:-(\d{10,}))?\.parquet$")


@dataclass
class MigrationStats:
    messages: int = 0
    episodes_verified: int = 0
    episodes_failed: int = 0


def _live(files: list[str]) -> list[str]:
    """v1 readers skipped the inputs of a compaction that died before deleting them: so do we."""
    ranges = []
    for f in files:
        m = _NAME.search(f)
        if m:
            first = int(m[2])
            ranges.append((f.rsplit("/", 1)[0], f.rsplit("+", 2)[0].rsplit("/", 1)[-1], int(m[1]), first,
                           int(m[3] or first), f))
    merged = [r for r in ranges if r[3] != r[4]]
    return [f for d, t, p, s, last, f in ranges
            if not any(m[:3] == (d, t, p) and m[3] <= s and last <= m[4] and (m[3], m[4]) != (s, last)
                       for m in merged)]


def migrate_v1(source_root: str, target, progress=None) -> MigrationStats:
    """Convert the v1 lake at `source_root` (a directory or s3://bucket/prefix) into `target`'s lake."""
    con = connect(target)
    log_id = f"v1:{source_root}"
    found = 0
    for table, view in _V1_TABLES.items():
        files = _live([r[0] for r in con.execute("SELECT file FROM glob(?)",
                                                 [f"{source_root}/{table}/*/*/*.parquet"]).fetchall()])
        found += len(files)
        source = (f"read_parquet([{', '.join(sql_str(f) for f in files)}], hive_partitioning = true, "
                  "union_by_name = true, hive_types = {'experiment_id': VARCHAR, 'date': DATE})") if files else None
        if source is None:  # no such files (no frames, no events): empty, with the columns readers bind
            con.register(f"_empty_{table}", lake.SCHEMAS[table].empty_table())
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM _empty_{table}")
        else:
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT {sql_str(log_id)} AS _log, * EXCLUDE (date) FROM {source}")
    if not found:
        raise FileNotFoundError(f"no v1 lake files under {source_root}")
    keys = [(log_id, t, p, end) for t, p, end in con.execute(
        "SELECT _topic, _partition, max(_offset) + 1 FROM (SELECT _topic, _partition, _offset FROM episode_starts "
        "UNION ALL SELECT _topic, _partition, _offset FROM steps_all UNION ALL SELECT _topic, _partition, _offset "
        "FROM episode_ends UNION ALL SELECT _topic, _partition, _offset FROM events) GROUP BY ALL ORDER BY ALL").fetchall()]
    stats = MigrationStats()
    tables = LakeTables(target, writer=f"migrate-from:{source_root}")
    try:
        existing = tables.all_offsets()
        writer = LakeWriter(tables, contiguous=False)
        open_episodes: dict[str, tuple] = {}
        for key, delivery in table_deliveries(con, keys):
            if writer.position(key) is None:
                writer.track(key, existing.get(key), existing.get(key) or 0)
            if delivery.offset < writer.position(key):
                continue  # already migrated by an earlier, interrupted run
            writer.add(key, _verified(delivery, open_episodes, stats))
            stats.messages += 1
            if writer.pending_bytes >= 64 * 1024 * 1024:
                writer.commit()
            if progress is not None:
                progress(1)
        writer.commit()
    finally:
        tables.close()
        con.close()
    return stats


def _verified(delivery: Delivery, open_episodes: dict, stats: MigrationStats) -> Delivery:
    """Track each episode's v1 checksum as its chunks pass; give a verified end the current one."""
    batch = delivery.batch
    if batch.type == "episode.steps":
        legacy, digests = open_episodes.setdefault(delivery.key, (hashlib.sha256(), []))
        for name in ("step", "reward"):
            legacy.update(batch.table.column(name).to_numpy().tobytes())
        for name in ("observation", "action"):
            legacy.update(pc.list_flatten(batch.table.column(name)).to_numpy().tobytes())
        digests.append(chunk_digest(batch.table))
    if batch.type != "episode.ended":
        return delivery
    legacy, digests = open_episodes.pop(delivery.key, (hashlib.sha256(), []))
    old = batch.table.column("checksum")[0].as_py()
    if old != legacy.hexdigest():
        stats.episodes_failed += 1
        log.warning("episode %s: its v1 checksum does not match its steps; kept as it was", delivery.key)
        return delivery
    stats.episodes_verified += 1
    index = batch.table.schema.get_field_index("checksum")
    table = batch.table.set_column(index, batch.table.schema.field(index), pa.array([episode_checksum(digests)]))
    return Delivery(delivery.topic, delivery.partition, delivery.offset, delivery.key,
                    EventBatch(batch.type, batch.version, table), delivery.timestamp_ms)
