"""The lake's catalog, SQLite vs PostgreSQL, under concurrent writers (issue 28).

For each catalog and each number of writers N: N separate processes, each a LakeTables on one
fresh lake (data files on MinIO, a fresh catalog: a SQLite file, or a fresh PostgreSQL database),
start together and each makes K commits of the same small steps batch (1,000 rows of the lake's
`steps` schema, from synthetic episodes through the sink's projection), every writer moving its own
(log, topic, partition) offset key, so no writer is ever fenced. Measured: the wall time of each
.commit (waiting for the SQLite writers' lock and conflict retries included), commits/s across the
N writers (all commits / from the common start to the last writer's end), and the catalog conflicts
retried (every commit bumps one row, so any two overlapping commits conflict: SQLite writers take
turns and should see none, PostgreSQL writers overlap and retry). Then lake_ingest.py's
producer -> Kafka -> sink -> MinIO measurement once per catalog, for the sink's ratio to a plain
pyarrow write. Needs the stack (`robolake infra up`) and a PostgreSQL server that lets us create
databases.

    python benchmarks/catalog.py [--commits 50] [--rows 1000] [--writers 1 2 4] [--catalogs sqlite postgres]
        [--postgres postgresql://robolake@127.0.0.1:25432] [--s3-endpoint 127.0.0.1:29000]
        [--bus kafka://127.0.0.1:29092] [--ingest-episodes 400]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile, table, write_result  # noqa: E402


class _Conflicts(logging.Handler):
    """Counts LakeTables' "catalog conflict ... retrying" log records (one per retry)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.count, self.first = 0, ""

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("catalog conflict"):
            self.count += 1
            self.first = self.first or message


def writer(index: int, settings, batch, commits: int, barrier, results) -> None:
    """One writer process: attach, wait for the others, then `commits` timed commits."""
    from infra.lake_catalog import LakeTables

    conflicts = _Conflicts()
    logger = logging.getLogger("infra.lake_catalog")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(conflicts)
    try:
        tables = LakeTables(settings, f"bench-{index}")
        key = ("bench", f"writer-{index}", 0)
        barrier.wait()
        started, latencies, most = time.monotonic(), [], 0
        for i in range(commits):
            t0, before = time.perf_counter(), conflicts.count
            tables.commit({"steps": batch}, {key: (None if i == 0 else i, i + 1)})
            latencies.append(time.perf_counter() - t0)
            most = max(most, conflicts.count - before)
        results.put({"index": index, "started": started, "ended": time.monotonic(), "latencies": latencies,
                     "retries": conflicts.count, "most_retries": most, "first_conflict": conflicts.first})
        tables.close()
    except BaseException as exc:  # noqa: BLE001 - reported, the parent says which writer failed
        barrier.abort()
        results.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})


def fresh_catalog(kind: str, postgres: str, tmp: str, run: str) -> str:
    if kind == "sqlite":
        return f"sqlite:{tmp}/{run}/catalog.sqlite"
    from infra.catalogs import PostgresCatalog

    url = f"{postgres.rstrip('/')}/bench_catalog_{run}"
    PostgresCatalog(url).create()
    return url


def drop_database(url: str) -> None:
    from infra.catalogs import PostgresCatalog

    where = PostgresCatalog(url)
    with where.connect("postgres") as con:
        con.execute(f'DROP DATABASE IF EXISTS "{where.database}" WITH (FORCE)')


def measure(kind: str, writers: int, args, batch, tmp: str) -> dict:
    """N writer processes on one fresh lake and catalog: commits/s, p50/p99 commit latency, retries."""
    from infra.lake_catalog import LakeTables
    from infra.settings import Settings

    run = uuid.uuid4().hex[:8]
    url = fresh_catalog(kind, args.postgres, tmp, run)
    settings = Settings.load(lake=f"s3://robolake/bench/catalog-{run}", catalog=url, s3_endpoint=args.s3_endpoint)
    try:
        LakeTables(settings, "setup").close()  # the tables exist before the writers start: not timed
        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(writers), ctx.Queue()
        procs = [ctx.Process(target=writer, args=(i, settings, batch, args.commits, barrier, results))
                 for i in range(writers)]
        for p in procs:
            p.start()
        reports = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
    finally:
        if kind == "postgres":
            drop_database(url)
    failed = [r["error"] for r in reports if "error" in r]
    if failed:
        raise RuntimeError(f"{kind}, {writers} writers: {failed}")
    latencies = [s for r in reports for s in r["latencies"]]
    span = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    retries = sum(r["retries"] for r in reports)
    return {"commits_per_s": len(latencies) / span, "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99), "mean_s": statistics.mean(latencies), "max_s": max(latencies),
            "commits": len(latencies), "seconds": span, "conflict_retries": retries,
            "retries_per_commit": retries / len(latencies),
            "most_retries_of_one_commit": max(r["most_retries"] for r in reports),
            "writer_seconds": sorted(round(r["ended"] - r["started"], 2) for r in reports),
            "first_conflict": next((r["first_conflict"] for r in reports if r["first_conflict"]), "")}


