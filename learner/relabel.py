"""Relabel: every chosen reward function over the lake's complete episodes, into the `rewards` table.

- Reads the steps of complete episodes (the `episodes` view, filtered by a read-only predicate)
  with DuckDB as Arrow record batches, ordered by episode, so memory holds one batch at a time.
- Computes each function vectorized over a batch and commits whole episodes at a time, one
  catalog transaction per batch (`LakeTables.commit`): a query sees an episode's rewards for a
  function version completely or not at all, and raw steps are never touched.
- Incremental and idempotent: an (episode, function, version) pair already present for the
  dataset is skipped, so a rerun adds nothing and a killed run's rerun ends with the same rows.
  Relabels of one lake take turns through a file lock beside its catalog (as writers do).
- Lineage: a `relabel.completed` event on the lineage topic (learner/lineage.py), and every rewards
  row carries the `relabel_id` of the run that wrote it.

Partial runs. A run stops at the first batch that fails: a function returning NaN or the wrong
length (RewardError, naming the function), an observation of the wrong length (RelabelError, naming
the episodes), a lake error, Ctrl-C. That batch is not committed; batches committed before it stay
(they are whole, valid results, and a rerun resumes after them). Validating every function on every
batch before the first commit would mean holding or computing the whole selection twice, so we do
not: instead the lineage says exactly what was committed. A run that fails after committing
publishes its event anyway, with `complete: false` and the `error`, counting only committed rows
and offsets. A run that cannot publish (killed with SIGKILL, or the bus down) leaves rows that no
event covers; the next relabel of that dataset finds them (rows whose relabel_id no event names,
in the lake or, on Kafka where the lake lags, on the lineage topic) and lists them in its own event
under `adopted` (run id, function, version, rows), publishing an event for that even when it
computes nothing new.

Reward functions read the Panda scene's observation (any version of schemas/observation.py: 43
floats in v1, 46 in v2; they read v1's, which keep their places), so only episodes of that
environment are selected; others are counted and skipped, and episodes of every version relabel
together. A step of that environment with an observation of no known version's length is an error
naming its episode (nothing is written for its batch).
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infra.bus.interface import Land

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
    adopted: list[dict] = field(default_factory=list)  # rows of earlier runs no event covered (learner/lineage.py)
    # the counts above are of committed rows only: a failed run's event reports exactly what it left


def check_dataset_name(name: str) -> None:
    """RelabelError unless `name` is a usable dataset name: not empty, no control or format characters."""
    if not isinstance(name, str) or not name.strip():
        raise RelabelError(f"a dataset name must not be empty, got {name!r}")
    bad = [c for c in name if unicodedata.category(c)[0] in "CZ" and c != " "]
    if bad or len(name) > 200:
        raise RelabelError(f"a dataset name must be at most 200 printable characters (no control, format or "
                           f"line-breaking characters), got {name!r}")


def resolve(specs: list[str] | None, everything: bool = False):
    """Reward functions from NAME[@VERSION] specs, or every registered version (`everything`).
    Raises producers.sim.rewards.UnknownReward listing the known ones."""
    from producers.sim.rewards import REWARDS, get_reward

    chosen = list(REWARDS.values()) if everything else [get_reward(s) for s in specs or []]
    return sorted({f.key: f for f in chosen}.values(), key=lambda f: f.key)


def relabel(settings, functions, where: str = "TRUE", dataset: str = DEFAULT_DATASET,
            batch_steps: int = 20000, progress=None, on_total=None, publish: bool = True,
            land: Land | None = None) -> RelabelStats:
    """Relabel the complete episodes matching `where` (a predicate on the `episodes` view) with
    `functions` (RewardFunction); `progress(n)` after each batch of n steps, `on_total(n)` once.
    Publishing the lineage on the in-process bus needs `land` (consumers.lake_sink.sink.land)."""
    from infra.lake_catalog import LakeTables, lake_lock
    from infra.lake_sql import ReadOnlyError, check_read_only, open_lake
    from learner.lineage import publish_relabel, uncovered

    if publish and settings.bus == "memory" and land is None:
        raise ValueError("relabel on the in-process bus needs `land` to write its lineage into the lake")
    stats = RelabelStats()
    check_dataset_name(dataset)
    if not functions:
        raise RelabelError("no reward functions given")
    tables = LakeTables(settings, writer=f"relabel-{stats.relabel_id[:8]}")  # creates `rewards` in older lakes
    try:
        # One relabel of a lake at a time (a second waits), so two never compute the same rows.
        with lake_lock(settings, "relabel", f"another relabel of {settings.lake_root} is running; waiting"):
            con = open_lake(settings)
            try:
                selection = _selection(where)
                try:
                    check_read_only(con, selection)  # exactly the text _plan runs
                except ReadOnlyError as exc:
                    raise RelabelError(str(exc)) from None
                todo = _plan(con, selection, functions, dataset, stats)
                stats.adopted = uncovered(con, dataset, settings)  # under the lock: no other relabel writes
            finally:
                con.close()
            try:
                _run(settings, tables, todo, functions, dataset, batch_steps, stats, progress, on_total)
            except BaseException as exc:
                if publish and (stats.rows or stats.adopted):  # committed rows stay: say what they are
                    try:
                        publish_relabel(settings, stats, functions, where, dataset, land, complete=False,
                                        error=f"{type(exc).__name__}: {exc}")
                    except Exception:
                        log.exception("could not publish the lineage of the partial relabel %s (the next "
                                      "relabel of %r adopts its rows)", stats.relabel_id, dataset)
                raise
    finally:
        tables.close()
    if publish and (stats.rows or stats.adopted):
        publish_relabel(settings, stats, functions, where, dataset, land)
    return stats


def _selection(where: str) -> str:
    return f"SELECT episode_id, length, env_name FROM episodes WHERE ({where})"


def _run(settings, tables, todo: pa.Table, functions, dataset: str, batch_steps: int, stats: RelabelStats,
         progress, on_total) -> None:
    from infra.lake_sql import open_lake
    from schemas import lake

    if todo.num_rows == 0:
        return
    if on_total is not None:
        on_total(int(pc.sum(todo.column("length")).as_py()))
    pending = {f.key: set(todo.filter(pc.field("fn_" + _col(f)))["episode_id"].to_pylist()) for f in functions}
    reader_con = open_lake(settings, read_only=False)  # only our own SQL runs on it
    try:
        for chunk in _episode_batches(reader_con, todo.select(["episode_id"]), batch_steps):
            table, done = _compute(chunk, functions, pending, dataset, stats.relabel_id)
            if table.num_rows:
                tables.commit({lake.REWARDS: table}, offsets={})  # not a bus consumer: no offsets
                stats.commits += 1
            _merge(stats, done)  # counted once committed: a failed run's event reports what it left
            if progress is not None:
                progress(chunk.num_rows)
    finally:
        reader_con.close()


def _col(fn) -> str:
    return f"{fn.name}__{fn.version}"


def _plan(con, selection: str, functions, dataset: str, stats: RelabelStats) -> pa.Table:
    """Episodes to compute (episode_id, length, fn_<name>__<v> booleans: pending for that function)."""
    selected = con.execute(selection).to_arrow_table()
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


def _compute(chunk: pa.Table, functions, pending, dataset: str, relabel_id: str) -> tuple[pa.Table, RelabelStats]:
    """Every pending function over the chunk's steps: the rewards rows, checked before anything is
    written, and their counts (to add to the run's once committed)."""
    from schemas import lake, observation

    stats = RelabelStats(relabel_id=relabel_id)
    n = chunk.num_rows
    lengths = pc.list_value_length(chunk.column("observation"))
    sizes = {v: observation.size(v) for v in observation.FIELDS}
    known = pa.array(sorted(sizes.values()), lengths.type)
    wrong = pc.fill_null(pc.invert(pc.is_in(lengths, value_set=known)), True)  # every row, not just the total
    if pc.any(wrong).as_py():
        episodes = sorted(set(pc.filter(chunk.column("episode_id"), wrong).to_pylist()))
        found = sorted(set(pc.filter(lengths, wrong).to_pylist()), key=lambda v: (v is None, v or 0))
        raise RelabelError(f"episode{'s' if len(episodes) > 1 else ''} {', '.join(episodes[:5])}"
                           f"{f' (and {len(episodes) - 5} more)' if len(episodes) > 5 else ''} of {_ENV} "
                           f"ha{'ve' if len(episodes) > 1 else 's'} observations of {found} floats, not "
                           f"{' or '.join(f'{size} (v{v})' for v, size in sizes.items())}: "
                           "not relabelled (nothing written for this batch)")
    # The functions read v1's floats, the first size(1) of every version: one matrix for a batch mixing versions.
    width = observation.size(1)
    values = pc.list_flatten(pc.list_slice(chunk.column("observation"), 0, width)).to_numpy(zero_copy_only=False)
    obs = values.reshape(n, width).astype(np.float32, copy=False)
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
            "success": pa.array(success), "reward": pa.array(reward),
            "relabel_id": pa.DictionaryArray.from_arrays(np.zeros(m, np.int32), [relabel_id])}))
        stats.rows_by_function[fn.key] = stats.rows_by_function.get(fn.key, 0) + m
    _note_sources(chunk, stats)
    stats.steps += n
    stats.episodes += len(ids)
    out = pa.concat_tables(parts) if parts else lake.SCHEMAS[lake.REWARDS].empty_table()
    stats.rows += out.num_rows
    return out, stats


def _merge(stats: RelabelStats, done: RelabelStats) -> None:
    stats.steps += done.steps
    stats.episodes += done.episodes
    stats.rows += done.rows
    for key, rows in done.rows_by_function.items():
        stats.rows_by_function[key] = stats.rows_by_function.get(key, 0) + rows
    for key, (first, last) in done.sources.items():
        known = stats.sources.get(key, [first, last])
        stats.sources[key] = [min(known[0], first), max(known[1], last)]


def _note_sources(chunk: pa.Table, stats: RelabelStats) -> None:
    ranges = chunk.group_by(["_log", "_topic", "_partition"]).aggregate([("_offset", "min"), ("_offset", "max")])
    for row in ranges.to_pylist():
        key = (row["_log"], row["_topic"], row["_partition"])
        first, last = stats.sources.get(key, [row["_offset_min"], row["_offset_max"]])
        stats.sources[key] = [min(first, row["_offset_min"]), max(last, row["_offset_max"])]
