"""Relabel: every chosen reward function over the lake's complete episodes, into the `rewards` table.

- Reads the steps of complete episodes (the `episodes` view, filtered by a read-only predicate)
  with DuckDB as Arrow record batches, ordered by episode, so memory holds one batch at a time.
- Computes each function vectorized over a batch and commits whole episodes at a time, one
  catalog transaction per batch (`LakeTables.commit`): a query sees an episode's rewards for a
  function version completely or not at all, and raw steps are never touched.
- Incremental and idempotent: an (episode, function, version) pair already present for the
  dataset is skipped, so a rerun adds nothing and a killed run's rerun ends with the same rows.
  Relabels of one lake take turns through a file lock beside its catalog (as writers do).
- Lineage: a `relabel.completed` event on the lineage topic (learner/lineage.py).

Reward functions read the Panda scene's observation, so only episodes of that environment are
selected; others are counted and skipped. A function that returns NaN or the wrong length stops
the run before the batch it failed on is committed (batches committed before it stay: they are
whole, valid results).
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

DEFAULT_DATASET = "default"
_ENV = "panda_block_stacking"  # producers.sim.env.ENV_NAME, without importing the simulator here


class RelabelError(ValueError):
    """Bad input (a --where that is not a read, an observation of the wrong size)."""


@dataclass
class RelabelStats:
    relabel_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    selected: int = 0               # complete episodes matching the predicate (any environment)
    other_env: int = 0              # ... of which not of the Panda scene: skipped
    episodes: int = 0               # episodes with at least one function computed now
    steps: int = 0
    rows: int = 0
    commits: int = 0
    rows_by_function: dict[tuple[str, int], int] = field(default_factory=dict)
    sources: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)  # key -> [first, last]
    snapshot: int | None = None
    warnings: list[str] = field(default_factory=list)


def resolve(specs: list[str] | None, everything: bool = False):
    """Reward functions from NAME[@VERSION] specs, or every registered version (`everything`).
    Raises producers.sim.rewards.UnknownReward listing the known ones."""
    from producers.sim.rewards import REWARDS, get_reward

    chosen = list(REWARDS.values()) if everything else [get_reward(s) for s in specs or []]
    return sorted({f.key: f for f in chosen}.values(), key=lambda f: f.key)


def relabel(settings, functions, where: str = "TRUE", dataset: str = DEFAULT_DATASET,
            batch_steps: int = 20000, progress=None, on_total=None, publish: bool = True) -> RelabelStats:
    """Relabel the complete episodes matching `where` (a predicate on the `episodes` view) with
    `functions` (RewardFunction); `progress(n)` after each batch of n steps, `on_total(n)` once."""
    from infra.lake_catalog import LakeTables
    from infra.lake_sql import ReadOnlyError, check_read_only, open_lake
    from schemas import lake

    stats = RelabelStats()
    if not functions:
        raise RelabelError("no reward functions given")
    tables = LakeTables(settings, writer=f"relabel-{stats.relabel_id[:8]}")  # creates `rewards` in older lakes
    try:
        with _relabel_lock(settings):
            con = open_lake(settings)
            try:
                check_read_only(con, f"SELECT episode_id FROM episodes WHERE {where}")
            except ReadOnlyError as exc:
                raise RelabelError(str(exc)) from None
            todo = _plan(con, functions, where, dataset, stats)
            con.close()
            if todo.num_rows == 0:
                return stats
            if on_total is not None:
                on_total(int(pc.sum(todo.column("length")).as_py()))
            pending = {f.key: set(todo.filter(pc.field("fn_" + _col(f)))["episode_id"].to_pylist()) for f in functions}
            reader_con = open_lake(settings, read_only=False)  # only our own SQL runs on it
            try:
                for chunk in _episode_batches(reader_con, todo.select(["episode_id"]), batch_steps):
                    table = _compute(chunk, functions, pending, dataset, stats)
                    if table.num_rows:
                        tables.commit({lake.REWARDS: table}, offsets={})  # not a bus consumer: no offsets
                        stats.commits += 1
                    if progress is not None:
                        progress(chunk.num_rows)
            finally:
                reader_con.close()
    finally:
        tables.close()
    if publish and stats.rows:
        from learner.lineage import publish_relabel

        publish_relabel(settings, stats, functions, where, dataset)
    return stats


def _col(fn) -> str:
    return f"{fn.name}__{fn.version}"


def _plan(con, functions, where: str, dataset: str, stats: RelabelStats) -> pa.Table:
    """Episodes to compute (episode_id, length, fn_<name>__<v> booleans: pending for that function)."""
    selected = con.execute(f"SELECT episode_id, length, env_name FROM episodes WHERE ({where})").to_arrow_table()
    stats.selected = selected.num_rows
    stats.snapshot = con.execute("SELECT max(snapshot_id) FROM lake.snapshots()").fetchone()[0]
    ours = selected.filter(pc.equal(selected["env_name"], _ENV))
    stats.other_env = selected.num_rows - ours.num_rows
    done: dict[tuple[str, int], set[str]] = defaultdict(set)
    hashes = {f.key: f.source_hash for f in functions}
    for name, version, source_hash, episode_id in con.execute(
            "SELECT DISTINCT reward_fn, reward_version, source_hash, episode_id FROM rewards WHERE dataset = ?",
            [dataset]).fetchall():
        if (name, version) in hashes:
            done[(name, version)].add(episode_id)
            if source_hash != hashes[(name, version)]:
                stats.warnings.append(f"{name}@{version}: rows in dataset {dataset!r} were computed by source "
                                      f"{source_hash[:12]}, the registered one is {hashes[(name, version)][:12]} "
                                      "(the function changed without a new version; register a new version)")
    stats.warnings = sorted(set(stats.warnings))
    ids = ours["episode_id"].to_pylist()
    masks = {"fn_" + _col(f): pa.array([e not in done[f.key] for e in ids]) for f in functions}
    todo = pa.table({"episode_id": ours["episode_id"], "length": ours["length"], **masks})
    any_pending = np.logical_or.reduce([m.to_numpy(zero_copy_only=False) for m in masks.values()])
    return todo.filter(pa.array(any_pending)) if len(ids) else todo


def _episode_batches(con, episodes: pa.Table, batch_steps: int):
    """Steps of `episodes`, ordered by (episode, step), in tables of whole episodes of about
    `batch_steps` rows (more only when one episode is longer)."""
    con.register("_todo", episodes)
    query = ("SELECT s.episode_id, s.experiment_id, s.step, s.observation, s._log, s._topic, s._partition, s._offset "
             "FROM lake.steps s SEMI JOIN _todo USING (episode_id) ORDER BY s.episode_id, s.step")
    con.execute("SET memory_limit = '1GB'")  # the sort spills to disk beyond this: bounded whatever the lake's size
    reader = con.execute(query).to_arrow_reader(max(1024, min(batch_steps, 100_000)))
    carry: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        carry.append(batch)
        rows += batch.num_rows
        if rows < batch_steps:
            continue
        table = pa.Table.from_batches(carry)
        start = 0
        for cut in _cuts(table, batch_steps):
            yield table.slice(start, cut - start)
            start = cut
        rest = table.slice(start)  # the unfinished last episode, and whole ones short of a batch
        carry, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(carry)
    con.unregister("_todo")


def _cuts(table: pa.Table, batch_steps: int) -> list[int]:
    """Row indices where batches of whole episodes end: at the first episode start >= batch_steps
    rows after the previous cut. The last episode may continue in the next record batch, so the
    table's end is never a cut."""
    codes = pc.dictionary_encode(table.column("episode_id").combine_chunks()).indices.to_numpy()
    starts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    cuts, last = [], 0
    for start in starts:
        if start - last >= batch_steps:
            cuts.append(int(start))
            last = start
    return cuts