def ingest(args, catalog: str | None) -> tuple[float, float]:
    """lake_ingest.py's sink stage, in a child: (its ratio to a plain pyarrow write, its seconds)."""
    command = [sys.executable, str(Path(__file__).parent / "lake_ingest.py"), "--bus", args.bus,
               "--episodes", str(args.ingest_episodes)] + (["--catalog", catalog] if catalog else [])
    env = {**os.environ, "ROBOLAKE_S3_ENDPOINT": args.s3_endpoint}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    row = next((line for line in out.stdout.splitlines() if line.startswith("| Kafka -> lake sink")), None)
    if out.returncode or row is None:
        raise RuntimeError(f"lake_ingest.py failed ({out.returncode}): {out.stderr[-2000:]}")
    print(out.stdout.splitlines()[0])
    cells = row.strip("| ").split("|")
    return float(cells[-1]), float(cells[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=50, help="commits per writer")
    parser.add_argument("--rows", type=int, default=1000, help="steps rows per commit")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4], help="concurrent writer processes")
    parser.add_argument("--catalogs", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--postgres", default="postgresql://robolake@127.0.0.1:25432",
                        help="a PostgreSQL server (URL without the database): a fresh database per measurement")
    parser.add_argument("--s3-endpoint", default="127.0.0.1:29000", help="MinIO host:port (bucket robolake)")
    parser.add_argument("--bus", default="kafka://127.0.0.1:29092", help="Kafka for the lake_ingest.py runs")
    parser.add_argument("--ingest-episodes", type=int, default=400, help="lake_ingest.py's episodes; 0: skip it")
    args = parser.parse_args()

    from table_formats import steps_batch

    batch = steps_batch(args.rows)
    figures: dict = {kind: {} for kind in args.catalogs}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.catalogs:
            for n in args.writers:
                f = figures[kind][str(n)] = measure(kind, n, args, batch, tmp)
                rows.append([kind, n, f["commits_per_s"], f["p50_s"], f["p99_s"], f["max_s"],
                             f["conflict_retries"], f["most_retries_of_one_commit"]])
                print(f"{kind} x{n}: {f['commits_per_s']:.1f} commits/s, p50 {f['p50_s']:.3f} s, "
                      f"{f['conflict_retries']} retries", flush=True)
    ratios = {}
    if args.ingest_episodes:
        from infra.catalogs import PostgresCatalog

        ratios["ingest_ratio_sqlite"], ratios["ingest_sink_s_sqlite"] = ingest(args, None)
        url = f"{args.postgres.rstrip('/')}/bench_ingest_{uuid.uuid4().hex[:8]}"
        PostgresCatalog(url).create()
        try:
            ratios["ingest_ratio_postgres"], ratios["ingest_sink_s_postgres"] = ingest(args, url)
        finally:
            drop_database(url)

    print(f"\n{args.commits} commits per writer of {args.rows} steps rows ({batch.nbytes / 1e6:.2f} MB in memory), "
          f"lake on MinIO {args.s3_endpoint}, one process per writer, each on its own offset key\n")
    print(table(["catalog", "writers", "commits/s (all writers)", "p50 commit s", "p99 commit s", "max commit s",
                 "conflict retries", "most retries of one commit"], rows))
    if ratios:
        print(f"\nlake_ingest.py --episodes {args.ingest_episodes}, Kafka -> lake sink -> MinIO: "
              + ", ".join(f"{kind} {ratios['ingest_ratio_' + kind]:.3g}x a plain pyarrow write "
                          f"({ratios['ingest_sink_s_' + kind]:.2f} s)" for kind in ("sqlite", "postgres")))
    print(write_result("catalog", {"commits_per_writer": args.commits, "rows_per_commit": args.rows,
                                   "figures": figures, **ratios}))


if __name__ == "__main__":
    main()
