"""The lake as tables in an open table format: DuckLake (Parquet data files + a catalog database).

Every write is one catalog transaction that appends rows to any number of tables *and* moves the
writer's offsets in `lake_offsets` — with a check: each (log, topic, partition) must still be
where the writer last saw it. A writer whose view is stale (a zombie after a rebalance, a second
process on the same partition) fails that check and its rows never become visible (`Fenced`).
Every transaction also bumps the one row of `lake_commits`, so any two overlapping transactions
conflict and one of them retries with fresh offsets, whatever the catalog database does about
concurrency. Readers see consistent snapshots; files are never deleted by listing.

The catalog is a SQLite file by default (<lake>/catalog.sqlite, in WAL mode so readers never block
writers; writers on one machine take turns through a file lock), or a PostgreSQL database that
writers on any number of machines share (infra/catalogs.py).
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa

from infra import episode_status
from infra.catalogs import LockHeld, open_catalog
from infra.duck import connect, load_extension, sql_str, transaction
from schemas import lake

log = logging.getLogger(__name__)

OffsetKey = tuple[str, str, int]  # (log, topic, partition)

# How tables are stored (benchmarks/README.md, issue 26), set once per lake where the operator has not
# chosen otherwise (later, they change a table's own options: set_option(..., table_name => 'steps')).
# Offsets: a commit writes a row per partition it moves, kept inlined in the catalog, not in two small
# files a commit. Steps: "the steps of these episodes" is the common read (training, relabelling,
# inspection), so DuckLake sorts them by episode whenever it writes them (inserts and compaction), and
# small row groups let a reader skip all but the episodes' own rows; lz4_raw decodes ~35% faster than
# zstd for ~10% more bytes.
_COMPRESSION = "zstd"  # lake-wide, set when the lake is made
_TABLE_OPTIONS = {lake.OFFSETS: {"data_inlining_row_limit": 1000},
                  lake.STEPS: {"parquet_compression": "lz4_raw", "parquet_row_group_size": 2048}}
_SORTED_BY = {lake.STEPS: lake.SORT_KEYS[lake.STEPS]}


class LakeNotFound(FileNotFoundError):
    """There is no lake (no catalog) where one was expected."""


class CatalogMismatch(RuntimeError):
    """The catalog named holds no lake, but the lake's data path holds files: a writer must not start a
    second, empty catalog over them (its maintenance would delete them as files no snapshot lists)."""


class Fenced(RuntimeError):
    """Another writer moved these partitions since we read them: our rows were not committed."""

    def __init__(self, stored: dict[OffsetKey, int | None]):
        self.stored = stored
        moved = ", ".join(f"{t}/{p}@{o}" for (_, t, p), o in sorted(stored.items(), key=str))
        super().__init__(f"fenced: another writer committed {moved}")


def catalog_url(settings) -> str:
    """The catalog of the settings' lake (see the module docstring)."""
    if settings.catalog:
        return settings.catalog
    if settings.lake_is_s3:  # beside the stack's MinIO data (one machine; see the README)
        location = settings.lake_root.removeprefix("s3://").strip("/")
        return f"sqlite:{settings.stack_state / 'catalogs' / location / 'catalog.sqlite'}"
    return f"sqlite:{settings.lake_root}/catalog.sqlite"


def catalog(settings):
    """The settings' catalog (infra.catalogs): a SQLite file or a PostgreSQL database."""
    return open_catalog(catalog_url(settings))


def data_path(settings) -> str:
    """Where the data files live: apart from the catalog, so a reader allowed to read the data
    is not allowed near the catalog."""
    return settings.lake_root.rstrip("/") + "/data/"


def lake_exists(settings) -> bool:
    return catalog(settings).exists()


