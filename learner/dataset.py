"""The learner's data path: training batches from the lake's steps joined with relabelled rewards.

Each sample is one transition relabelled for one skill (reward function version), as NumPy arrays:
`observation`, `action`, `next_observation`, `skill` (index into `captions`), `caption`,
`reward`, `success`, `done`, `discount`, plus `episode_id` and `step` for tracing. No torch.

Conventions (how the rollout workers write steps): a step row holds the action taken and the
observation *after* it, with the reward of that observation. So the transition of row t is
(observation of row t-1, action of row t, observation of row t, reward of row t); row 0 has no
observation before it in the lake and yields no sample. `done` is the relabelled skill's
success (reaching its goal ends that task) and `discount` is 1 - done.

Sampling: every step gets one skill per epoch, chosen by a seeded hash of (episode, step, epoch)
against the cumulative weight table (uniform by default), so an epoch visits each transition once
and skills mix in the given proportions. DuckDB streams the join as Arrow record batches (spilling
to disk beyond its memory limit); a seeded shuffle buffer decorrelates them; a background thread
prefetches batches. Memory: the shuffle buffer + `prefetch` batches + one record batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from learner.shuffle import Prefetcher, ShuffleBuffer, rebatch

_BUCKETS = 1 << 20  # resolution of the skill choice


@dataclass(frozen=True)
class DatasetConfig:
    dataset: str = "default"                                   # rewards rows written by `relabel --name`
    functions: tuple[str, ...] | None = None                   # NAME@VERSION; None: all in the dataset
    weights: dict[str, float] = field(default_factory=dict)    # NAME@VERSION -> weight; missing: 1
    batch_size: int = 256
    shuffle_buffer: int = 16384
    prefetch: int = 4
    read_rows: int = 8192                                      # rows per Arrow record batch read
    seed: int = 0
    epochs: int | None = 1                                     # None: forever
    drop_last: bool = False
    memory_limit: str = "1GB"                                  # DuckDB's, for the join (spills beyond)


class LakeDataset:
    """Iterate for batches (dicts of NumPy arrays); `captions[i]` is the text of skill index i."""

    def __init__(self, settings, config: DatasetConfig = DatasetConfig()):
        self.settings, self.config = settings, config
        self.functions = self._functions()  # [(name, version)]
        if not self.functions:
            raise ValueError(f"dataset {config.dataset!r} has no rewards rows; run `robolake relabel --name "
                             f"{config.dataset}` first")
        self.captions = [_caption(name, version) for name, version in self.functions]
        specs = [f"{n}@{v}" for n, v in self.functions]
        unknown = set(config.weights) - set(specs)
        if unknown:
            raise ValueError(f"weights for functions not in the dataset: {', '.join(sorted(unknown))}; "
                             f"it has: {', '.join(specs)}")
        weights = np.array([float(config.weights.get(s, 1.0)) for s in specs])
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("skill weights must be >= 0 and not all zero")
        edges = np.concatenate([[0], np.cumsum(weights) / weights.sum()])
        self._bounds = [(int(round(lo * _BUCKETS)), int(round(hi * _BUCKETS))) for lo, hi in zip(edges, edges[1:])]
        self._prefetcher: Prefetcher | None = None

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.close()
        self._prefetcher = Prefetcher(self._batches, self.config.prefetch)
        try:
            yield from self._prefetcher
        finally:
            self.close()

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    # --- the reading thread ---------------------------------------------------------------------

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        c = self.config
        epoch = 0
        while c.epochs is None or epoch < c.epochs:
            buffer = ShuffleBuffer(c.shuffle_buffer, seed=c.seed * 1_000_003 + epoch)

            def pieces():
                for rows in self._rows(epoch):
                    yield from buffer.push(rows)
                yield from buffer.drain()

            yield from rebatch(pieces(), c.batch_size, c.drop_last)
            epoch += 1

    def _rows(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        from infra.lake_sql import open_lake

        con = open_lake(self.settings, read_only=False)  # only our own SQL runs on it
        try:
            con.execute(f"SET memory_limit = '{self.config.memory_limit}'")
            reader = con.execute(self._query(epoch), [self.config.dataset]).to_arrow_reader(self.config.read_rows)
            for batch in reader:
                if batch.num_rows:
                    yield self._columns(batch)
        finally:
            con.close()

    def _query(self, epoch: int) -> str:
        from infra.duck import sql_str

        skills = ", ".join(f"({i}, {sql_str(n)}, {v}, {lo}, {hi})"
                           for i, ((n, v), (lo, hi)) in enumerate(zip(self.functions, self._bounds)) if hi > lo)
        seed = int(self.config.seed) * 1_000_003 + epoch
        return f"""
            WITH s AS (
                SELECT episode_id, step, action, observation AS next_observation,
                       lag(observation) OVER (PARTITION BY episode_id ORDER BY step) AS observation,
                       hash(episode_id, step, {seed}) % {_BUCKETS} AS u
                FROM steps)
            SELECT s.episode_id, s.step, s.observation, s.action, s.next_observation, f.skill,
                   r.reward, r.success
            FROM s JOIN (VALUES {skills}) AS f(skill, reward_fn, reward_version, lo, hi)
                   ON s.u >= f.lo AND s.u < f.hi
                 JOIN rewards r ON r.episode_id = s.episode_id AND r.step = s.step
                   AND r.reward_fn = f.reward_fn AND r.reward_version = f.reward_version
            WHERE r.dataset = ? AND s.observation IS NOT NULL"""

    def _columns(self, batch) -> dict[str, np.ndarray]:
        import pyarrow.compute as pc

        n = batch.num_rows

        def matrix(name):
            return pc.list_flatten(batch.column(name)).to_numpy(zero_copy_only=False).reshape(n, -1).astype(np.float32)

        success = batch.column("success").to_numpy(zero_copy_only=False).astype(bool)
        skill = batch.column("skill").to_numpy(zero_copy_only=False).astype(np.int32)
        return {"observation": matrix("observation"), "action": matrix("action"),
                "next_observation": matrix("next_observation"), "skill": skill,
                "caption": np.array(self.captions, dtype=object)[skill],
                "reward": batch.column("reward").to_numpy(zero_copy_only=False).astype(np.float32),
                "success": success, "done": success, "discount": (~success).astype(np.float32),
                "episode_id": np.array(batch.column("episode_id").to_pylist(), dtype=object),
                "step": batch.column("step").to_numpy(zero_copy_only=False).astype(np.int32)}

    def _functions(self) -> list[tuple[str, int]]:
        from infra.lake_sql import open_lake

        if self.config.functions is not None:
            out = []
            for spec in self.config.functions:
                name, _, version = spec.partition("@")
                if not version.isdigit():
                    raise ValueError(f"name functions as NAME@VERSION, got {spec!r}")
                out.append((name, int(version)))
            return out
        con = open_lake(self.settings)
        try:
            return [tuple(r) for r in con.execute("SELECT DISTINCT reward_fn, reward_version FROM rewards "
                                                  "WHERE dataset = ? ORDER BY ALL", [self.config.dataset]).fetchall()]
        finally:
            con.close()


def _caption(name: str, version: int) -> str:
    from producers.sim.rewards import REWARDS

    fn = REWARDS.get((name, version))
    return fn.caption if fn is not None else name  # a function no longer registered keeps its name
