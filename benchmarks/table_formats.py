"""DuckLake vs Apache Iceberg for the lake's commit protocol, on MinIO, in one run: N commits of
the same steps batches (rows + the writer's offsets in the same commit), a plain pyarrow write of
the same rows as the baseline, and whether a racing second writer is fenced.

DuckLake runs our own protocol (infra/lake_catalog.py: rows and the `lake_offsets` row in one
transaction, fenced). Iceberg (pyiceberg, SQL catalog on SQLite) appends with the offsets in the
snapshot properties; its fence is the catalog's check that the table's snapshot is still the one
the writer loaded. Needs MinIO (`robolake infra up`) and `pip install 'pyiceberg[sql-sqlite,pyarrow]'`.

    python benchmarks/table_formats.py [--commits 10] [--rows 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402


def steps_batch(rows: int):
    """`rows` steps rows in the lake's schema, from synthetic episodes."""
    from consumers.lake_sink.projection import project
    from infra.bus.memory import MemoryBroker, MemoryBus
    from producers.synthetic import SyntheticConfig, produce
    from schemas import lake, topics

    import pyarrow as pa

    bus = MemoryBus(MemoryBroker(1))
    produce(bus.producer(), SyntheticConfig(episodes=max(1, rows // 100), steps=100, chunk_steps=100))
    reader = bus.consumer(None, [topics.EPISODES])
    parts = []
    while batch := reader.poll(0.2, max_records=10_000):
        parts += [rows for d in batch for name, rows in project(d, "bench") if name == lake.STEPS]
    return pa.concat_tables(parts).cast(lake.SCHEMAS[lake.STEPS]).slice(0, rows)


def ducklake(settings, batches) -> tuple[float, str]:
    from infra.lake_catalog import Fenced, LakeTables

    tables = LakeTables(settings, "bench")
    key = ("bench", "t", 0)
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        tables.commit({"steps": batch}, {key: (None if i == 0 else i, i + 1)})
    elapsed = time.perf_counter() - started
    zombie = LakeTables(settings, "zombie")  # read offset 10 long ago, commits as if nothing happened
    tables.commit({"steps": batches[0]}, {key: (len(batches), len(batches) + 1)})
    try:
        zombie.commit({"steps": batches[0]}, {key: (len(batches), len(batches) + 1)})
        fenced = "NOT fenced"
    except Fenced:
        fenced = "fenced (offset check in the same transaction)"
    return elapsed, fenced


def iceberg(settings, batches, catalog_dir: str) -> tuple[float, str]:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.exceptions import CommitFailedException

    host, port = settings.s3_host_port
    catalog = SqlCatalog("bench", **{
        "uri": f"sqlite:///{catalog_dir}/iceberg.db", "warehouse": f"{settings.lake_root}/iceberg",
        "s3.endpoint": f"http://{host}:{port}", "s3.access-key-id": settings.s3_access_key,
        "s3.secret-access-key": settings.s3_secret_key, "s3.path-style-access": "true", "s3.region": "us-east-1"})
    catalog.create_namespace("lake")
    steps = catalog.create_table("lake.steps", schema=batches[0].schema)
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        steps.append(batch, snapshot_properties={"robolake.offsets.t.0": str(i + 1)})
    elapsed = time.perf_counter() - started
    zombie = catalog.load_table("lake.steps")  # loaded now, commits after another writer did
    steps.append(batches[0], snapshot_properties={"robolake.offsets.t.0": str(len(batches) + 1)})
    try:
        zombie.append(batches[0], snapshot_properties={"robolake.offsets.t.0": str(len(batches) + 1)})
        fenced = "NOT fenced: the stale writer's append was committed"
    except CommitFailedException:
        fenced = "fenced (stale snapshot)"
    return elapsed, fenced


def main() -> None:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from infra.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = Settings.load(lake=f"s3://robolake/bench/formats-{run}")
    batch = steps_batch(args.rows)
    batches = [batch] * args.commits

    host, port = settings.s3_host_port
    fs = pafs.S3FileSystem(access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                           endpoint_override=f"{host}:{port}", scheme="http")
    started = time.perf_counter()
    for i in range(args.commits):
        pq.write_table(batch, f"robolake/bench/formats-{run}/plain/{i}.parquet", filesystem=fs, compression="zstd")
    plain_s = time.perf_counter() - started

    duck_s, duck_fence = ducklake(settings, batches)
    with tempfile.TemporaryDirectory() as tmp:
        ice_s, ice_fence = iceberg(settings, batches, tmp)
    print(f"{args.commits} commits of {args.rows} steps rows each, MinIO at {settings.s3_endpoint}\n")
    print(table(["writer", "seconds", "rows/s", "ratio to plain pyarrow write", "a racing stale writer"], [
        ["plain pyarrow write (no table format)", plain_s, args.commits * args.rows / plain_s, 1.0, "-"],
        ["DuckLake, rows + offsets in one transaction", duck_s, args.commits * args.rows / duck_s,
         plain_s / duck_s, duck_fence],
        ["Iceberg (pyiceberg), offsets in snapshot properties", ice_s, args.commits * args.rows / ice_s,
         plain_s / ice_s, ice_fence],
    ]))


if __name__ == "__main__":
    main()