def attach(settings, read_only: bool, over_existing_data: bool = False):
    """A DuckDB connection with the lake attached as `lake`. A missing catalog is created for a writer,
    unless its lake's data path already holds files (CatalogMismatch; `over_existing_data`: a catalog
    moved there is about to describe them) or the catalog was moved away."""
    where = catalog(settings)
    if not where.exists():
        if not over_existing_data and where.moved_away():
            raise LakeNotFound(f"no lake at {settings.lake_root} (no catalog at {where}): `robolake migrate --catalog` "
                               "moved it; name the new one with --catalog or ROBOLAKE_CATALOG")
        if read_only:
            raise LakeNotFound(f"no lake at {settings.lake_root} (no catalog at {where}); "
                               "`robolake produce` or `robolake sink` creates one")
        if not over_existing_data and _holds_files(settings):
            raise CatalogMismatch(f"the catalog {where} holds no lake, but {data_path(settings)} holds a lake's data "
                                  "files: name that lake's catalog (--catalog or ROBOLAKE_CATALOG); a new catalog "
                                  "over them is refused")
        where.create()
    con = connect(settings)
    load_extension(con, "ducklake")
    load_extension(con, where.extension, settings.home)
    # The data path is the lake's own, wherever the lake is now: the catalog keeps file paths relative
    # to it, so a lake directory copied or moved whole still reads and writes.
    options = [f"DATA_PATH {sql_str(data_path(settings))}", "OVERRIDE_DATA_PATH TRUE"]
    if read_only:
        options.insert(0, "READ_ONLY")
    try:
        con.execute(f"ATTACH {sql_str('ducklake:' + where.ducklake)} AS lake ({', '.join(options)})")
    except Exception as exc:  # the catalog exists, but its first writer has not initialised it yet
        if read_only and "does not exist" in str(exc):
            raise LakeNotFound(f"no lake at {settings.lake_root} yet (its catalog is being created)") from None
        raise
    if not read_only and catalog_url(settings) == f"sqlite:{settings.lake_root}/catalog.sqlite":
        _record_relative_data_path(con)
    return con


def _holds_files(settings) -> bool:
    root = data_path(settings)
    if not settings.lake_is_s3:
        return Path(root).is_dir() and any(p.is_file() for p in Path(root).rglob("*"))
    from infra.object_store import access_denied

    con = connect(settings)
    try:
        return con.execute(f"SELECT count(*) FROM (SELECT file FROM glob({sql_str(root + '**')}) LIMIT 1)").fetchone()[0] > 0
    except Exception as exc:
        raise access_denied(exc, settings, root) or exc
    finally:
        con.close()


def lake_lock(settings, purpose: str, waiting: str | None = None, wait: bool = True):
    """The lock of `purpose` for this lake, for every process that writes it: a lock file beside a
    SQLite catalog, an advisory lock of a PostgreSQL one. `waiting` is logged while another holds
    it; `wait=False`: LockHeld at once instead."""
    return catalog(settings).lock(purpose, waiting, wait)


def _record_relative_data_path(con) -> None:
    """A local lake's catalog records its data path as `data/`, relative: a plain DuckDB started in
    the lake's directory, wherever it was copied or moved, attaches it as it is (DuckDB resolves a
    relative data path against its working directory; robolake passes the path itself)."""
    stored = con.execute("SELECT value FROM __ducklake_metadata_lake.ducklake_metadata "
                         "WHERE key = 'data_path'").fetchone()
    if stored is not None and stored[0] != "data/":
        try:
            con.execute("UPDATE __ducklake_metadata_lake.ducklake_metadata SET value = 'data/' WHERE key = 'data_path'")
        except Exception as exc:  # another writer holds the catalog: the next writable attach records it
            log.debug("data path not recorded as relative yet: %s", exc)


