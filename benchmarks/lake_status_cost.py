"""What keeping `episode_status` costs a commit, as the lake grows: a sink's steady state, where
episodes span two commits (each commit: 10 episodes' starts, and the 3 chunks and end of the 10
started in the commit before), into a local lake of 0 to --max episodes, timed with the table kept
and with its upkeep left out (the commit as it was before the table), median of --repeat each.

    python benchmarks/lake_status_cost.py [--step 50000] [--max 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table, write_result  # noqa: E402


def episodes(n: int, chunks: int = 3) -> dict:
    """The lake rows of n whole episodes (their content is not what is timed)."""
    import pyarrow as pa

    from schemas import lake

    ids = [str(uuid.uuid4()) for _ in range(n)]
    now = datetime.datetime.now(datetime.timezone.utc)

    def rows(name: str, m: int, **columns) -> pa.Table:
        schema = pa.schema([f.with_nullable(True) for f in lake.SCHEMAS[name]])
        return pa.Table.from_arrays([pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(m, f.type)
                                     for f in schema], schema=schema)

    per_chunk = [i for i in ids for _ in range(chunks)]
    return {
        lake.EPISODE_STARTS: rows(lake.EPISODE_STARTS, n, episode_id=ids, experiment_id=["bench"] * n,
                                  seed=list(range(n)), time=[now] * n),
        lake.CHUNKS: rows(lake.CHUNKS, len(per_chunk), episode_id=per_chunk, experiment_id=["bench"] * len(per_chunk),
                          chunk=[c for _ in ids for c in range(chunks)], rows=[10] * len(per_chunk),
                          digest=["d"] * len(per_chunk)),
        lake.EPISODE_ENDS: rows(lake.EPISODE_ENDS, n, episode_id=ids, experiment_id=["bench"] * n,
                                num_chunks=[chunks] * n, length=[10 * chunks] * n, checksum=["c"] * n, time=[now] * n),
    }


def main() -> None:
    from infra import episode_status
    from infra.lake_catalog import LakeTables
    from infra.settings import Settings
    from schemas import lake

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=int, default=50_000, help="episodes added between measurements")
    parser.add_argument("--max", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tables = LakeTables(Settings.load(env={}, lake=f"file://{tempfile.mkdtemp(prefix='status-cost-')}/lake"), "bench")
    keep = episode_status.refresh
    rows, figures = [], []
    size = 0
    while True:
        timings = {}
        for mode, upkeep in (("kept", keep), ("not kept", lambda con, t: None)):
            episode_status.refresh = upkeep
            started = episodes(10)
            tables.commit({lake.EPISODE_STARTS: started[lake.EPISODE_STARTS]}, {})
            times = []
            for _ in range(args.repeat):
                new = episodes(10)
                steady = {lake.EPISODE_STARTS: new[lake.EPISODE_STARTS], lake.CHUNKS: started[lake.CHUNKS],
                          lake.EPISODE_ENDS: started[lake.EPISODE_ENDS]}
                times.append(_commit_s(tables, steady))
                started = new
            tables.commit({name: started[name] for name in (lake.CHUNKS, lake.EPISODE_ENDS)}, {})
            timings[mode] = statistics.median(times)
        episode_status.refresh = keep
        size = int(tables.con.execute("SELECT count(*) FROM lake.episode_ends").fetchone()[0])
        rows.append([size, timings["kept"], timings["not kept"], timings["kept"] - timings["not kept"]])
        figures.append({"episodes": size, "commit_s": timings["kept"], "commit_without_upkeep_s": timings["not kept"]})
        print(table(["episodes in the lake", "commit s", "without the upkeep s", "upkeep s"], rows[-1:]), flush=True)
        if size >= args.max:
            break
        tables.commit(episodes(args.step), {})  # one large commit: the lake grows
    tables.close()
    print(table(["episodes in the lake", "commit s", "without the upkeep s", "upkeep s"], rows))
    print("wrote", write_result("lake_status_cost", {"repeat": args.repeat, "episodes_per_commit": 10,
                                                     "points": figures}))


def _commit_s(tables, rows: dict) -> float:
    started = time.perf_counter()
    tables.commit(rows, {})
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
