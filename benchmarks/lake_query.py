"""Query speed over a lake of >= 1M synthetic steps on MinIO: a per-skill success rate and "all
steps of 100 random episodes", against the same queries on one compacted DuckDB table built from
the same rows in the same run. Needs MinIO (`robolake infra up`).

    python benchmarks/lake_query.py [--episodes 10000] [--steps 100]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table, timed, write_result  # noqa: E402

SKILL_SUCCESS = """
    SELECT s.skill_id, avg(s.success::INT) AS success_rate, count(*) AS attempts
    FROM (SELECT unnest(skills) AS s FROM episodes) GROUP BY 1 ORDER BY 1"""


def main() -> None:
    import tempfile

    import duckdb
    from tqdm import tqdm

    from consumers.lake_sink.compact import compact
    from consumers.lake_sink.sink import LakeSink
    from infra.bus.memory import MemoryBroker, MemoryBus
    from infra.lake_sql import open_lake
    from infra.settings import Settings
    from producers.synthetic import SyntheticConfig, produce

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each query on the lake")
    args = parser.parse_args()
    settings = Settings.load(lake=f"s3://robolake/bench/query-{uuid.uuid4().hex[:8]}")

    started = time.perf_counter()
    bus = MemoryBus(MemoryBroker(settings.partitions))
    batch = 1000
    with tqdm(total=args.episodes, desc="building the lake", unit="episode") as bar:
        for first in range(0, args.episodes, batch):  # sink as we go, as a running sink would
            produce(bus.producer(), SyntheticConfig(episodes=min(batch, args.episodes - first), steps=args.steps,
                                                    seed=first), progress=bar.update)
            LakeSink(settings, bus=bus, flush_seconds=60).run(until_idle_s=0.1)
    print(f"built in {time.perf_counter() - started:.0f}s")

    con = open_lake(settings)
    n_steps = con.execute("SELECT count(*) FROM steps").fetchone()[0]
    ids = [r[0] for r in con.execute("SELECT episode_id FROM episodes").fetchall()]
    chosen = ", ".join(f"'{i}'" for i in random.Random(0).sample(ids, 100))
    queries = {"per-skill success rate": SKILL_SUCCESS,
               "all steps of 100 random episodes": f"SELECT * FROM steps WHERE episode_id IN ({chosen})"}

    def run_all(connection) -> dict[str, float]:
        return {name: timed(lambda q=q: connection.execute(q).to_arrow_table(), args.repeat)
                for name, q in queries.items()}

    def data_files(connection) -> int:
        return connection.execute("SELECT count(*) FROM ducklake_list_files('lake', 'steps')").fetchone()[0]

    files = data_files(con)
    lake_times = run_all(con)
    with tempfile.TemporaryDirectory() as tmp:
        native = duckdb.connect(f"{tmp}/compacted.duckdb")
        for view in ("episodes", "steps"):
            native.register(f"lake_{view}", con.execute(f"SELECT * FROM {view}").to_arrow_table())
            native.execute(f"CREATE TABLE {view} AS SELECT * FROM lake_{view}")
        native_times = run_all(native)
    compact(settings, keep_s=0)
    compacted = open_lake(settings)
    compacted_files = data_files(compacted)
    compacted_times = run_all(compacted)

    print(f"\n{n_steps} steps in {len(ids)} episodes; lake on MinIO {settings.s3_endpoint}; median of "
          f"{args.repeat} runs\n")
    rows = []
    for name in queries:
        rows.append([name, f"lake as sunk ({files} steps files)", lake_times[name], lake_times[name] / native_times[name]])
        rows.append([name, f"lake after compact ({compacted_files} steps files)", compacted_times[name],
                     compacted_times[name] / native_times[name]])
        rows.append([name, "one DuckDB table (baseline)", native_times[name], 1.0])
    print(table(["query", "data", "seconds", "ratio to DuckDB table"], rows))
    skill, episodes = queries
    print("wrote", write_result("lake_query", {
        "steps": n_steps, "episodes": len(ids), "repeat": args.repeat, "steps_files": files,
        "steps_files_after_compact": compacted_files, "seconds": {"lake": lake_times, "lake_after_compact": compacted_times,
                                                                  "duckdb_table": native_times},
        "per_skill_ratio": compacted_times[skill] / native_times[skill],
        "episodes_ratio": compacted_times[episodes] / native_times[episodes],
        "goals": {"per_skill_ratio": 1.5, "episodes_ratio": 1.5}}))
    if args.explain:
        for name, q in queries.items():
            print(f"\nEXPLAIN ANALYZE {name} (lake after compact):")
            print(compacted.execute(f"EXPLAIN ANALYZE {q}").fetchall()[0][1])


if __name__ == "__main__":
    main()