class LakeTables:
    """The write side: one catalog transaction per commit, fenced by offsets."""

    def __init__(self, settings, writer: str):
        self.settings, self.writer = settings, writer
        self.root = settings.lake_root
        where = catalog(settings)
        where.create_database()  # first: the first writers then take turns creating the tables
        self._turns = where.writer_turns()
        with self._serialised():
            self.con = attach(settings, read_only=False)
            self._retry(self._create_tables)
            self._retry(self._set_layout)

    def close(self) -> None:
        self.con.close()
        self._turns.close()

    def offsets(self, log_id: str, topic: str) -> dict[int, int]:
        """partition -> next offset to write, as the lake's latest snapshot says."""
        rows = self.con.execute(f"SELECT _partition, next_offset FROM lake.{lake.OFFSETS} "
                                "WHERE _log = ? AND _topic = ?", [log_id, topic]).fetchall()
        return dict(rows)

    def all_offsets(self) -> dict[OffsetKey, int]:
        rows = self.con.execute(f"SELECT _log, _topic, _partition, next_offset FROM lake.{lake.OFFSETS}").fetchall()
        return {(lg, t, p): o for lg, t, p, o in rows}

    def commit(self, tables: dict[str, pa.Table], offsets: dict[OffsetKey, tuple[int | None, int]]) -> None:
        """Append `tables` and move each key of `offsets` from its expected next offset (None: the
        lake has none yet) to the new one, atomically; Fenced if any expectation is stale."""
        with self._serialised():
            self._retry(lambda: self._transaction(tables, offsets))

    def execute_serialised(self, sql: str, params: list | None = None):
        """One maintenance statement (compaction, clean-up) as a writer: in turn, retried on conflict."""
        with self._serialised():
            return self._retry(lambda: self.con.execute(sql, params or []).fetchall())

    def _transaction(self, tables: dict[str, pa.Table], offsets: dict[OffsetKey, tuple[int | None, int]]) -> None:
        con = self.con
        with transaction(con):
            stored = self._stored(list(offsets))
            stale = {key: stored.get(key) for key, (expected, _) in offsets.items() if stored.get(key) != expected}
            if stale:
                raise Fenced(stale)
            for name, table in tables.items():
                if table.num_rows:
                    con.register("_rows", table)
                    con.execute(f"INSERT INTO lake.{name} BY NAME SELECT * FROM _rows")
                    con.unregister("_rows")
            if episode_status.is_kept(con):
                episode_status.refresh(con, tables)
            else:  # a writer that does not keep the table committed since
                log.warning("episode_status was not kept by every commit since it was filled; computing it again")
                episode_status.rebuild(con)
            if offsets:  # one statement each for all partitions: a DuckLake statement costs ~5-50 ms
                con.register("_offsets", pa.table({
                    "_log": [k[0] for k in offsets], "_topic": [k[1] for k in offsets],
                    "_partition": pa.array([k[2] for k in offsets], pa.int32()),
                    "next_offset": pa.array([new for _, new in offsets.values()], pa.int64()),
                    "writer": [self.writer] * len(offsets)}))
                con.execute(f"DELETE FROM lake.{lake.OFFSETS} WHERE (_log, _topic, _partition) IN "
                            "(SELECT _log, _topic, _partition FROM _offsets)")
                con.execute(f"INSERT INTO lake.{lake.OFFSETS} SELECT *, now() FROM _offsets")
                con.unregister("_offsets")
            # Any two commits conflict; status_at: episode_status is kept up to this commit.
            con.execute("UPDATE lake.lake_commits SET commits = commits + 1, status_at = commits + 1")

    def _stored(self, keys: list[OffsetKey]) -> dict[OffsetKey, int]:
        if not keys:
            return {}
        logs = sorted({k[0] for k in keys})
        rows = self.con.execute(f"SELECT _log, _topic, _partition, next_offset FROM lake.{lake.OFFSETS} "
                                f"WHERE _log IN ({', '.join('?' * len(logs))})", logs).fetchall()
        return {(lg, t, p): o for lg, t, p, o in rows}

    def _create_tables(self) -> None:
        con = self.con
        existing = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").fetchall()}
        if {*lake.TABLES, lake.OFFSETS, "lake_commits"} <= existing and episode_status.is_kept(con):
            self._add_new_columns()
            return
        with transaction(con):
            if not existing & set(lake.TABLES):  # a new lake: an operator's later choice is theirs
                con.execute(f"CALL lake.set_option('parquet_compression', '{_COMPRESSION}')")
            for name in lake.TABLES:
                if name not in existing:
                    con.register("_empty", lake.SCHEMAS[name].empty_table())
                    con.execute(f"CREATE TABLE lake.{name} AS SELECT * FROM _empty")
                    con.unregister("_empty")
                    con.execute(f"ALTER TABLE lake.{name} SET PARTITIONED BY ({lake.PARTITION_COLUMN})")
            if lake.OFFSETS not in existing:
                con.execute(f"CREATE TABLE lake.{lake.OFFSETS} (_log VARCHAR, _topic VARCHAR, _partition INTEGER, "
                            "next_offset BIGINT, writer VARCHAR, committed_at TIMESTAMPTZ)")
            if "lake_commits" not in existing:
                con.execute("CREATE TABLE lake.lake_commits (commits BIGINT, status_at BIGINT)")
                con.execute("INSERT INTO lake.lake_commits VALUES (0, 0)")
            con.execute("ALTER TABLE lake.lake_commits ADD COLUMN IF NOT EXISTS status_at BIGINT")
            if lake.STATUS not in existing or not episode_status.is_kept(con):  # just made, or an older writer
                episode_status.rebuild(con)
        log.info("created the lake's tables at %s", self.root)

    def rebuild_status(self) -> None:
        """episode_status computed again from every row (infra/episode_status.py), as a writer."""
        def rebuild():
            with transaction(self.con):
                episode_status.rebuild(self.con)

        with self._serialised():
            self._retry(rebuild)

    def _set_layout(self) -> None:
        """_TABLE_OPTIONS and _SORTED_BY, once per lake (in the writers' turn), each where the operator set
        nothing of their own: for the table, or for the lake or its schema (but for our own lake-wide
        compression); a sort order ever set for the table, even one reset since, is theirs."""
        con = self.con
        chosen = set()
        for name, value, scope, entry in con.execute(
                "SELECT option_name, value, scope, scope_entry FROM lake.options()").fetchall():
            ours = scope == "GLOBAL" and name == "parquet_compression" and value == _COMPRESSION
            if scope == "TABLE":
                chosen.add((entry, name))
            elif scope in ("GLOBAL", "SCHEMA") and not ours:  # the lake's one schema is `main`
                chosen.update((f"main.{table}", name) for table in _TABLE_OPTIONS)
        sorted_tables = {r[0] for r in con.execute(
            "SELECT t.table_name FROM __ducklake_metadata_lake.ducklake_sort_info s "
            "JOIN __ducklake_metadata_lake.ducklake_table t USING (table_id) WHERE t.end_snapshot IS NULL").fetchall()}
        options = [(table, name, value) for table, wanted in _TABLE_OPTIONS.items()
                   for name, value in wanted.items() if (f"main.{table}", name) not in chosen]
        sorts = {table: keys for table, keys in _SORTED_BY.items() if table not in sorted_tables}
        if not options and not sorts:
            return
        with transaction(con):
            for table, name, value in options:
                con.execute(f"CALL lake.set_option('{name}', ?, table_name => '{table}')", [value])
            for table, keys in sorts.items():
                con.execute(f"ALTER TABLE lake.{table} SET SORTED BY ({', '.join(keys)})")

    def _add_new_columns(self) -> None:
        """Tables created before a (nullable) column joined their schema get it, null in the old
        rows: `rewards.relabel_id`, `episode_starts.initial_observation`."""
        con = self.con
        found = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'lake'").fetchall()
        columns = {(t, c) for t, c in found}
        for name in lake.TABLES:
            missing = [f for f in lake.SCHEMAS[name] if (name, f.name) not in columns]
            if not missing:
                continue
            con.register("_empty", pa.schema(missing).empty_table())
            types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE _empty)").fetchall())
            con.unregister("_empty")
            for f in missing:
                con.execute(f"ALTER TABLE lake.{name} ADD COLUMN IF NOT EXISTS {f.name} {types[f.name]}")
                log.info("lake table %s: added column %s %s", name, f.name, types[f.name])

    def _retry(self, action, attempts: int = 20):
        """Run `action` again while the catalog reports a conflicting concurrent transaction."""
        import duckdb

        for attempt in range(attempts):
            try:
                return action()
            except duckdb.Error as exc:
                if not _is_conflict(exc) or attempt == attempts - 1:
                    raise
                delay = min(2.0, 0.02 * 2 ** attempt) * (0.5 + random.random())
                log.info("catalog conflict (%s); retrying in %.2fs", str(exc).splitlines()[0][:120], delay)
                time.sleep(delay)

    def _serialised(self):
        """Writers take turns (infra/catalogs.py): overlapping ones would conflict and retry."""
        return self._turns()


@contextmanager
def only_one(settings, purpose: str, refused=None):
    """The lake's lock of `purpose` (lake_lock) for the block, or `refused(path)` raised at
    once when another process holds it (LockHeld without `refused`). Only taking the lock is refused:
    a LockHeld from the work under it passes through as it is."""
    where = catalog(settings)
    with ExitStack() as stack:
        try:
            stack.enter_context(where.lock(purpose, wait=False))
        except LockHeld:
            if refused is None:
                raise
            raise refused(where.lock_name(purpose)) from None
        yield


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("conflict", "database is locked", "busy", "retry"))
