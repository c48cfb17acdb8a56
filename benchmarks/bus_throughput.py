"""Episode chunks through our Kafka bus, against Kafka's own kafka-producer-perf-test.

Both run in the same process tree against the same broker, with the same number of records,
the same record size (our mean encoded chunk), acks=all, idempotence and the same compression.
The ratio is ours / theirs in MB/s. Needs the stack: `robolake infra up`.

    python benchmarks/bus_throughput.py [--messages 3000] [--rows 50] [--compression lz4 zstd none]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
import uuid

import numpy as np


def build_chunks(n_distinct: int, rows: int):
    from producers.synthetic import ACTION_DIM, OBS_DIM
    from schemas.codec import build
    from schemas.events import EPISODE_STEPS

    rng = np.random.default_rng(0)
    chunks = []
    for c in range(n_distinct):
        episode = str(uuid.uuid4())
        chunks.append((episode, build(EPISODE_STEPS, [{
            "episode_id": episode, "experiment_id": "bench", "chunk": 0, "step": i, "sim_time": 0.1 * i,
            "observation": rng.normal(size=OBS_DIM).astype(np.float32).tolist(),
            "action": rng.uniform(-1, 1, ACTION_DIM).astype(np.float32).tolist(),
            "reward": 0.0, "task_reward": 0.0, "skill_id": "reach_red", "skill_caption": "reach the red block",
            "terminated": False, "truncated": False, "frame": None} for i in range(rows)])))
    return chunks


def run_ours(settings, topic: str, compression: str, chunks, messages: int) -> dict:
    from infra.bus.kafka import KafkaBus
    from schemas.codec import encode

    bus = KafkaBus(settings.kafka_bootstrap, settings.max_message_bytes, settings.partitions, compression)
    producer = bus.producer()
    size = sum(len(encode(b)[0]) for _, b in chunks) / len(chunks)
    started = time.perf_counter()
    for i in range(messages):
        key, batch = chunks[i % len(chunks)]
        producer.send(topic, key, batch)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    rows = messages * chunks[0][1].num_rows
    return {"msgs": messages / elapsed, "rows": rows / elapsed, "mb": messages * size / elapsed / 1e6, "size": size}


def run_theirs(settings, topic: str, compression: str, messages: int, record_size: int) -> dict:
    from infra.kafka_server import install

    libs = install(settings.home)
    props = [f"bootstrap.servers={settings.kafka_bootstrap[0]}", "acks=all", "enable.idempotence=true",
             f"compression.type={compression}", "linger.ms=5", "batch.size=1048576"]
    cmd = ["java", "-Xmx512m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(messages), "--record-size", str(record_size),
           "--throughput", "-1", "--producer-props", *props]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    final = [line for line in out.splitlines() if "records sent" in line][-1]
    per_s, mb_s = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\)", final).groups()
    # The tool's "MB" is MiB (bytes / 1024 / 1024); convert to MB like ours.
    return {"msgs": float(per_s), "mb": float(mb_s) * 1024 * 1024 / 1e6}


def compressed_fraction(chunks, compression: str) -> float:
    """Size after the codec Kafka applies / size before, over the same chunks."""
    from schemas.codec import encode

    data = b"".join(encode(b)[0] for _, b in chunks)
    if compression == "lz4":
        import lz4.frame

        return len(lz4.frame.compress(data)) / len(data)
    if compression == "zstd":
        import zstandard

        return len(zstandard.ZstdCompressor(level=3).compress(data)) / len(data)
    return 1.0


def main() -> None:
    from infra.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=50, help="steps per chunk")
    parser.add_argument("--compression", nargs="+", default=["lz4", "zstd", "none"])
    parser.add_argument("--bus", default="kafka://127.0.0.1:9092")
    args = parser.parse_args()
    settings = Settings.load(bus=args.bus)
    chunks = build_chunks(64, args.rows)

    from infra.topics import ensure_topics

    print(f"{args.messages} episode.steps messages of {args.rows} steps each, acks=all, idempotent, "
          f"{settings.partitions} partitions, broker {settings.kafka_bootstrap[0]}\n")
    print("| compression | record bytes | compressed/raw | ours msg/s | ours steps/s | ours MB/s | perf-test msg/s | perf-test MB/s | ratio (MB/s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for compression in args.compression:
        ours_topic, their_topic = (f"bench.{compression}.{w}.{uuid.uuid4().hex[:6]}" for w in ("ours", "theirs"))
        ensure_topics(settings.kafka_bootstrap, [ours_topic, their_topic], settings.partitions)
        run_ours(settings, ours_topic, compression, chunks, min(300, args.messages))  # warm-up
        ours = run_ours(settings, ours_topic, compression, chunks, args.messages)
        theirs = run_theirs(settings, their_topic, compression, args.messages, int(ours["size"]))
        print(f"| {compression} | {ours['size']:.0f} | {compressed_fraction(chunks, compression):.2f} "
              f"| {ours['msgs']:.0f} | {ours['rows']:.0f} | {ours['mb']:.1f} "
              f"| {theirs['msgs']:.0f} | {theirs['mb']:.1f} | {ours['mb'] / theirs['mb']:.2f} |")


if __name__ == "__main__":
    main()
