"""Freshness: seconds from an episode's `episode.ended` being acknowledged by Kafka to the episode
showing in `robolake sql` (the episodes view over MinIO), at a steady load (after a warm-up episode:
the sink's start is not measured), for two flush intervals. Baseline in the same run: the same
episodes' latency to a plain Kafka consumer. Needs the stack (`robolake infra up`).

    python benchmarks/lake_freshness.py [--seconds 30] [--rate 4] [--flush 1 5] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile, table, write_result  # noqa: E402


def measure(settings, bus, flush_s: float, seconds: float, rate: float, steps: int, postgres: str | None = None) -> list:
    from consumers.lake_sink.sink import LakeSink
    from infra.lake_catalog import LakeNotFound
    from infra.lake_sql import open_lake
    from producers.synthetic import SyntheticConfig, produce

    run = uuid.uuid4().hex[:8]
    topic = f"bench.fresh.{run}"
    bus.ensure_topics([topic])
    lake = settings.replace(lake=f"s3://robolake/bench/fresh-{run}",
                            catalog=f"{postgres.rstrip('/')}/fresh_{run}" if postgres else "")
    ended_at: dict[str, float] = {}
    on_bus: dict[str, float] = {}
    visible: dict[str, float] = {}
    stop = threading.Event()

    def producer_loop():
        producer = bus.producer()
        for i in range(int(seconds * rate)):
            (episode,) = produce(producer, SyntheticConfig(episodes=1, steps=steps, chunk_steps=50, seed=i),
                                 topic=topic)  # produce() flushes: acks=all for every message
            ended_at[episode] = time.monotonic()
            time.sleep(max(0.0, 1 / rate - 0.01))
        producer.close()

    def bus_loop():
        reader = bus.consumer(None, [topic])
        while not stop.is_set():
            for d in reader.poll(0.2):
                if d.batch.type == "episode.ended":
                    on_bus.setdefault(d.key, time.monotonic())
        reader.close()

    sink = LakeSink(lake, bus=bus, group=f"fresh-{run}", source_topics=[topic], flush_seconds=flush_s)
    threads = [threading.Thread(target=sink.run, kwargs={"stop": stop}), threading.Thread(target=bus_loop)]
    for t in threads:
        t.start()
    # A warm-up episode first: the sink's start (creating the lake, joining its group) is not steady load.
    warm_up = bus.producer()
    produce(warm_up, SyntheticConfig(episodes=1, steps=steps, chunk_steps=50, seed=10**6), topic=topic)
    warm_up.close()
    con = None  # one reader, as a dashboard keeps: every query sees the latest snapshot
    while con is None or not con.execute("SELECT count(*) FROM episodes").fetchone()[0]:
        try:
            con = con or open_lake(lake)
        except LakeNotFound:  # the sink has not created it yet
            time.sleep(0.05)
    producer = threading.Thread(target=producer_loop)
    producer.start()
    polls, started = 0, time.monotonic()
    while producer.is_alive() or not ended_at.keys() <= visible.keys():  # (visible has the warm-up too)
        now = time.monotonic()
        for (episode,) in con.execute("SELECT episode_id FROM episodes").fetchall():
            visible.setdefault(episode, now)
        polls += 1
        if time.monotonic() - started > seconds + 120:
            break
    poll_s = (time.monotonic() - started) / polls
    con.close()
    stop.set()
    for t in threads:
        t.join()
    lake_lat = [visible[e] - ended_at[e] for e in ended_at if e in visible]
    bus_lat = [on_bus[e] - ended_at[e] for e in ended_at if e in on_bus]
    return [flush_s, len(ended_at), percentile(lake_lat, 50), percentile(lake_lat, 99),
            percentile(bus_lat, 50), percentile(bus_lat, 99), poll_s]


def main() -> None:
    from infra.bus.kafka import KafkaBus
    from infra.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=4, help="episodes per second")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--flush", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--bus", default="kafka://127.0.0.1:9092")
    parser.add_argument("--postgres", metavar="URL", help="catalogs on this PostgreSQL server (postgresql://user@host:port), "
                        "a database per row; default: the stack's SQLite catalogs")
    args = parser.parse_args()
    settings = Settings.load(bus=args.bus)
    bus = KafkaBus(settings.kafka_bootstrap, settings.max_message_bytes, settings.partitions)
    rows = [measure(settings, bus, f, args.seconds, args.rate, args.steps, args.postgres) for f in args.flush]
    print(f"steady load: {args.rate} episodes/s of {args.steps} steps for {args.seconds:.0f}s per row; "
          "lake = visible in the episodes view over MinIO; bus = seen by a plain Kafka consumer\n")
    print(table(["flush_seconds", "episodes", "lake p50 s", "lake p99 s", "bus p50 s", "bus p99 s",
                 "SQL poll period s"], rows))
    print("wrote", write_result("lake_freshness", {
        "catalog": "postgresql" if args.postgres else "sqlite", "rate_episodes_per_s": args.rate,
        "steps": args.steps, "seconds": args.seconds,
        "rows": [dict(zip(["flush_seconds", "episodes", "p50_seconds", "p99_seconds", "bus_p50_seconds",
                           "bus_p99_seconds", "sql_poll_seconds"], r)) for r in rows],
        "p99_seconds": {str(r[0]): r[3] for r in rows}, "goal_p99_seconds": 1.0}))


if __name__ == "__main__":
    main()
