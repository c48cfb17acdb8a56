"""`robolake migrate --catalog URL`: move a lake's catalog to another database, every snapshot kept.

A DuckLake catalog is a set of `ducklake_*` tables; the data files stay where they are. The move:
1. flushes rows DuckLake keeps inside the catalog (inlined data, stored per database in its own
   way) into Parquet files, so what remains is catalog metadata only;
2. creates an empty DuckLake at the target (its tables, typed as that database wants them) and
   replaces their rows with the source's, in one transaction;
3. checks every table's row count, then retires the source so no writer uses it again: a SQLite
   file is renamed `<name>.moved-<time>`, a PostgreSQL catalog's tables move to a schema
   `robolake_moved_<time>`. Nothing is deleted.
Writers of the lake (sinks, runs, relabel) must be stopped meanwhile; the move holds the writers'
lock of a SQLite catalog, so one that is still running waits, then fails on the retired catalog.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from infra.catalogs import SQLiteCatalog, open_catalog
from infra.duck import connect, load_extension, sql_str, transaction
from infra.lake_catalog import LakeNotFound, attach, catalog, data_path

log = logging.getLogger(__name__)


class CatalogMoveError(RuntimeError):
    """The catalog cannot be moved there; nothing was changed."""


@dataclass
class Moved:
    source: str
    target: str
    tables: int
    snapshots: int
    data_files: int


def move_catalog(settings, target_url: str) -> Moved:
    source, target = catalog(settings), open_catalog(target_url)
    if str(source) == str(target):
        raise CatalogMoveError(f"the lake's catalog is already {target}")
    if not source.exists():
        raise LakeNotFound(f"no lake at {settings.lake_root} (no catalog at {source}) to move")
    target_settings = settings.replace(catalog=target_url)
    if target.exists() and not _empty_leftover(target_settings):
        raise CatalogMoveError(f"{target} already holds a lake's catalog; move to an empty database or file")
    _check_lake(settings, source)
    turns = source.writer_turns()  # no writer of the source commits meanwhile
    try:
        with turns():
            tables, snapshots, files = _copy_catalog(settings, source, target, target_settings)
            _retire(source)
    finally:
        turns.close()
    log.info("moved the catalog of %s from %s to %s", settings.lake_root, source, target)
    return Moved(str(source), str(target), tables, snapshots, files)


def _copy_catalog(settings, source, target, target_settings) -> tuple[int, int, int]:
    """(catalog tables, snapshots, live data files) of the target once it holds the source's catalog."""
    _flush_inlined(settings)
    target.create()
    attach(target_settings, read_only=False, over_existing_data=True).close()  # DuckLake's tables, typed for it
    con = connect(settings)
    try:
        for where in (source, target):
            load_extension(con, where.extension, settings.home)
        for alias, where, mode in (("src", source, ", READ_ONLY"), ("dst", target, "")):
            path, kind = where.database_attach
            con.execute(f"ATTACH {sql_str(path)} AS {alias} (TYPE {kind}{mode})")
        tables = _copy(con, settings, target_settings)
        snapshots = con.execute("SELECT count(*) FROM dst.ducklake_snapshot").fetchone()[0]
        files = con.execute("SELECT count(*) FROM dst.ducklake_data_file WHERE end_snapshot IS NULL").fetchone()[0]
    finally:
        con.close()
    return tables, snapshots, files


def _empty_leftover(target_settings) -> bool:
    """Whether the target is an empty DuckLake (a move interrupted before it copied anything): no table,
    one snapshot. Copying replaces its rows anyway."""
    con = attach(target_settings, read_only=True)
    try:
        snapshots = con.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()[0]
        tables = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'lake'").fetchone()[0]
    finally:
        con.close()
    return snapshots <= 1 and tables == 0


def _check_lake(settings, source) -> None:
    """The source catalog must be this lake's: one that records another data path belongs to another lake."""
    con = attach(settings, read_only=True)
    try:
        recorded = con.execute("SELECT value FROM __ducklake_metadata_lake.ducklake_metadata "
                               "WHERE key = 'data_path'").fetchone()[0]
    finally:
        con.close()
    if recorded != "data/" and recorded.rstrip("/") != data_path(settings).rstrip("/"):
        raise CatalogMoveError(f"the catalog {source} is the catalog of the lake whose data is at {recorded}, "
                               f"not of {settings.lake_root}: name that lake with --lake")


def _flush_inlined(settings) -> None:
    con = attach(settings, read_only=False)
    try:
        con.execute("CALL ducklake_flush_inlined_data('lake')")
    finally:
        con.close()


def _copy(con, settings, target_settings) -> int:
    """Every catalog table's rows, source to target, in one transaction; returns the tables copied."""
    names, inlined = [], []
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'src' "
                               "AND table_name LIKE 'ducklake_%' ORDER BY table_name").fetchall():
        (inlined if name.startswith("ducklake_inlined_") else names).append(name)
    for name in inlined:  # rows and deletes kept in the catalog: flushed to data files above
        if name == "ducklake_inlined_data_tables":  # their index: the target makes its own as it inlines
            continue
        if con.execute(f"SELECT count(*) FROM src.{name}").fetchone()[0]:
            raise CatalogMoveError(f"rows inlined in the catalog ({name}) were not flushed to data files")
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'dst'").fetchall()}
    missing = sorted(set(names) - present)
    if missing:
        raise CatalogMoveError(f"the target's DuckLake lacks the catalog tables {', '.join(missing)} "
                               "(a DuckLake of another version?)")
    with transaction(con):
        for name in names:
            con.execute(f"DELETE FROM dst.{name}")
            con.execute(f"INSERT INTO dst.{name} BY NAME SELECT * FROM src.{name}")
        # The data path as the target must record it: relative only for a lake's own catalog.sqlite.
        own = target_settings.catalog == f"sqlite:{settings.lake_root}/catalog.sqlite"
        con.execute("UPDATE dst.ducklake_metadata SET value = ? WHERE key = 'data_path'",
                    ["data/" if own else data_path(settings)])
    for name in names:
        counts = [con.execute(f"SELECT count(*) FROM {db}.{name}").fetchone()[0] for db in ("src", "dst")]
        if counts[0] != counts[1]:
            raise CatalogMoveError(f"{name}: {counts[0]} rows in the source, {counts[1]} in the target")
    return len(names)


def _retire(source) -> None:
    stamp = time.strftime("%Y%m%d%H%M%S")
    if isinstance(source, SQLiteCatalog):
        for suffix in ("", "-wal", "-shm"):
            path = source.path.with_name(source.path.name + suffix)
            if path.exists():
                path.rename(path.with_name(f"{source.path.name}.moved-{stamp}{suffix}"))
        return
    schema = f"robolake_moved_{stamp}"
    with source.connect() as con:
        with con.transaction():
            con.execute(f"CREATE SCHEMA {schema}")
            for (name,) in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                       "AND tablename LIKE 'ducklake_%'").fetchall():
                con.execute(f'ALTER TABLE public."{name}" SET SCHEMA {schema}')

