"""Episodes of the lake as a LeRobot dataset (format v3.0), which LeRobot loads with its own
`LeRobotDataset(repo_id, root=OUT)`.

What is written under OUT:

    meta/info.json                 frame rate, features (every float named), counts, path templates
    meta/tasks.parquet             the task captions (the episodes' `task`), by task_index
    meta/episodes/chunk-000/file-000.parquet
                                   one row per episode: its task, frame range, data and video files, statistics,
                                   and where it came from (`robolake/episode_id`, `robolake/experiment_id`)
    meta/stats.json                per feature: min, max, mean, std, count and quantiles (feature_stats.py)
    data/chunk-CCC/file-FFF.parquet
                                   one row per frame: observation.state, action, next.reward, next.done and
                                   LeRobot's timestamp, frame_index, episode_index, index, task_index
    videos/observation.images.front/chunk-CCC/file-FFF.mp4
                                   the camera, where the selected episodes have frames (video.py)

A frame is what the policy saw and what it did. A lake step row holds an action and the observation
after it (learner/dataset.py), so frame t of an episode is row t's action with the observation before
it: row t-1's, or for row 0 the episode's initial observation (episodes written before it existed
start at row 1). `next.reward` is row t's task reward; `next.done` marks the episode's last frame. The
image of frame t is the one the lake holds on row t-1 (rendered after that row's action): nothing was
rendered before row 0, so with video every episode starts at row 1, and every other row needs its
image (episodes recorded with `--frame-every` > 1 export without video only).

The observation's floats are named by its version (schemas/observation.py); a selection of several
versions is exported at the oldest, since a version only appends floats. Episodes of another
environment (the synthetic producer's) get numbered names. The frame rate is the steps' sim_time rate.
Only a finished dataset appears at OUT: it is written beside it, then renamed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consumers.export import feature_stats
from infra.lake_sql import check_read_only, limits, open_lake
from schemas import observation

CODEBASE_VERSION = "v3.0"
CAMERA = "observation.images.front"  # producers.sim.env renders the "front" camera
CHUNK_FILES = 1000         # files per chunk directory, as LeRobot
FILE_FRAMES = 100_000      # frames per data file and video: well under LeRobot's 100 MB and 200 MB at 64x64
EPISODES_PER_READ = 64     # episodes read from the lake at once: bounds the memory an export takes
_PATH = "chunk-{chunk_index:03d}/file-{file_index:03d}"
_SCALAR = {"shape": [1], "names": None}


class ExportError(ValueError):
    """The selection cannot be exported as asked (the message says how to select)."""


@dataclass(frozen=True)
class ExportStats:
    episodes: int
    frames: int
    tasks: int
    fps: int
    video: bool


def export_lerobot(settings, out: Path, where: str = "TRUE", video: bool = True) -> ExportStats:
    """Write the complete episodes matching `where` (a predicate on the episodes view, read-only
    as `robolake sql`) to the directory `out` (absent or empty). Video unless `video` is False or
    no selected episode has frames."""
    out = Path(out).resolve()
    _remove_dead_stagings(out)
    con = open_lake(settings)
    staging = out.parent / f".{out.name}.{os.getpid()}.partial"  # the exporter's pid: a dead one's is removed
    staging.mkdir()
    try:
        con.execute("BEGIN TRANSACTION")  # every query below reads one snapshot of the lake
        video = _select(con, settings, where, video)
        stats = _Writer(staging, *_layout(con), _fps(con), video).write(con)
        os.replace(staging, out)
        return stats
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        con.close()


def _remove_dead_stagings(out: Path) -> None:
    """What a killed export to `out` left beside it (kill -9 runs no cleanup)."""
    import glob

    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
        pid = stale.name.removesuffix(".partial").rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _select(con, settings, where: str, video: bool) -> bool:
    """Register `_chosen`: the episodes to export, in the order they started, with their
    episode_index; whether they are exported with video."""
    sql = f"SELECT episode_id FROM episodes WHERE {where}"
    check_read_only(con, sql)
    with limits(con, settings):  # the ids alone: inside IN (…) a column the view lacks would bind outside
        con.register("_selected", con.execute(sql).to_arrow_table())
    selected, framed, unframed = con.execute("""
        SELECT count(*), count(*) FILTER (WHERE framed > 0), count(*) FILTER (WHERE framed < length - 1)
        FROM (SELECT e.episode_id, any_value(e.length) AS length,
                     count(f.step) FILTER (WHERE f.step < e.length - 1) AS framed
              FROM episodes e LEFT JOIN frames_all f USING (episode_id)
              WHERE e.episode_id IN (SELECT episode_id FROM _selected) GROUP BY e.episode_id)""").fetchone()
    if not selected:
        raise ExportError(f"no complete episode matches {where!r}: nothing to export")
    video = video and framed > 0
    if video and unframed:
        raise ExportError(f"{unframed} of {selected} selected episodes lack camera frames on some steps (recorded "
                          "without --frames, or with --frame-every > 1): leave them out with --where, or export "
                          "without video (--no-video)")
    first = "TRUE" if video else "s.initial_observation IS NULL"  # row 0 has no frame before it
    chosen = con.execute(f"""
        SELECT e.episode_id, e.experiment_id, e.task, e.env_name, e.env_version,
               e.length - CASE WHEN {first} THEN 1 ELSE 0 END AS frames
        FROM episodes e JOIN episode_starts s USING (episode_id)
        WHERE e.episode_id IN (SELECT episode_id FROM _selected)
        ORDER BY e.started_at, e.episode_id""").to_arrow_table()
    chosen = chosen.filter(pc.greater(chosen["frames"], 0))
    if not chosen.num_rows:
        raise ExportError(f"the {selected} episodes matching {where!r} have a single step, which makes no frame")
    con.register("_chosen", chosen.append_column("episode_index", pa.array(np.arange(chosen.num_rows))))
    return video


def _layout(con) -> tuple[list[str], list[str], str | None]:
    """The names of the state's and the action's floats, and the robot."""
    rows = con.execute("""
        SELECT c.env_name, min(c.env_version), list(DISTINCT len(s.observation)), list(DISTINCT len(s.action))
        FROM steps_all s JOIN _chosen c USING (episode_id) GROUP BY ALL ORDER BY ALL""").fetchall()
    if len(rows) > 1:
        envs = ", ".join(r[0] for r in rows)
        raise ExportError(f"the selected episodes come from several environments ({envs}): select one with "
                          f"--where \"env_name = '{rows[0][0]}'\"")
    env, version, observations, actions = rows[0]
    if env == observation.ENV_NAME:
        return observation.names(version), list(observation.ACTION_NAMES), "panda"
    if len(observations) > 1 or len(actions) > 1:
        raise ExportError(f"the selected {env} episodes' observations or actions differ in length "
                          f"({sorted(observations)}, {sorted(actions)}): select episodes of one length")
    return [f"obs_{i}" for i in range(observations[0])], [f"action_{i}" for i in range(actions[0])], None


def _fps(con) -> int:
    """Frames per second: the steps' rate of simulated time, one for all the selected episodes."""
    rates = con.execute("""
        SELECT list(DISTINCT rate ORDER BY rate) FILTER (WHERE rate IS NOT NULL) FROM (
            SELECT round(1 / median(dt))::BIGINT AS rate FROM (
                SELECT episode_id, sim_time - lag(sim_time) OVER (PARTITION BY episode_id ORDER BY step) AS dt
                FROM steps_all WHERE episode_id IN (SELECT episode_id FROM _chosen))
            WHERE dt > 0 GROUP BY episode_id)""").fetchone()[0]
    if len(rates or []) != 1:
        raise ExportError(f"the selected episodes have no single step rate (steps per second of sim_time: "
                          f"{rates or 'none'}): select episodes recorded at one rate")
    return int(rates[0])


