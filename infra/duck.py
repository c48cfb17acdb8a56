"""DuckDB connections to the lake, with their extensions loaded offline.

DuckDB would download extensions at run time; we cannot and should not. The PyPI packages
`duckdb-extension-<name>` (httpfs, ducklake, sqlite-scanner) each ship the
extension file for exactly one DuckDB version (duckdb is pinned to it in pyproject.toml), and we
LOAD that file with auto-install turned off.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from infra.settings import Settings


class DuckDBSetupError(RuntimeError):
    pass


# The extensions whose PyPI package has another name: postgres_scanner ships as `postgres`.
_PACKAGED_AS = {"postgres_scanner": "postgres"}


def extension_path(name: str) -> Path:
    """The file of extension `name` (httpfs, ducklake, sqlite_scanner, postgres_scanner) shipped
    by its PyPI package for the installed duckdb version."""
    import importlib

    import duckdb

    packaged = _PACKAGED_AS.get(name, name)
    package = "duckdb-extension-" + packaged.replace("_", "-")
    try:
        module = importlib.import_module("duckdb_extension_" + packaged)
    except ImportError:
        raise DuckDBSetupError(f"the {name} extension is missing: pip install {package} "
                               "at the version of duckdb (see pyproject.toml)") from None
    version = duckdb.__version__
    path = Path(module.__file__).parent / "extensions" / f"v{version}" / f"{packaged}.duckdb_extension"
    if not path.exists():
        raise DuckDBSetupError(
            f"duckdb {version} has no matching {name} extension in {path.parent.parent}; "
            f"install duckdb at the version of {package} (see pyproject.toml)")
    return path


def load_extension(con, name: str, home: Path | None = None) -> None:
    """LOAD extension `name`. One packaged under another name is loaded from a copy named as DuckDB
    expects (its entry point is named after the file), made once under `home`."""
    path = extension_path(name)
    if path.stem != name:
        import duckdb

        home = home or Path.home() / ".cache" / "robolake"
        copy = home / "duckdb-extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
        if not copy.exists() or copy.stat().st_size != path.stat().st_size:
            import shutil

            copy.parent.mkdir(parents=True, exist_ok=True)
            partial = copy.with_suffix(f".{os.getpid()}.partial")
            shutil.copyfile(path, partial)
            partial.replace(copy)  # atomic: a concurrent loader sees the whole file or none
        path = copy
    con.execute(f"LOAD {sql_str(str(path))}")


def connect(settings: Settings, database: str = ":memory:", read_only: bool = False):
    """A DuckDB connection where `s3://` paths on the configured endpoint and local paths query alike."""
    import duckdb

    con = duckdb.connect(database, read_only=read_only, config={
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    })
    load_extension(con, "httpfs")
    con.execute("SET TimeZone = 'UTC'")  # the lake's timestamps are UTC; show them so
    con.execute(
        f"CREATE OR REPLACE SECRET robolake_s3 (TYPE s3, KEY_ID {sql_str(settings.s3_access_key)}, "
        f"SECRET {sql_str(settings.s3_secret_key)}, ENDPOINT {sql_str(settings.s3_endpoint)}, "
        f"URL_STYLE 'path', USE_SSL {str(settings.s3_secure).lower()}, REGION 'us-east-1')")
    return con


def sql_str(value: str) -> str:
    """A SQL string literal: paths and names are data, never SQL."""
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def transaction(con):
    """BEGIN; COMMIT when the block ends, ROLLBACK when it raises (anything, Ctrl-C included)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # no transaction left to roll back
            pass
        raise
