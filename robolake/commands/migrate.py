"""`robolake migrate`: move a lake's catalog to another database (PostgreSQL, or back to SQLite), or
convert a lake written by robolake 0.1."""

from __future__ import annotations

import sys

from infra.settings import Settings
from robolake.commands.common import UsageError, check_lake_writable, settings_flags


def register(commands, common) -> None:
    migrate = commands.add_parser(
        "migrate", parents=[settings_flags(catalog=False)],
        help="move the lake's catalog to PostgreSQL (or back), or convert a robolake 0.1 lake",
        description="--catalog URL: move the lake's catalog (ROBOLAKE_CATALOG, or --from-catalog, or the "
                    "default <lake>/catalog.sqlite) to URL, a PostgreSQL database or a SQLite file, every "
                    "snapshot kept; the data files stay where they are. Stop the lake's writers first. The old "
                    "catalog is kept aside (a SQLite file renamed <name>.moved-<time>, a PostgreSQL catalog's "
                    "tables in a schema robolake_moved_<time>); afterwards name the new one with --catalog or "
                    "ROBOLAKE_CATALOG.\n\n"
                    "--from-v1 LAKE: read a v1 lake (Parquet files named <topic>+<partition>+<offset>.parquet "
                    "under hive directories) and write every message it holds into --lake's tables, verifying "
                    "each episode's checksum on the way. Running it again adds only what is missing.")
    what = migrate.add_mutually_exclusive_group(required=True)
    what.add_argument("--catalog", metavar="URL", dest="to_catalog",
                      help="the catalog to move to: postgresql://user@host:port/database or sqlite:<file>")
    what.add_argument("--from-v1", metavar="LAKE", help="the v1 lake: a directory or s3://bucket/prefix")
    migrate.add_argument("--from-catalog", metavar="URL", dest="catalog",
                         help="with --catalog: the catalog to move from (default: the lake's)")
    migrate.set_defaults(run=run_migrate)


def run_migrate(args, settings: Settings) -> int:
    if args.to_catalog:
        return _move_catalog(settings, args.to_catalog)
    from tqdm import tqdm

    from consumers.lake_sink.migrate import migrate_v1

    source = args.from_v1.removeprefix("file://")
    if not source.startswith("s3://"):
        from pathlib import Path

        source = str(Path(source).expanduser().resolve())
    check_lake_writable(settings)
    with tqdm(unit="message", desc="migrating", disable=None, file=sys.stderr) as bar:
        stats = migrate_v1(source.rstrip("/"), settings, progress=bar.update)
    print(f"migrated {stats.messages} messages from {source} into {settings.lake_root}: "
          f"{stats.episodes_verified} episodes verified, {stats.episodes_failed} failed their v1 checksum")
    return 0


def _move_catalog(settings: Settings, target: str) -> int:
    from infra.catalog_move import move_catalog
    from infra.catalogs import CatalogURLError, check_url, open_catalog

    try:
        check_url(target)
    except CatalogURLError as exc:
        raise UsageError(f"--catalog: {exc}") from None
    moved = move_catalog(settings, target)
    print(f"moved the catalog of {settings.lake_root} from {moved.source} to {moved.target}: {moved.snapshots} "
          f"snapshots, {moved.data_files} data files, {moved.tables} catalog tables\n"
          f"use it with: --catalog {moved.target} (or ROBOLAKE_CATALOG)"
          + (", with its password (not shown)" if getattr(open_catalog(target), "password", None) else ""))
    return 0