class _Writer:
    """Writes the dataset under `root`, an episode at a time (data files and videos roll together)."""

    def __init__(self, root: Path, state_names: list[str], action_names: list[str], robot: str | None, fps: int,
                 video: bool):
        self.root, self.fps, self.video = root, fps, video
        self.state_names, self.action_names, self.robot = state_names, action_names, robot
        self.schema = pa.schema([("observation.state", pa.list_(pa.float32(), len(state_names))),
                                 ("action", pa.list_(pa.float32(), len(action_names))),
                                 ("next.reward", pa.float32()), ("next.done", pa.bool_()), ("timestamp", pa.float32()),
                                 *((name, pa.int64()) for name in ("frame_index", "episode_index", "index", "task_index"))])
        self.file, self.in_file, self.data, self.mp4 = -1, 0, None, None
        self.episodes, self.stats, self.tasks, self.frames, self.image_shape = [], [], {}, 0, None

    def write(self, con) -> ExportStats:
        try:
            count = con.execute("SELECT count(*) FROM _chosen").fetchone()[0]
            for low in range(0, count, EPISODES_PER_READ):
                for episode in _split(self._read(con, low, low + EPISODES_PER_READ - 1)):
                    self._episode(con, episode)
        finally:
            self._close_files()
        self._meta()
        return ExportStats(len(self.episodes), self.frames, len(self.tasks), self.fps, self.video)

    def _read(self, con, low: int, high: int) -> pa.Table:
        """The frames of episodes low..high (by episode_index), in order (see the module docstring)."""
        size = len(self.state_names)
        image, frames = ("lag(f.frame) OVER w", "LEFT JOIN frames_all f ON f.episode_id = st.episode_id AND "
                         "f.step = st.step") if self.video else ("NULL::BLOB", "")
        initial = "NULL" if self.video else "s.initial_observation"
        return con.execute(f"""
            SELECT * FROM (
                SELECT c.episode_index, st.step, st.action, st.task_reward, {image} AS image,
                       coalesce(lag(st.observation) OVER w,
                                CASE WHEN st.step = 0 THEN {initial} END)[1:{size}] AS state
                FROM steps_all st JOIN _chosen c USING (episode_id) JOIN episode_starts s USING (episode_id) {frames}
                WHERE c.episode_index BETWEEN ? AND ?
                WINDOW w AS (PARTITION BY st.episode_id ORDER BY st.step))
            WHERE state IS NOT NULL {"AND image IS NOT NULL" if self.video else ""}
            ORDER BY episode_index, step""", [low, high]).to_arrow_table()

    def _episode(self, con, table: pa.Table) -> None:
        index = table["episode_index"][0].as_py()
        episode_id, experiment_id, task = con.execute(
            "SELECT episode_id, experiment_id, task FROM _chosen WHERE episode_index = ?", [index]).fetchone()
        n = table.num_rows
        if self.file < 0 or self.in_file >= FILE_FRAMES:
            self._next_file()
        task_index = self.tasks.setdefault(task, len(self.tasks))
        columns = {"observation.state": _floats(table["state"], len(self.state_names)),
                   "action": _floats(table["action"], len(self.action_names)),
                   "next.reward": table["task_reward"].to_numpy().astype(np.float32),
                   "next.done": np.arange(n) == n - 1, "timestamp": (np.arange(n) / self.fps).astype(np.float32),
                   "frame_index": np.arange(n), "episode_index": np.full(n, index),
                   "index": self.frames + np.arange(n), "task_index": np.full(n, task_index)}
        self.data.write_table(pa.table({name: _arrow(columns[name], self.schema.field(name).type)
                                        for name in self.schema.names}, schema=self.schema))
        stats = {name: feature_stats.of_values(values) for name, values in columns.items()}
        chunk, file = divmod(self.file, CHUNK_FILES)
        row = {"episode_index": index, "tasks": [task], "length": n, "data/chunk_index": chunk,
               "data/file_index": file, "dataset_from_index": self.frames, "dataset_to_index": self.frames + n}
        if self.video:
            from consumers.export.video import decode_png

            pixels = np.stack([decode_png(png) for png in table["image"].to_pylist()])
            if self.image_shape not in (None, pixels.shape[1:]):
                raise ExportError(f"episode {episode_id}'s frames are {pixels.shape[1:]}, others "
                                  f"{self.image_shape}: select frames of one size")
            self.image_shape = pixels.shape[1:]
            start = self.mp4.frames
            for frame in pixels:
                self.mp4.add(frame)
            stats[CAMERA] = feature_stats.of_images(pixels)
            row.update({f"videos/{CAMERA}/chunk_index": chunk, f"videos/{CAMERA}/file_index": file,
                        f"videos/{CAMERA}/from_timestamp": start / self.fps,
                        f"videos/{CAMERA}/to_timestamp": (start + n) / self.fps})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                    "robolake/episode_id": episode_id, "robolake/experiment_id": experiment_id})
        row.update({f"stats/{name}/{k}": v.tolist() for name, s in stats.items() for k, v in s.items()})
        self.episodes.append(row)
        self.stats.append(stats)
        self.frames += n
        self.in_file += n

    def _next_file(self) -> None:
        self._close_files()
        self.file, self.in_file = self.file + 1, 0
        chunk, file = divmod(self.file, CHUNK_FILES)
        path = self.root / "data" / f"{_PATH.format(chunk_index=chunk, file_index=file)}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.data = pq.ParquetWriter(path, self.schema)  # a row group per episode, as LeRobot writes
        if self.video:
            from consumers.export.video import Mp4

            path = self.root / "videos" / CAMERA / f"{_PATH.format(chunk_index=chunk, file_index=file)}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.mp4 = Mp4(path, self.fps)

    def _close_files(self) -> None:
        for writer in (self.data, self.mp4):
            if writer is not None:
                writer.close()
        self.data = self.mp4 = None

    def _meta(self) -> None:
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), meta / "episodes" / "chunk-000" / "file-000.parquet")
        pq.write_table(_tasks(list(self.tasks)), meta / "tasks.parquet")
        names = self.stats[0].keys()
        stats = {name: feature_stats.aggregate([s[name] for s in self.stats]) for name in names}
        (meta / "stats.json").write_text(json.dumps(
            {name: {k: v.tolist() for k, v in s.items()} for name, s in stats.items()}, indent=2))
        (meta / "info.json").write_text(json.dumps(self._info(), indent=2))

    def _info(self) -> dict:
        features = {"observation.state": {"dtype": "float32", "shape": [len(self.state_names)],
                                          "names": self.state_names},
                    "action": {"dtype": "float32", "shape": [len(self.action_names)], "names": self.action_names},
                    "next.reward": {"dtype": "float32", **_SCALAR}, "next.done": {"dtype": "bool", **_SCALAR}}
        if self.video:
            from consumers.export.video import CODEC, PIXEL_FORMAT

            height, width, channels = self.image_shape
            features[CAMERA] = {"dtype": "video", "shape": [height, width, channels],
                                "names": ["height", "width", "channels"],
                                "info": {"video.height": height, "video.width": width, "video.codec": CODEC,
                                         "video.pix_fmt": PIXEL_FORMAT, "video.is_depth_map": False,
                                         "video.fps": self.fps, "video.channels": channels, "has_audio": False}}
        features["timestamp"] = {"dtype": "float32", **_SCALAR}
        features.update({name: {"dtype": "int64", **_SCALAR}
                         for name in ("frame_index", "episode_index", "index", "task_index")})
        return {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot, "total_episodes": len(self.episodes),
                "total_frames": self.frames, "total_tasks": len(self.tasks), "chunks_size": CHUNK_FILES,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"},
                "data_path": f"data/{_PATH}.parquet",
                "video_path": f"videos/{{video_key}}/{_PATH}.mp4" if self.video else None,
                "features": features}


def _split(table: pa.Table):
    """The tables of each episode of `table` (sorted by episode_index)."""
    indices = table["episode_index"].to_numpy()
    starts = np.flatnonzero(np.r_[True, indices[1:] != indices[:-1]]) if len(indices) else []
    for start, end in zip(starts, [*starts[1:], len(indices)]):
        yield table.slice(start, end - start)


def _floats(column: pa.ChunkedArray, size: int) -> np.ndarray:
    return pc.list_flatten(column).to_numpy().astype(np.float32).reshape(-1, size)


def _arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(type_):
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), type_.value_type), type_.list_size)
    return pa.array(values, type_)


def _tasks(captions: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes a frame indexed by `task` (LeRobot reads it with pandas; the
    metadata is pandas' documented one, so no pandas is needed here)."""
    columns = [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                "metadata": None},
               {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                "metadata": None}]
    pandas = {"index_columns": ["task"], "column_indexes": [], "columns": columns}
    table = pa.table({"task_index": pa.array(range(len(captions)), pa.int64()), "task": pa.array(captions, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})
