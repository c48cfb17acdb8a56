"""The learner's data path: training batches from the lake's steps joined with relabelled rewards.

Each sample is one transition relabelled for one skill (reward function version), as NumPy arrays:
`observation`, `action`, `next_observation`, `skill` (index into `captions`), `caption`,
`reward`, `success`, `done`, `discount`, `imitate` (the action demonstrates the caption: under
"commanded" conditioning always; under "hindsight" on the steps of a commanded segment, a run of
steps under one `skill_id`, up to that skill's first success in the segment, unless the segment
began with it achieved: the step before it succeeded), plus `episode_id` and `step` for tracing.
No torch.

Conventions (how the rollout workers write steps): a step row holds the action taken and the
observation *after* it, with the reward of that observation. So the transition of row t is
(observation of row t-1, action of row t, observation of row t, reward of row t); row 0's
observation before it is the episode's `initial_observation` (episode.started v2; episodes written
before it have none, and their row 0 yields no sample). `done` is the relabelled skill's
success (reaching its goal ends that task) and `discount` is 1 - done.

Sampling: every transition gets one skill per epoch, chosen by a seeded hash of (episode, step,
epoch) against the cumulative weights (uniform by default) *of the functions that have a rewards row
for that step* (renormalised over those), so an epoch visits every transition that has at least one
row of a positive-weight function exactly once, and skills mix in the given proportions wherever
they are all computed (functions relabelled over different episodes never drop transitions).
With `demonstrations_only`, an epoch visits every step that demonstrates a skill once, drawn
among the skills it demonstrates.
DuckDB streams the join as Arrow record batches in a deterministic order (sorted by another seeded
hash, then episode and step: its multi-threaded join alone emits rows in arrival order), spilling to
disk beyond its memory limit; a seeded shuffle buffer decorrelates them further; a background
thread prefetches batches. Same lake, same config, same seed: same batches. Memory: the shuffle
buffer + `prefetch` batches + one record batch.

Each `iter(dataset)` is independent (its own reading thread), so one dataset serves several loops;
leaving a loop early stops its thread, and `close()` stops all of them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from learner.shuffle import Prefetcher, ShuffleBuffer, rebatch

_BUCKETS = 1 << 20  # resolution of the skill choice
_WEIGHT_UNITS = 1 << 20  # weights as integers (the largest one is this), so the cumulative sums are exact
# Passes over the demonstrations per read: they are a few percent of the rows the read's window query
# goes through, so one pass per query made a demonstration stream ~4x slower than training. A step's
# copies arrive close together, so a few percent of a batch's rows share it with a copy of themselves.
_DEMONSTRATION_PASSES = 8


@dataclass(frozen=True)
class DatasetConfig:
    dataset: str = "default"                                   # rewards rows written by `relabel --name`
    # NAME@VERSION, or NAME: its latest version in the dataset; None: the latest version of each function
    # in it (a function's versions share its caption, so a model conditions on one of them)
    functions: tuple[str, ...] | None = None
    weights: dict[str, float] = field(default_factory=dict)    # NAME@VERSION -> weight; missing: 1
    batch_size: int = 256
    shuffle_buffer: int = 16384
    prefetch: int = 4
    read_rows: int = 8192                                      # rows per Arrow record batch read
    seed: int = 0
    epochs: int | None = 1                                     # None: forever
    drop_last: bool = False
    memory_limit: str = "1GB"                                  # DuckDB's, for the join (spills beyond)
    # "hindsight": each transition is relabelled for a skill drawn from the functions (multi-task
    # by hindsight, PAC's way); "commanded": for the skill the episode was commanded to do at that
    # step (steps.skill_id, its caption and relabelled reward), as behaviour cloning conditions.
    conditioning: str = "hindsight"
    successful_only: bool = False                              # commanded: only skills the episode achieved
    # hindsight: a skill the step demonstrates (`imitate`) is drawn this many times as often as the
    # others (HER's achieved goals: the samples whose actions show how to do the skill)
    achieved_boost: int = 1
    # hindsight: only the samples whose action demonstrates the drawn skill (`imitate`), each step drawn
    # among the skills it demonstrates; steps that demonstrate none are left out (BC's demonstrations)
    demonstrations_only: bool = False
    # The observation version the model reads (schemas/observation.py): episodes of it and of later
    # versions (which only append fields), their observations cut to its size; None: the current one.
    observation_version: int | None = None


class LakeDataset:
    """Iterate for batches (dicts of NumPy arrays); `captions[i]` is the text of skill index i."""

    def __init__(self, settings, config: DatasetConfig = DatasetConfig()):
        self.settings, self.config = settings, config
        if config.conditioning not in ("hindsight", "commanded"):
            raise ValueError(f"conditioning must be 'hindsight' or 'commanded', got {config.conditioning!r}")
        if config.successful_only and config.conditioning != "commanded":
            raise ValueError("successful_only filters by the commanded skill: it needs conditioning='commanded'")
        if config.demonstrations_only and config.conditioning != "hindsight":
            raise ValueError("demonstrations_only picks hindsight skills: it needs conditioning='hindsight'")
        if not (isinstance(config.achieved_boost, int) and config.achieved_boost >= 1):
            raise ValueError(f"achieved_boost must be an integer >= 1, got {config.achieved_boost!r}")
        from schemas import observation

        self.observation_version = config.observation_version or observation.CURRENT
        self.observation_size = observation.size(self.observation_version)
        from infra.lake_sql import open_lake

        con = open_lake(settings)  # one attachment for what the dataset needs to know before reading
        try:
            self.functions = self._functions(con)  # [(name, version)]
            self._check_observation_versions(con)
        finally:
            con.close()
        versions: dict[str, list[int]] = {}
        for name, version in self.functions:
            versions.setdefault(name, []).append(version)
        twice = {name: v for name, v in versions.items() if len(v) > 1}
        if config.conditioning == "commanded" and twice:  # a step's commanded skill has one caption, one reward
            raise ValueError("commanded conditioning takes one version per function, got "
                             + ", ".join(f"{n} versions {' and '.join(map(str, v))}" for n, v in twice.items())
                             + "; choose with --skills " + " ".join(f"{n}@{max(v)}" for n, v in twice.items())
                             + " (a name alone is its latest version)")
        self.captions = [_caption(name, version) for name, version in self.functions]
        specs = [f"{n}@{v}" for n, v in self.functions]
        unknown = set(config.weights) - set(specs)
        if unknown:
            raise ValueError(f"weights for functions not in the dataset: {', '.join(sorted(unknown))}; "
                             f"it has: {', '.join(specs)}")
        try:
            weights = np.array([float(config.weights.get(s, 1.0)) for s in specs])
        except (TypeError, ValueError):
            raise ValueError(f"skill weights must be numbers, got {config.weights!r}") from None
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"skill weights must be finite, >= 0 and not all zero, got {config.weights!r}")
        # integers, positive for every positive weight: exact sums in SQL whatever the mix
        units = np.where(weights > 0, np.maximum(1, np.round(weights / weights.max() * _WEIGHT_UNITS)), 0)
        self._weights = [int(u) for u in units]
        self._lock = threading.Lock()
        self._prefetchers: set[Prefetcher] = set()
        self._prefetcher: Prefetcher | None = None  # the latest iteration's (for inspection)
        self._reading: dict[int, object] = {}  # reading thread -> its connection, to interrupt it on close

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        prefetcher = Prefetcher(self._batches, self.config.prefetch, self._interrupt)  # this loop's own
        with self._lock:
            self._prefetchers.add(prefetcher)
            self._prefetcher = prefetcher
        try:
            yield from prefetcher
        finally:
            prefetcher.close()
            with self._lock:
                self._prefetchers.discard(prefetcher)

    def close(self) -> None:
        """Stop every iteration in progress (each ends at its next batch)."""
        with self._lock:
            prefetchers, self._prefetchers = list(self._prefetchers), set()
        for prefetcher in prefetchers:
            prefetcher.close()

    def _interrupt(self, thread) -> None:
        """End the query `thread` reads (if any) now, not at its next batch."""
        with self._lock:
            con = self._reading.get(thread.ident)
        if con is not None:
            con.interrupt()

    # --- the reading thread ---------------------------------------------------------------------

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        return rebatch(self._epochs(), self.config.batch_size, self.config.drop_last)

    def _epochs(self) -> Iterator[dict[str, np.ndarray]]:
        """Shuffled rows, epoch after epoch (a batch may span two, so an endless dataset's batches are
        all full); ends after `epochs`, or at an epoch that reads nothing rather than loop for ever."""
        c = self.config
        epoch = 0
        while c.epochs is None or epoch < c.epochs:
            passes = 1
            if c.demonstrations_only:
                passes = _DEMONSTRATION_PASSES if c.epochs is None else min(_DEMONSTRATION_PASSES, c.epochs - epoch)
            buffer, read = ShuffleBuffer(c.shuffle_buffer, seed=c.seed * 1_000_003 + epoch), 0
            for rows in self._rows(epoch, passes):
                read += len(rows["step"])
                yield from buffer.push(rows)
            yield from buffer.drain()
            if not read:
                return
            epoch += passes

    def _rows(self, epoch: int, passes: int = 1) -> Iterator[dict[str, np.ndarray]]:
        from infra.lake_sql import open_lake

        con = open_lake(self.settings, read_only=False)  # only our own SQL runs on it
        with self._lock:
            self._reading[threading.get_ident()] = con
        try:
            con.execute(f"SET memory_limit = '{self.config.memory_limit}'")
            # One thread: rows arrive in the same order on every run (the seeded shuffle then makes the
            # same batches) without a global sort, which would hold the whole dataset.
            con.execute("SET threads = 1")
            query = self._query(epoch, passes)
            reader = con.execute(query, [self.config.dataset]).to_arrow_reader(self.config.read_rows)
            for batch in reader:
                if batch.num_rows:
                    yield self._columns(batch)
        finally:
            with self._lock:
                self._reading.pop(threading.get_ident(), None)
            con.close()

    def _query(self, epoch: int, passes: int = 1) -> str:
        from infra.duck import sql_str

        size = self.observation_size
        cut = f"[1:{size}]" if self._newer else ""
        skills = ", ".join(f"({i}, {sql_str(n)}, {v}, {w}::BIGINT)"
                           for i, ((n, v), w) in enumerate(zip(self.functions, self._weights)) if w > 0)
        pick = self._commanded() if self.config.conditioning == "commanded" else self._hindsight(epoch, passes)
        return f"""
            WITH f(skill, reward_fn, reward_version, w) AS (VALUES {skills}),
            relabelled AS (
                SELECT r.episode_id, r.step, f.skill, r.reward, r.success, r.reward_fn, f.w
                FROM rewards r JOIN f ON r.reward_fn = f.reward_fn AND r.reward_version = f.reward_version
                WHERE r.dataset = $1),
{pick}
            s AS (
                SELECT st.episode_id, st.step, st.action, st.observation{cut} AS next_observation,
                       coalesce(lag(st.observation{cut}) OVER (PARTITION BY st.episode_id ORDER BY st.step),
                                CASE WHEN st.step = 0 THEN es.initial_observation{cut} END) AS observation
                FROM steps st LEFT JOIN episode_starts es ON es.episode_id = st.episode_id
                WHERE st.episode_id IN (SELECT episode_id FROM pick){f" AND len(st.observation) >= {size}" if self._older else ""})
            SELECT s.episode_id, s.step, s.observation, s.action, s.next_observation, p.skill, p.reward, p.success,
                   p.imitate
            FROM s JOIN pick p ON p.episode_id = s.episode_id AND p.step = s.step
            WHERE s.observation IS NOT NULL"""

    def _hindsight(self, epoch: int, passes: int = 1) -> str:
        """One relabelled row per step, drawn among the positive-weight functions that have a row for
        it: running sums of their (integer) weights, a skill the step demonstrates weighing `boost`
        times more (a segment is the unit: a misdirected "reach red" that ends above blue demonstrates
        "reach blue", but steps long before an incidental success, in another segment, do not); the
        seeded draw x in [0, total) picks the one whose [cum - w, cum) holds x. One string hashed, not
        hash(a, b, c): DuckDB's combined hash barely mixes the seed into its low bits (seeds 0, 1 and 3
        drew the same skills). `passes` > 1 draws for that many epochs at once (epoch + 0, 1, ...)."""
        seed = int(self.config.seed) * 1_000_003 + epoch
        demos = " WHERE achieved" if self.config.demonstrations_only else ""
        draws, seed = ("r", str(seed)) if passes == 1 else (f"r, range({int(passes)}) AS d(pass)", f"{seed} + pass")
        return f"""
            seg AS (  -- the commanded segments: runs of steps under one skill_id
                SELECT episode_id, step,
                       sum(CASE WHEN skill_id IS DISTINCT FROM prev THEN 1 ELSE 0 END)
                           OVER (PARTITION BY episode_id ORDER BY step) AS segment
                FROM (SELECT episode_id, step, skill_id,
                             lag(skill_id) OVER (PARTITION BY episode_id ORDER BY step) AS prev
                      FROM steps WHERE episode_id IN (SELECT episode_id FROM relabelled))),
            firsts AS (  -- a row holds the state after its action: the segment began where the row before left
                SELECT *, min(CASE WHEN success THEN step END)
                              OVER (PARTITION BY episode_id, segment, skill) AS first_success,
                          first_value(success_before)
                              OVER (PARTITION BY episode_id, segment, skill ORDER BY step) AS began_achieved
                FROM (SELECT x.*, seg.segment,
                             lag(x.success) OVER (PARTITION BY x.episode_id, x.skill ORDER BY x.step) AS success_before
                      FROM relabelled x JOIN seg ON seg.episode_id = x.episode_id AND seg.step = x.step)),
            a AS (
                SELECT episode_id, step, skill, reward, success,
                       coalesce(step <= first_success AND NOT coalesce(began_achieved, false), false) AS achieved,
                       w * (CASE WHEN achieved THEN {int(self.config.achieved_boost)} ELSE 1 END) AS w
                FROM firsts{demos}),
            r AS (
                SELECT *, sum(w) OVER (PARTITION BY episode_id, step ORDER BY skill
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
                          sum(w) OVER (PARTITION BY episode_id, step) AS total
                FROM a),
            pick AS (
                SELECT episode_id, step, skill, reward, success, achieved AS imitate FROM {draws}
                WHERE (hash(concat_ws(':', episode_id, step, {seed})) % {_BUCKETS})::HUGEINT * total // {_BUCKETS}
                      BETWEEN cum - w AND cum - 1),"""

    def _commanded(self) -> str:
        """The rewards row of the step's own skill (a skill's reward function has its name); with
        `successful_only`, only steps of skills their episode achieved (episode.ended's outcomes)."""
        achieved = """
                JOIN (SELECT DISTINCT episode_id, o.skill_id AS skill_id
                      FROM (SELECT episode_id, unnest(skills) AS o FROM episode_ends) WHERE o.success) ok
                  ON ok.episode_id = st.episode_id AND ok.skill_id = st.skill_id""" if self.config.successful_only else ""
        return f"""
            pick AS (
                SELECT x.episode_id, x.step, x.skill, x.reward, x.success, true AS imitate FROM relabelled x
                JOIN steps st ON st.episode_id = x.episode_id AND st.step = x.step AND st.skill_id = x.reward_fn{achieved}),"""

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
                "imitate": batch.column("imitate").to_numpy(zero_copy_only=False).astype(bool),
                "episode_id": np.array(batch.column("episode_id").to_pylist(), dtype=object),
                "step": batch.column("step").to_numpy(zero_copy_only=False).astype(np.int32)}

    def _check_observation_versions(self, con) -> None:
        """Episodes of an earlier observation version than the model's lack fields it reads: left out,
        said once; none left is an error naming the versions (an episode's env_version is its
        observation version). Episodes of other environments are read as they are."""
        import logging

        from schemas.observation import ENV_NAME

        counts = dict(con.execute(
            "SELECT env_version, count(*) FROM episode_starts WHERE env_name = ? AND episode_id IN "
            "(SELECT DISTINCT episode_id FROM rewards WHERE dataset = ?) GROUP BY 1",
            [ENV_NAME, self.config.dataset]).fetchall())
        older = {v: n for v, n in counts.items() if v < self.observation_version}
        # The common case, one version, reads observations as they are (cutting lists costs time).
        self._older, self._newer = bool(older), any(v > self.observation_version for v in counts)
        if older and sum(older.values()) == sum(counts.values()):
            raise ValueError(f"dataset {self.config.dataset!r} holds only episodes of observation version "
                             f"{', '.join(f'v{v}' for v in sorted(older))}, and this model reads "
                             f"v{self.observation_version}: train with --observation-version {max(older)}")
        if older:
            logging.getLogger(__name__).warning(
                "dataset %r: leaving out %d episodes of observation %s (the model reads v%d)", self.config.dataset,
                sum(older.values()), ", ".join(f"v{v}" for v in sorted(older)), self.observation_version)

    def _functions(self, con) -> list[tuple[str, int]]:
        dataset = self.config.dataset
        wanted = None
        if self.config.functions is not None:
            wanted = []
            for spec in self.config.functions:
                name, at, version = spec.partition("@")
                if not name or (at and not (version.isascii() and version.isdecimal())):
                    raise ValueError(f"name functions as NAME or NAME@VERSION, got {spec!r}")
                wanted.append((spec, name, int(version) if at else None))
        present = [tuple(r) for r in con.execute("SELECT DISTINCT reward_fn, reward_version FROM rewards "
                                                 "WHERE dataset = ? ORDER BY ALL", [dataset]).fetchall()]
        if not present:
            raise ValueError(f"dataset {dataset!r} has no rewards rows; run `robolake relabel --name {dataset}` first")
        latest = {name: version for name, version in present}  # sorted: the last is the latest
        if wanted is None:
            return sorted(latest.items())
        chosen, missing = [], []
        for spec, name, version in wanted:
            found = (name, latest.get(name) if version is None else version)
            if found in present:
                chosen.append(found)
            else:
                missing.append(spec)
        if missing:
            raise ValueError(f"dataset {dataset!r} has no rewards rows for {', '.join(missing)}; run `robolake "
                             f"relabel --name {dataset} --rewards {' '.join(missing)}` first; it has: "
                             + ", ".join(f"{n}@{v}" for n, v in present))
        return list(dict.fromkeys(chosen))


def _caption(name: str, version: int) -> str:
    from producers.sim.rewards import REWARDS

    fn = REWARDS.get((name, version))
    return fn.caption if fn is not None else name  # a function no longer registered keeps its name


class Mixture:
    """Batches joined from two datasets, `a`'s rows first (e.g. a fixed share of demonstrations in
    every batch); ends when either does. Same captions in both (the same functions)."""

    def __init__(self, a: LakeDataset, b: LakeDataset):
        if a.functions != b.functions:
            raise ValueError("a mixture needs datasets of the same functions")
        self.a, self.b = a, b
        self.functions, self.captions = a.functions, a.captions

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        a, b = iter(self.a), iter(self.b)
        try:
            for x, y in zip(a, b):
                yield {k: np.concatenate([x[k], y[k]]) for k in x}
        finally:  # stop both reading threads, whichever ended
            a.close()
            b.close()

    def close(self) -> None:
        self.a.close()
        self.b.close()
