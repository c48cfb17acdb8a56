"""`robolake verify`: the lake's steps at rest against the digests recorded when they arrived.

Each steps message became rows of `steps` and one row of `chunks` with the digest of its content
(schemas/codec.chunk_digest), and the episode's end carries a checksum over its chunks' digests.
The commit checked them; this checks the stored rows: every chunk's digest is computed again from
its rows in `steps` (a chunk is one source message: same _log, _topic, _partition, _offset) and
compared with the recorded digest, and the episode's checksum with the one over the new digests.
Each episode's row in `episode_status` is compared with what its rows say now (infra/episode_status.py).
A data file that does not decode fails its episodes' batch, which is then reported by file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from infra import episode_status
from infra.duck import sql_str
from infra.lake_files import damaged_file, data_files
from infra.lake_sql import open_lake
from schemas import lake
from schemas.codec import chunk_digest, episode_checksum

BATCH = 200  # episodes per query: bounded memory, few queries


@dataclass
class Damage:
    episode_id: str
    experiment_id: str
    problem: str
    files: list[str] = field(default_factory=list)


@dataclass
class VerifyResult:
    episodes: int = 0
    damaged: list[Damage] = field(default_factory=list)


def verify(settings, experiment: str | None = None, progress=None) -> VerifyResult:
    """Recompute every chunk digest (of `experiment`'s episodes, or all) from the stored steps."""
    con = open_lake(settings)
    try:
        where = f"WHERE experiment_id = {sql_str(experiment)}" if experiment else ""
        episodes = con.execute(f"SELECT DISTINCT episode_id, experiment_id FROM chunks {where} ORDER BY ALL").fetchall()
        result = VerifyResult(episodes=len(episodes))
        for start in range(0, len(episodes), BATCH):
            batch = dict(episodes[start:start + BATCH])
            result.damaged += _check(con, batch)
            if progress is not None:
                progress(len(batch))
        result.damaged += _status_mismatches(con, experiment)
        return result
    finally:
        con.close()


def _status_mismatches(con, experiment: str | None) -> list[Damage]:
    """Episodes whose row in the `episode_status` table (kept by the commits) is not what their rows
    in the lake say now (nothing to check where the table is missing, or not kept since an older
    writer committed)."""
    if not episode_status.is_kept(con):
        return []  # the views compute every status; the next writer's commit computes the table again
    mine = f"AND coalesce(k.experiment_id, c.experiment_id) = {sql_str(experiment)}" if experiment else ""
    rows = con.execute(f"""
        SELECT episode_id, coalesce(k.experiment_id, c.experiment_id), k.problem, c.problem, k.episode_id IS NULL
        FROM (SELECT episode_id, experiment_id, problem FROM lake.{lake.STATUS}) k
        FULL JOIN ({episode_status.COMPUTED}) c USING (episode_id)
        WHERE (k.episode_id IS NULL OR c.episode_id IS NULL OR k.problem IS DISTINCT FROM c.problem) {mine}
        ORDER BY episode_id""").fetchall()
    return [Damage(episode, experiment_id, f"episode_status says {'nothing' if unkept else kept or 'complete'}, "
                   f"its rows say {computed or 'complete'}") for episode, experiment_id, kept, computed, unkept in rows]


def _check(con, episodes: dict[str, str]) -> list[Damage]:
    import duckdb

    con.register("_batch", _ids(list(episodes)))
    try:
        recorded = con.execute(
            "SELECT episode_id, chunk, digest, _log, _topic, _partition, _offset FROM chunks "
            "WHERE episode_id IN (SELECT episode_id FROM _batch) ORDER BY episode_id, chunk").fetchall()
        ends = dict(con.execute("SELECT episode_id, any_value(checksum) FROM episode_ends "
                                "WHERE episode_id IN (SELECT episode_id FROM _batch) GROUP BY ALL").fetchall())
        unreadable: list[Damage] = []
        try:
            steps = _steps(con, "SELECT episode_id FROM _batch")
        except duckdb.Error:  # a file that does not decode: find it, and which episodes it takes down
            found = damaged_file(con, [lake.STEPS])
            why, where = (f"unreadable: {found[1]}", [found[0]]) if found else ("unreadable", [])
            parts = []
            for episode, experiment in episodes.items():
                try:
                    parts.append(_steps(con, f"SELECT {sql_str(episode)}", experiment))
                except duckdb.Error:
                    unreadable.append(Damage(episode, experiment, why, where))
            steps = pa.concat_tables(parts) if parts else None
    finally:
        con.unregister("_batch")
    digests = _digests(steps) if steps is not None else {}
    damaged: dict[str, Damage] = {d.episode_id: d for d in unreadable}
    recomputed: dict[str, list[str]] = {}
    for episode, chunk, digest, *source in recorded:
        now = digests.get((episode, *source))
        recomputed.setdefault(episode, []).append(now or "")
        if now != digest:
            problem = f"chunk {chunk}: " + ("its steps are missing" if now is None else "steps differ from its digest")
            damaged.setdefault(episode, Damage(episode, episodes[episode], problem))
    for episode, new in recomputed.items():
        if episode not in damaged and ends.get(episode) not in (None, episode_checksum(new)):
            damaged[episode] = Damage(episode, episodes[episode], "checksum differs from the episode's end")
    if len(damaged) > len(unreadable):
        _name_files(con, [d for d in damaged.values() if not d.files])
    return list(damaged.values())


def _steps(con, episodes_sql: str, experiment: str | None = None):
    """The steps of the episodes, each message's rows together; with `experiment`, only that
    experiment's files are read (a damaged file elsewhere is not touched)."""
    partition = f"experiment_id = {sql_str(experiment)} AND " if experiment else ""
    return con.execute(
        "SELECT episode_id, _log, _topic, _partition, _offset, step, reward, observation, action "
        f"FROM steps_all WHERE {partition}episode_id IN ({episodes_sql}) "
        "ORDER BY episode_id, _log, _topic, _partition, _offset, step").to_arrow_table()


def _digests(steps) -> dict[tuple, str]:
    """(episode, log, topic, partition, offset) -> digest of that message's rows (sorted by step)."""
    import pyarrow.compute as pc

    out = {}
    if steps.num_rows == 0:
        return out
    keys = steps.select(["episode_id", "_log", "_topic", "_partition", "_offset"]).to_pylist()
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out[tuple(keys[start].values())] = chunk_digest(_plain(steps.slice(start, i - start), pc))
            start = i
    return out


def _plain(rows, pc):
    """The columns as the producer's Arrow types (DuckDB may hand back other list types)."""
    return pa.table({"step": pc.cast(rows["step"], pa.int32()), "reward": pc.cast(rows["reward"], pa.float32()),
                     "observation": pc.cast(rows["observation"], pa.list_(pa.float32())),
                     "action": pc.cast(rows["action"], pa.list_(pa.float32()))})


def _name_files(con, damaged: list[Damage]) -> None:
    """Each damaged episode's steps data files (rows inlined in the catalog have none)."""
    files = [path for _, path, _ in data_files(con, [lake.STEPS])]
    wanted = {d.episode_id: d for d in damaged}
    for path in files:
        try:
            held = con.execute(f"SELECT DISTINCT episode_id FROM read_parquet({sql_str(path)}) "
                               "WHERE list_contains(?, episode_id)", [list(wanted)]).fetchall()
        except Exception:  # undecodable: reported by its own episodes
            continue
        for (episode,) in held:
            wanted[episode].files.append(path)


def _ids(ids: list[str]):
    return pa.table({"episode_id": pa.array(ids, pa.string())})
