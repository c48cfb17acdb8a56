"""Where the lake's catalog lives: a SQLite file (the embedded default) or a PostgreSQL database.

A catalog URL names it:
- `sqlite:<file>`: one machine. Writers take turns through a lock file beside it, and the
  locks of `robolake` (one trainer per run, one relabel at a time) are lock files there too.
- `postgresql://[user[:password]@]host[:port]/database[?param=value&…]` (or `postgres://`; the
  parameters are libpq's, e.g. sslmode=require): any number of machines that reach the server. The locks are the server's advisory locks, held by a session
  (a killed process's session ends, and its locks with it). Writers take turns by one of them,
  in the order they asked (without it, overlapping commits conflict, and a loser retrying with
  backoff was overtaken for up to 12 s by 3 others: benchmarks/catalog.py). The fence is still
  the server's transaction: a writer paused while holding its turn is waited for only
  WRITER_PATIENCE_S, and its late commit then conflicts and is fenced as without the lock.
  One lake per database; the data lives at the lake's URL (MinIO when more than one machine
  writes).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql", "postgres")


class CatalogURLError(ValueError):
    """A catalog URL we cannot use; the message says what a good one looks like."""


class CatalogUnavailable(ConnectionError):
    """The catalog's server cannot be reached, or refuses us; the message says which and why."""

    def __init__(self, message: str, missing_database: bool = False):
        super().__init__(message)
        self.missing_database = missing_database


class LockHeld(BlockingIOError):
    """Another process holds the lock (taken with wait=False); raised only when taking it, so a
    BlockingIOError from the work under the lock is never mistaken for it."""


def is_postgres(url: str) -> bool:
    return "://" in url and url.split("://", 1)[0].lower() in POSTGRES_SCHEMES


def _advisory_key(purpose: str) -> int:
    """The 64-bit advisory lock key of `purpose` (advisory locks are per database: one lake)."""
    return int.from_bytes(hashlib.sha256(f"robolake:{purpose}".encode()).digest()[:8], "big", signed=True)


def check_url(url: str) -> None:
    """CatalogURLError unless `url` is a catalog URL of a kind we open."""
    if url.startswith("sqlite:") and len(url) > len("sqlite:"):
        return
    if is_postgres(url):
        PostgresCatalog(url)
        return
    raise CatalogURLError(f"a catalog is 'sqlite:<file>' or 'postgresql://user@host:port/database', got {url!r}")


WRITER_PATIENCE_S = 10.0


