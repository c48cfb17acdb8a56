"""Catalog URLs, and moving a lake's catalog between SQLite files (the PostgreSQL side runs in
tests/integration/test_catalog_postgres.py, on a real server)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from consumers.lake_sink.sink import LakeSink
from infra.bus.memory import MemoryBus
from infra.catalog_move import CatalogMoveError, move_catalog
from infra.catalogs import CatalogURLError, LockHeld, PostgresCatalog, open_catalog
from infra.lake_catalog import CatalogMismatch, LakeNotFound, LakeTables, attach, catalog, lake_exists, only_one
from infra.settings import Settings, SettingsError
from producers.synthetic import SyntheticConfig, produce
from tests.lake_helpers import lake_fingerprint


def test_a_postgres_url_becomes_libpq_fields_and_never_shows_its_password():
    where = PostgresCatalog("postgresql://ana:s3cr%20t@db.lab:6543/lakes")
    assert (where.host, where.port, where.database, where.user, where.password) == ("db.lab", 6543, "lakes", "ana", "s3cr t")
    assert where.conninfo() == "dbname=lakes host=db.lab port=6543 user=ana password='s3cr t'"
    assert where.conninfo("postgres").startswith("dbname=postgres ")
    assert "s3cr" not in str(where) and str(where) == "postgresql://ana@db.lab:6543/lakes"
    assert PostgresCatalog("postgres://db/lakes").port == 5432
    tls = PostgresCatalog("POSTGRESQL://ana@db/lakes?sslmode=require&sslrootcert=/etc/ca.pem")  # libpq's parameters kept
    assert tls.conninfo().endswith("sslmode=require sslrootcert=/etc/ca.pem") and str(tls).endswith("?sslmode=require&"
                                                                                                  "sslrootcert=/etc/ca.pem")
    with pytest.raises(CatalogURLError, match="twice"):
        PostgresCatalog("postgresql://ana@db/lakes?host=other")


@pytest.mark.parametrize("url", ["mysql://h/db", "postgresql://h", "postgresql:///db", "postgresql://h:x/db",
                                 "sqlite:", "catalog.sqlite"])
def test_unusable_catalog_urls_are_refused_with_the_forms_we_take(url):
    with pytest.raises(CatalogURLError):
        open_catalog(url)
    with pytest.raises(SettingsError, match="catalog"):
        Settings(catalog=url)


def test_the_default_catalog_is_a_sqlite_file_in_the_lake_and_its_locks_are_files_beside_it(tmp_path):
    settings = Settings.load(lake=f"file://{tmp_path}/lake")
    where = catalog(settings)
    assert where.url == f"sqlite:{tmp_path}/lake/catalog.sqlite" and where.local_dir == tmp_path / "lake"
    with only_one(settings, "run-a"):
        with pytest.raises(RuntimeError, match=r"catalog\.sqlite\.run-a\.lock"):
            with only_one(settings, "run-a", lambda name: RuntimeError(f"held: {name}")):
                pass
        with pytest.raises(LockHeld):
            with only_one(settings, "run-a"):
                pass


def _lake_with_episodes(tmp_path) -> Settings:
    settings = Settings.load(lake=f"file://{tmp_path}/lake", home=str(tmp_path / "home"))
    bus = MemoryBus()
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=4, steps=20, chunk_steps=10, seed=3))
    producer.close()
    LakeSink(settings, bus=bus, flush_seconds=0.2).run(until_idle_s=0.3)
    return settings


def test_a_catalog_moved_to_another_file_and_back_reads_the_same_and_the_old_one_is_kept_aside(tmp_path):
    settings = _lake_with_episodes(tmp_path)
    before = lake_fingerprint(settings)
    elsewhere = settings.replace(catalog=f"sqlite:{tmp_path}/elsewhere/catalog.sqlite")
    moved = move_catalog(settings, elsewhere.catalog)
    assert (moved.snapshots, moved.tables) >= (2, 10) and moved.data_files > 0
    assert not lake_exists(settings) and lake_fingerprint(elsewhere) == before
    assert list((tmp_path / "lake").glob("catalog.sqlite.moved-*")), "the old catalog is renamed, not deleted"
    with pytest.raises(LakeNotFound, match="migrate --catalog"):  # a command still naming the old one is told
        attach(settings, read_only=True)
    move_catalog(elsewhere, settings.catalog or f"sqlite:{tmp_path}/lake/catalog.sqlite")
    assert lake_fingerprint(settings) == before


def test_a_move_onto_a_lake_or_onto_itself_is_refused_and_changes_nothing(tmp_path):
    settings = _lake_with_episodes(tmp_path)
    other = _lake_with_episodes(tmp_path / "other")
    with pytest.raises(CatalogMoveError, match="already holds"):
        move_catalog(settings, catalog(other).url)
    with pytest.raises(CatalogMoveError, match="already"):
        move_catalog(settings, catalog(settings).url)
    assert lake_exists(settings) and lake_exists(other)


def test_a_writer_never_starts_a_second_catalog_over_a_lakes_files(tmp_path):
    """A wrong or new catalog URL for a lake that has data: refused, or compaction under that empty
    catalog would delete every file it does not list."""
    settings = _lake_with_episodes(tmp_path)
    with pytest.raises(CatalogMismatch, match="holds a lake's data files"):
        LakeTables(settings.replace(catalog=f"sqlite:{tmp_path}/wrong/catalog.sqlite"), "sink")
    assert not (tmp_path / "wrong" / "catalog.sqlite").exists()
    move_catalog(settings, f"sqlite:{tmp_path}/moved/catalog.sqlite")
    with pytest.raises(LakeNotFound, match="moved it"):  # a writer still naming the moved catalog
        LakeTables(settings, "sink")
    assert not (tmp_path / "lake" / "catalog.sqlite").exists()


def test_a_move_goes_on_into_an_empty_leftover_but_not_from_another_lakes_catalog(tmp_path):
    settings = _lake_with_episodes(tmp_path)
    before = lake_fingerprint(settings)
    leftover = settings.replace(catalog=f"sqlite:{tmp_path}/target/catalog.sqlite")
    attach(leftover, read_only=False, over_existing_data=True).close()  # a move killed after creating it
    move_catalog(settings, leftover.catalog)
    assert lake_fingerprint(leftover) == before
    stranger = Settings.load(lake=f"file://{tmp_path}/stranger", home=str(tmp_path / "home"))
    with pytest.raises(CatalogMoveError, match="name that lake with --lake"):
        move_catalog(stranger.replace(catalog=leftover.catalog), f"sqlite:{tmp_path}/third/catalog.sqlite")
    assert lake_fingerprint(leftover) == before


def test_migrate_with_a_bad_catalog_url_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "robolake.cli", "migrate", "--catalog", "mysql://x/y",
                             "--lake", f"file://{tmp_path}/lake"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "postgresql://" in result.stderr
