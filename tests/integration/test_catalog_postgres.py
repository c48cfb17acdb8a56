"""The lake's catalog on the stack's PostgreSQL: the same lake as on SQLite, moved there and back with
every snapshot, and the locks of `robolake` as the server's advisory locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from consumers.lake_sink.sink import LakeSink
from infra.bus.kafka import KafkaBus
from infra.catalogs import LockHeld
from infra.lake_catalog import lake_exists, lake_lock
from infra.process import wait_until
from producers.synthetic import SyntheticConfig, produce
from tests.lake_helpers import count, lake_fingerprint


def _lake(stack, name: str, catalog: str = ""):
    return stack.replace(lake=f"s3://{stack.lake_bucket}/tests/{name}-{uuid.uuid4().hex[:8]}", catalog=catalog)


def _topic_with(stack, episodes: int, seed: int, topic: str | None = None) -> tuple[KafkaBus, str]:
    bus = KafkaBus(stack.kafka_bootstrap, stack.max_message_bytes, stack.partitions)
    topic = topic or f"catalog.pg.{uuid.uuid4().hex[:6]}"
    bus.ensure_topics([topic])
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=episodes, steps=30, chunk_steps=10, seed=seed,
                                      experiment_id="catalog"), topic=topic)
    producer.close()
    return bus, topic


def _sink(settings, bus, topic) -> None:
    LakeSink(settings, bus=bus, group=f"g-{uuid.uuid4().hex[:6]}", source_topics=[topic],
             flush_seconds=0.2).run(until_idle_s=2)


def _cli(settings, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROBOLAKE_BUS": settings.bus, "ROBOLAKE_LAKE": settings.lake, "ROBOLAKE_S3_ENDPOINT": settings.s3_endpoint,
           "ROBOLAKE_CATALOG": settings.catalog}
    return subprocess.run([sys.executable, "-m", "robolake.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_sink_writes_the_same_lake_on_postgres_as_on_sqlite_and_sql_reads_it(stack, pg_catalog):
    bus, topic = _topic_with(stack, 8, seed=1)
    on_sqlite, on_postgres = _lake(stack, "sqlite"), _lake(stack, "pg", pg_catalog())
    _sink(on_sqlite, bus, topic)
    _sink(on_postgres, bus, topic)
    assert lake_fingerprint(on_postgres) == lake_fingerprint(on_sqlite)
    assert count(on_postgres, "SELECT count(*) FROM episodes") == 8
    answer = _cli(on_postgres, "sql", "--format", "csv", "SELECT count(*) AS n FROM steps")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split()[-1] == str(8 * 30)
    compacted = _cli(on_postgres, "compact", "--keep-seconds", "0")  # DuckLake's maintenance on the server too
    assert compacted.returncode == 0, compacted.stderr
    assert lake_fingerprint(on_postgres) == lake_fingerprint(on_sqlite)
    wrong = _cli(on_postgres.replace(catalog=pg_catalog()), "sink", "--topics", topic, "--until-idle", "1")
    assert wrong.returncode == 1 and "a new catalog over them is refused" in wrong.stderr, wrong.stderr
    assert lake_fingerprint(on_postgres) == lake_fingerprint(on_sqlite)  # a second catalog would have lost it


def test_migrate_moves_a_lake_to_postgres_and_back_with_every_snapshot(stack, pg_catalog, tmp_path):
    bus, topic = _topic_with(stack, 5, seed=2)
    settings = _lake(stack, "moved")
    _sink(settings, bus, topic)
    before, snapshots = lake_fingerprint(settings), _snapshots(settings)
    target = pg_catalog()
    moved = _cli(settings, "migrate", "--catalog", target)
    assert moved.returncode == 0, moved.stderr
    assert f"use it with: --catalog {target}" in moved.stdout
    assert not lake_exists(settings), "the SQLite catalog is retired (renamed), not left for a writer to use"
    on_postgres = settings.replace(catalog=target)
    assert lake_fingerprint(on_postgres) == before
    _assert_kept(snapshots, _snapshots(on_postgres))

    _topic_with(stack, 3, seed=3, topic=topic)  # written on: the moved lake goes on from its offsets
    _sink(on_postgres, bus, topic)
    assert count(on_postgres, "SELECT count(*), count(DISTINCT episode_id) FROM episodes") == 8
    history = _snapshots(on_postgres)
    after = lake_fingerprint(on_postgres)

    back = settings.replace(catalog=f"sqlite:{tmp_path / 'back' / 'catalog.sqlite'}")
    moved = _cli(on_postgres, "migrate", "--catalog", back.catalog)
    assert moved.returncode == 0, moved.stderr
    assert not lake_exists(on_postgres)
    assert lake_fingerprint(back) == after
    _assert_kept(history, _snapshots(back))
    refused = _cli(on_postgres, "sql", "SELECT 1 FROM episodes")
    assert refused.returncode == 1 and "migrate --catalog" in refused.stderr, refused.stderr


def _assert_kept(before: list[tuple], after: list[tuple]) -> None:
    """Every snapshot kept, with its time; at most one more: the move's flush of rows inlined in the catalog."""
    assert after[:len(before)] == before
    assert len(after) - len(before) <= 1


def _snapshots(settings) -> list[tuple]:
    from infra.lake_catalog import attach

    con = attach(settings, read_only=True)
    try:
        return con.execute("SELECT snapshot_id, snapshot_time FROM ducklake_snapshots('lake') ORDER BY 1").fetchall()
    finally:
        con.close()


def test_locks_are_the_servers_advisory_locks_and_a_killed_holder_releases_its_own(stack, pg_catalog, tmp_path):
    settings = _lake(stack, "locks", pg_catalog())
    with lake_lock(settings, "run-x", wait=False):
        with pytest.raises(LockHeld, match="run-x"):
            with lake_lock(settings, "run-x", wait=False):
                pass
        with lake_lock(settings, "run-y", wait=False):  # another purpose is another lock
            pass
    ready = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from infra.settings import Settings\n"
        "from infra.lake_catalog import lake_lock\n"
        f"with lake_lock(Settings.load(lake={settings.lake!r}, catalog={settings.catalog!r}), 'run-x'):\n"
        f"    pathlib.Path({str(ready)!r}).touch(); time.sleep(300)\n")], cwd=os.getcwd())
    try:
        assert wait_until(ready.exists, 60), "the holder must take the lock"
        with pytest.raises(LockHeld):
            with lake_lock(settings, "run-x", wait=False):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        deadline = time.monotonic() + 30  # the server ends the killed process's session
        while True:
            try:
                with lake_lock(settings, "run-x", wait=False):
                    break
            except LockHeld:
                assert time.monotonic() < deadline, "a killed holder's lock must be released"
                time.sleep(0.2)
    finally:
        holder.kill()


def test_first_writers_starting_together_on_a_new_database_all_open_the_lake(stack, pg_catalog):
    """Many machines start their sinks at once: the database and DuckLake's tables are created once."""
    from infra.catalogs import PostgresCatalog
    from infra.lake_catalog import LakeTables

    settings = _lake(stack, "first", pg_catalog())
    where = PostgresCatalog(settings.catalog)
    with where.connect("postgres") as con:  # a database nobody has created yet
        con.execute(f'DROP DATABASE "{where.database}" WITH (FORCE)')
    opened, failed, start = [], [], threading.Barrier(4)

    def writer(index: int) -> None:
        start.wait()
        try:
            opened.append(LakeTables(settings, f"w{index}"))
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failed.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for tables in opened:
        tables.close()
    assert not failed and len(opened) == 4, failed
    assert count(settings, "SELECT count(*) FROM episodes") == 0
