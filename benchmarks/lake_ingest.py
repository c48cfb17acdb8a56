"""End-to-end ingest: producer -> Kafka -> lake sink -> DuckLake tables on MinIO, against a plain
pyarrow write of the same steps to MinIO in the same run. Needs the stack (`robolake infra up`);
`--profile` prints where the sink's time goes; `--catalog` puts the lake's catalog elsewhere than
the default SQLite file (e.g. a PostgreSQL database: postgresql://user@host:port/database).

    python benchmarks/lake_ingest.py [--episodes 400] [--steps 100] [--bus kafka://host:port] [--catalog URL] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table, timed, write_result  # noqa: E402


def main() -> None:
    from consumers.lake_sink.sink import LakeSink
    from infra.bus.kafka import KafkaBus
    from infra.lake_catalog import catalog
    from infra.lake_sql import open_lake
    from infra.settings import Settings
    from producers.synthetic import SyntheticConfig, produce

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--bus", default="kafka://127.0.0.1:9092")
    parser.add_argument("--catalog", default=None, help="the lake's catalog URL (default: the settings' catalog)")
    parser.add_argument("--profile", action="store_true", help="cProfile the sink stage")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = Settings.load(bus=args.bus, lake=f"s3://robolake/bench/ingest-{run}", catalog=args.catalog)
    bus = KafkaBus(settings.kafka_bootstrap, settings.max_message_bytes, settings.partitions)
    topic = f"bench.ingest.{run}"
    bus.ensure_topics([topic])

    # Phase 1: the producer alone fills the topic. Phase 2: the sink alone drains it into MinIO.
    started = time.perf_counter()
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=args.episodes, steps=args.steps, chunk_steps=50), topic=topic)
    producer.close()
    produce_s = time.perf_counter() - started
    total_steps = args.episodes * args.steps

    sink = LakeSink(settings, bus=bus, group=f"bench-{run}", source_topics=[topic], flush_seconds=2.0)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    sink.run(until_idle_s=0.5)
    sink_s = time.perf_counter() - started - 0.5  # minus the idle wait that ends the run
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)

    con = open_lake(settings, read_only=False)
    lake_bytes = sum(con.execute(f"SELECT coalesce(sum(data_file_size_bytes), 0) FROM ducklake_list_files('lake', '{t}')")
                     .fetchone()[0] for t in ("steps", "chunks", "episode_starts", "episode_ends"))
    steps = con.sql("SELECT * FROM steps").to_arrow_table()

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    host, port = settings.s3_host_port
    fs = pafs.S3FileSystem(access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                           endpoint_override=f"{host}:{port}", scheme="http")
    # The median of 3: one write varied 0.16-0.31 s on this machine, which alone moved the ratios 2x.
    plain_s = timed(lambda: pq.write_table(steps, f"robolake/bench/plain-{run}/steps.parquet", filesystem=fs,
                                           compression="zstd"), repeat=3)

    print(f"{args.episodes} episodes x {args.steps} steps = {total_steps} steps, {settings.partitions} partitions, "
          f"lake on MinIO {settings.s3_endpoint}, {lake_bytes / 1e6:.1f} MB of Parquet, "
          f"catalog {catalog(settings)}\n")
    end_to_end = produce_s + sink_s
    print(table(["stage", "seconds", "steps/s", "MB/s (lake Parquet)", "ratio to plain pyarrow write"], [
        ["synthetic producer -> Kafka", produce_s, total_steps / produce_s, "-", plain_s / produce_s],
        ["Kafka -> lake sink -> MinIO", sink_s, total_steps / sink_s, lake_bytes / sink_s / 1e6, plain_s / sink_s],
        ["end to end (both stages)", end_to_end, total_steps / end_to_end, lake_bytes / end_to_end / 1e6,
         plain_s / end_to_end],
        ["plain pyarrow write of the same steps to MinIO", plain_s, total_steps / plain_s,
         lake_bytes / plain_s / 1e6, 1.0],
    ]))
    print("wrote", write_result("lake_ingest", {
        "episodes": args.episodes, "steps": args.steps, "catalog": type(catalog(settings)).__name__,
        "produce_seconds": produce_s, "sink_seconds": sink_s, "plain_seconds": plain_s,
        "producer_ratio": plain_s / produce_s, "sink_ratio": plain_s / sink_s, "end_to_end_ratio": plain_s / end_to_end,
        "goals": {"sink_ratio": 0.5, "end_to_end_ratio": 0.3}}))


if __name__ == "__main__":
    main()
