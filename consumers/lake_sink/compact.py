"""`robolake compact`: merge small data files, then remove files no snapshot needs any more.

Each step is a catalog transaction (DuckLake's own maintenance functions), so a running sink,
a reader and another compaction are all safe beside it: a reader keeps the snapshot it started
with, and files are deleted only once no snapshot younger than `keep_s` refers to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infra.lake_catalog import LakeTables
from schemas import lake

log = logging.getLogger(__name__)

ORPHAN_MIN_AGE_S = 300.0


@dataclass
class CompactionStats:
    files_before: int = 0
    files_after: int = 0
    files_deleted: int = 0


def compact(settings, keep_s: float = 600.0, progress=None) -> CompactionStats:
    """Merge adjacent small files of every table (episode_status: computed again); expire snapshots
    older than `keep_s` and delete the files that were replaced more than `keep_s` ago, and files no
    snapshot lists (failed commits) once they are older than `keep_s` and at least ORPHAN_MIN_AGE_S."""
    tables = LakeTables(settings, writer="compact")
    stats = CompactionStats()
    try:
        # Small commits are kept inside the catalog (DuckLake's data inlining): write them out as
        # Parquet first, so the catalog stays small and every row is in a data file.
        tables.execute_serialised("CALL ducklake_flush_inlined_data('lake')")
        stats.files_before = _data_files(tables)
        # Each commit replaces the rows of episode_status it recomputes (a data file and a delete file that
        # merging leaves alone): computed again whole, the table is a file or two per experiment.
        status_files = f"SELECT count(delete_file) FROM ducklake_list_files('lake', '{lake.STATUS}')"
        if tables.con.execute(status_files).fetchone()[0]:
            tables.rebuild_status()
        tables.execute_serialised("CALL ducklake_merge_adjacent_files('lake')")
        if progress is not None:
            progress(1)
        # The age cut-off is applied here: DuckLake 1.5.5 on a SQLite catalog compares `older_than`
        # as text and so ignores the time of day (measured: a cut-off an hour before the files
        # were replaced still deleted them).
        cutoff = f"now() - to_seconds({float(keep_s)})"
        old = [r[0] for r in tables.con.execute(
            f"SELECT snapshot_id FROM lake.snapshots() WHERE snapshot_time < {cutoff} "
            "AND snapshot_id < (SELECT max(snapshot_id) FROM lake.snapshots())").fetchall()]
        if old:
            tables.execute_serialised(f"CALL ducklake_expire_snapshots('lake', versions := {old})")
        young = tables.con.execute(
            "SELECT count(*) FROM __ducklake_metadata_lake.ducklake_files_scheduled_for_deletion "
            f"WHERE CAST(schedule_start AS TIMESTAMPTZ) >= {cutoff}").fetchone()[0]
        if young:  # all or nothing: the function cannot pick files
            log.info("%d replaced files are younger than %.0fs and kept for running readers; "
                     "run compact again later to delete them", young, keep_s)
        else:
            stats.files_deleted = len(tables.execute_serialised(
                "CALL ducklake_cleanup_old_files('lake', cleanup_all := true)"))
        # Files no snapshot lists (a commit that failed, a killed writer): only old ones, since a
        # writer's commit in flight lists files it wrote moments ago.
        orphan_cutoff = f"now() - to_seconds({max(float(keep_s), ORPHAN_MIN_AGE_S)})"
        stats.files_deleted += len(tables.execute_serialised(
            f"CALL ducklake_delete_orphaned_files('lake', older_than := {orphan_cutoff})"))
        if progress is not None:
            progress(1)
        stats.files_after = _data_files(tables)
    finally:
        tables.close()
    log.info("compacted %s: %d data files -> %d, %d deleted", settings.lake_root, stats.files_before,
             stats.files_after, stats.files_deleted)
    return stats


def _data_files(tables: LakeTables) -> int:
    return sum(tables.con.execute(f"SELECT count(*) FROM ducklake_list_files('lake', '{name}')").fetchone()[0]
               for name in lake.TABLES)
