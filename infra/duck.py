"""DuckDB connections to the lake, with `httpfs` loaded offline.

DuckDB would download extensions at run time; we cannot and should not. The PyPI package
`duckdb-extension-httpfs` ships the extension file for exactly one DuckDB version (duckdb is
pinned to it in pyproject.toml), and we LOAD that file with auto-install turned off.
"""

from __future__ import annotations

from pathlib import Path

from robolake.settings import Settings


class DuckDBSetupError(RuntimeError):
    pass


def httpfs_extension_path() -> Path:
    import duckdb

    try:
        import duckdb_extension_httpfs
    except ImportError:
        raise DuckDBSetupError("the httpfs extension is missing: pip install duckdb-extension-httpfs "
                               "at the version of duckdb (see pyproject.toml)") from None
    version = duckdb.__version__
    path = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{version}" / "httpfs.duckdb_extension"
    if not path.exists():
        raise DuckDBSetupError(
            f"duckdb {version} has no matching httpfs extension in {path.parent.parent}; "
            "install duckdb at the version of duckdb-extension-httpfs (see pyproject.toml)")
    return path


def connect(settings: Settings, database: str = ":memory:", read_only: bool = False):
    """A DuckDB connection where `s3://` paths on the configured endpoint and local paths query alike."""
    import duckdb

    con = duckdb.connect(database, read_only=read_only, config={
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    })
    con.execute(f"LOAD '{httpfs_extension_path()}'")
    con.execute("SET TimeZone = 'UTC'")  # the lake's timestamps are UTC; show them so
    con.execute(
        f"CREATE OR REPLACE SECRET robolake_s3 (TYPE s3, KEY_ID {_sql_str(settings.s3_access_key)}, "
        f"SECRET {_sql_str(settings.s3_secret_key)}, ENDPOINT {_sql_str(settings.s3_endpoint)}, "
        f"URL_STYLE 'path', USE_SSL {str(settings.s3_secure).lower()}, REGION 'us-east-1')")
    return con


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