def _compute(chunk: pa.Table, functions, pending, dataset: str, stats: RelabelStats) -> pa.Table:
    """Every pending function over the chunk's steps: the rewards rows, checked before anything is written."""
    from schemas import lake

    n = chunk.num_rows
    values = pc.list_flatten(chunk.column("observation")).to_numpy(zero_copy_only=False)
    if n and values.size % n:
        raise RelabelError(f"observations of different lengths in episodes {pc.unique(chunk['episode_id'])}")
    obs = values.reshape(n, -1).astype(np.float32, copy=False)
    episode = pc.dictionary_encode(chunk.column("episode_id").combine_chunks())
    ids = episode.dictionary.to_pylist()
    parts = []
    for fn in functions:
        wanted = np.array([i in pending[fn.key] for i in ids], dtype=bool)[episode.indices.to_numpy()]
        if not wanted.any():
            continue
        rows = np.flatnonzero(wanted)
        success, reward = fn.evaluate(obs if len(rows) == n else obs[rows])
        take = pa.array(rows)
        m = len(rows)
        parts.append(pa.table({
            "dataset": pa.DictionaryArray.from_arrays(np.zeros(m, np.int32), [dataset]),
            "episode_id": chunk.column("episode_id").take(take),
            "experiment_id": chunk.column("experiment_id").take(take),
            "step": chunk.column("step").take(take),
            "reward_fn": pa.DictionaryArray.from_arrays(np.zeros(m, np.int32), [fn.name]),
            "reward_version": pa.array(np.full(m, fn.version, np.int32)),
            "source_hash": pa.DictionaryArray.from_arrays(np.zeros(m, np.int32), [fn.source_hash]),
            "success": pa.array(success), "reward": pa.array(reward)}))
        stats.rows_by_function[fn.key] = stats.rows_by_function.get(fn.key, 0) + m
    _note_sources(chunk, stats)
    stats.steps += n
    stats.episodes += len(ids)
    out = pa.concat_tables(parts) if parts else lake.SCHEMAS[lake.REWARDS].empty_table()
    stats.rows += out.num_rows
    return out


def _note_sources(chunk: pa.Table, stats: RelabelStats) -> None:
    ranges = chunk.group_by(["_log", "_topic", "_partition"]).aggregate([("_offset", "min"), ("_offset", "max")])
    for row in ranges.to_pylist():
        key = (row["_log"], row["_topic"], row["_partition"])
        first, last = stats.sources.get(key, [row["_offset_min"], row["_offset_max"]])
        stats.sources[key] = [min(first, row["_offset_min"]), max(last, row["_offset_max"])]


@contextmanager
def _relabel_lock(settings):
    """One relabel of a lake at a time (a second waits), so two never compute the same rows."""
    from infra.lake_catalog import catalog_url

    path = Path(catalog_url(settings).removeprefix("sqlite:"))
    lock = path.with_name(path.name + ".relabel.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another relabel of %s is running; waiting for it", settings.lake_root)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock; a killed process releases it too