class SQLiteCatalog:
    extension = "sqlite_scanner"

    def __init__(self, url: str):
        self.url = url
        self.path = Path(url.removeprefix("sqlite:"))
        self.local_dir: Path | None = self.path.parent  # written by writers, never by readers

    def __str__(self) -> str:
        return self.url

    @property
    def ducklake(self) -> str:
        return self.url

    @property
    def database_attach(self) -> tuple[str, str]:
        """(path, TYPE) for DuckDB to attach the catalog database itself, not as a DuckLake."""
        return str(self.path), "sqlite"

    def exists(self) -> bool:
        return self.path.exists()

    def moved_away(self) -> bool:
        """Whether `robolake migrate --catalog` moved this catalog elsewhere (and it was not made anew)."""
        return any(self.path.parent.glob(f"{self.path.name}.moved-*"))

    def create(self) -> None:
        """Before the first writer attaches. WAL: readers never block the writer. Python's sqlite3
        touches the file only here, before anyone has it open: two SQLite libraries in one
        process must never share an open file (their POSIX locks do not see each other)."""
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path) as db:
            db.execute("PRAGMA journal_mode=WAL")

    def lock_file(self, purpose: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{purpose}.lock" if purpose else f"{self.path.name}.lock")

    def lock_name(self, purpose: str) -> str:
        return str(self.lock_file(purpose))

    def lock(self, purpose: str, waiting: str | None = None, wait: bool = True):
        return file_lock(self.lock_file(purpose), waiting, wait)

    def create_database(self) -> None:
        """Nothing: the file is created by the first writer, in its turn."""

    def writer_turns(self) -> "_FileTurns":
        """Writers take turns (the SQLite file's own locks make overlapping ones fail anyway)."""
        return _FileTurns(self.lock_file(""))


class PostgresCatalog:
    extension = "postgres_scanner"
    local_dir = None

    def __init__(self, url: str):
        parts = urlsplit(url)
        database = parts.path.lstrip("/")
        if not parts.hostname or not database or "/" in database:
            raise CatalogURLError(f"a PostgreSQL catalog is 'postgresql://user@host:port/database', got {url!r}")
        try:
            port = parts.port or 5432
        except ValueError:
            raise CatalogURLError(f"the port of the catalog URL {url!r} is not a number") from None
        self.url, self.host, self.port, self.database = url, parts.hostname, port, unquote(database)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.params = dict(parse_qsl(parts.query, keep_blank_values=True))  # libpq's: sslmode, sslrootcert, …
        clashing = {"dbname", "host", "hostaddr", "port", "user", "password"} & set(self.params)
        if clashing:
            raise CatalogURLError(f"the catalog URL names {', '.join(sorted(clashing))} twice; "
                                  "give them in the URL's own places (postgresql://user@host:port/database)")

    def __str__(self) -> str:  # never the password
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in self.params.items())
        return f"postgresql://{user}{host}:{self.port}/{quote(self.database, safe='')}" + (f"?{query}" if query else "")

    def conninfo(self, database: str | None = None) -> str:
        """libpq's key=value form (DuckDB's postgres extension and psycopg both take it), for the
        catalog's database or `database` on its server."""
        fields = {"dbname": database or self.database, "host": self.host, "port": self.port,
                  "user": self.user, "password": self.password, **self.params}
        return " ".join(f"{k}={_libpq_value(v)}" for k, v in fields.items() if v is not None)

    @property
    def ducklake(self) -> str:
        return "postgres:" + self.conninfo()

    @property
    def database_attach(self) -> tuple[str, str]:
        return self.conninfo(), "postgres"

    def connect(self, database: str | None = None):
        """A psycopg connection (autocommit) to the catalog's database, or to `database` on its server."""
        from infra.optional import require

        psycopg = require("psycopg", "postgres")
        try:
            return psycopg.connect(self.conninfo(database), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            if self.password:
                reason = reason.replace(self.password, "***")
            missing = f'database "{database or self.database}" does not exist' in reason
            raise CatalogUnavailable(f"the catalog {self} cannot be reached: {reason[:300]}", missing) from None

    def exists(self) -> bool:
        try:
            with self.connect() as con:
                return con.execute("SELECT to_regclass('ducklake_metadata') IS NOT NULL").fetchone()[0]
        except CatalogUnavailable as exc:
            if exc.missing_database:  # no lake there yet
                return False
            raise

    def moved_away(self) -> bool:
        try:
            with self.connect() as con:
                return con.execute("SELECT count(*) FROM pg_namespace "
                                   "WHERE nspname LIKE 'robolake_moved_%'").fetchone()[0] > 0
        except CatalogUnavailable as exc:
            if exc.missing_database:
                return False
            raise

    def create(self) -> None:
        """The database, if the server lacks it (DuckLake creates its tables on the first attach)."""
        if not self.exists():
            self.create_database()

    def create_database(self) -> None:
        import psycopg

        try:
            self.connect().close()
            return
        except CatalogUnavailable as exc:
            if not exc.missing_database:
                raise
        with self.connect("postgres") as con:
            found = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone()
            if not found:
                try:
                    con.execute(f'CREATE DATABASE "{self.database.replace(chr(34), chr(34) * 2)}"')
                    log.info("created database %s on %s:%d", self.database, self.host, self.port)
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):  # another, at the same time
                    pass

    def lock_name(self, purpose: str) -> str:
        return f"advisory lock '{purpose}' on {self}"

    @contextmanager
    def lock(self, purpose: str, waiting: str | None = None, wait: bool = True):
        """The server's advisory lock of `purpose`, held by a session of our own for the block."""
        key = _advisory_key(purpose)
        with self.connect() as con:
            if not con.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
                if not wait:
                    raise LockHeld(f"the lock '{purpose}' of the catalog {self} is held by another process")
                if waiting:
                    log.info("%s", waiting)
                con.execute("SELECT pg_advisory_lock(%s)", [key])
            # The session's end releases it: a killed holder's too, and so does a server that ends the
            # session (a restart, idle_session_timeout, a pooler in transaction mode: not supported).
            yield
            try:
                con.execute("SELECT 1")
            except Exception:
                log.error("the lock '%s' on %s was lost while held: the server ended its session", purpose, self)

    def writer_turns(self) -> "_AdvisoryTurns":
        return _AdvisoryTurns(self)


def open_catalog(url: str) -> SQLiteCatalog | PostgresCatalog:
    check_url(url)
    return PostgresCatalog(url) if is_postgres(url) else SQLiteCatalog(url)


class _FileTurns:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self):
        return file_lock(self.path)

    def close(self) -> None:
        pass


class _AdvisoryTurns:
    """The writers' turn on a PostgreSQL catalog: its advisory lock, on a session kept for the writer's
    life. Past WRITER_PATIENCE_S of waiting, or with the session lost, the commit goes ahead
    without its turn (the transaction still fences it)."""

    KEY = _advisory_key("writers")

    def __init__(self, catalog: PostgresCatalog):
        self.catalog, self._con = catalog, None

    @contextmanager
    def __call__(self):
        held = self._take()
        try:
            yield
        finally:
            if held:
                try:
                    self._con.execute("SELECT pg_advisory_unlock(%s)", [self.KEY])
                except Exception:  # the session is gone, and the lock with it
                    self.close()

    def _take(self) -> bool:
        import psycopg

        try:
            if self._con is None or self._con.closed:
                self._con = self.catalog.connect()
                self._con.execute(f"SET lock_timeout = '{int(WRITER_PATIENCE_S * 1000)}ms'")
            self._con.execute("SELECT pg_advisory_lock(%s)", [self.KEY])
            return True
        except psycopg.errors.LockNotAvailable:
            log.warning("another writer of %s has held its turn for over %.0fs (paused?); committing without "
                        "waiting for it", self.catalog, WRITER_PATIENCE_S)
        except (psycopg.Error, CatalogUnavailable) as exc:  # the commit itself then fails, and is retried
            log.warning("no writer's turn on %s (%s); committing without it", self.catalog, str(exc).strip()[:200])
            self.close()
        return False

    def close(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None


def _libpq_value(value) -> str:
    text = str(value)
    if text and not any(c in text for c in " '\\"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextmanager
def file_lock(path: Path, waiting: str | None = None, wait: bool = True):
    """Hold an exclusive lock on `path` (other processes on this machine wait); `waiting` is logged
    when someone else holds it. `wait=False`: LockHeld instead of waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockHeld(f"{path} is held by another process") from None
            if waiting:
                log.info("%s", waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock; a killed process releases it too
