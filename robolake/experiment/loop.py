"""`robolake run`: the experimenter's loop, a sequence of stages whose progress is on the log.

Each iteration runs the stages of robolake/experiment/stages.py in order. When a stage finishes,
a `run.stage` event says so (with what it produced); the run's state is the projection of those
events in the lake (state.py), so after a SIGKILL anywhere, the next `robolake run` of the
experiment skips the finished stages and redoes the interrupted one, which sends only what the
lake lacks. Before a stage is recorded, everything it sent is made durable in the lake: on the
in-process bus the run sinks it itself; on Kafka it waits until the lake sink (`robolake sink`,
another process) has written every partition up to the end offsets of the moment.

A stage that fails with a known error (the model unreachable, a NaN loss, the lake sink behind) is
recorded as a failed attempt and retried after a growing pause; after `retries` attempts the run
records why it stopped and exits non-zero. One run per experiment and lake at a time (a lock file
beside the lake's catalog): a second refuses.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from consumers.curriculum.stages import stable_id
from consumers.lake_sink.sink import sink_in_process
from producers.rollout import VIDEO_FRAME_EVERY, RolloutConfig
from producers.sim.announce import BASE_SKILLS
from producers.workers import run_decision_seeds
from robolake.experiment import external, stages
from robolake.experiment.errors import AlreadyRunning, ExperimentChanged, SinkBehind, StageFailed
from robolake.experiment.state import RunState, complete_seeds, decisions, episode_count, load_state
from schemas import topics
from schemas.events import RUN_STAGE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    experiment_id: str
    iterations: int = 3                    # stop after this many iterations ...
    budget_episodes: int | None = None     # ... or once the collections hold this many episodes
    keep_going: bool = False               # True: the analysis's stop does not end the run
    collection: str = "curriculum"         # curriculum | random (uniform random skills: the baseline)
    base_skills: tuple[str, ...] = BASE_SKILLS
    bootstrap_episodes: int = 3            # per skill new to the experiment, clean (base skills: and half as many noisy)
    bootstrap_noise: float = 0.3
    episodes_per_decision: int = 6         # per curriculum (or random) decision ...
    max_tasks: int = 3                     # decisions per round at most (a curriculum round always
                                           # collects max_tasks * episodes_per_decision, spread over its decisions)
    eval_episodes: int = 3                 # per announced skill, per iteration
    eval_videos: int = 2                   # of which the first N record frames (the report's videos) ...
    frame_size: int = 128                  # ... of this many px square
    train_steps: int = 200                 # learner steps per iteration
    model: str = "tiny"
    alpha: float | None = None             # PAC's BC weight (None: the config's)
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    retries: int = 3                       # attempts per stage before the run stops
    sink_timeout_s: float = 300.0          # Kafka: how long to wait for the lake sink
    external_workers: bool = False         # Kafka: `robolake produce --from-decisions` runs the decisions
    external_learner: bool = False         # Kafka: `robolake learn` trains
    external_timeout_s: float = 1800.0     # ... and this long without a new episode or step is a failure

    def identity(self) -> dict:
        """What makes an experiment what it is: a rerun must not change it (the rest may change)."""
        return {"base_skills": list(self.base_skills), "collection": self.collection, "model": self.model,
                "seed": self.seed}


@dataclass
class Outcome:
    iterations: int
    stopped: str | None = None             # why the run ended before its iterations (None: it did not)
    state: RunState | None = field(default=None, repr=False)


class Run:
    """One `robolake run` process: the settings, the bus and the helpers the stages share."""

    def __init__(self, settings, config: RunConfig, vlm=None, say=print, bars=True, describe_failure=None,
                 recorded_config: dict | None = None):
        """`describe_failure`: how a rollout worker process reports an expected failure (producers.workers);
        `recorded_config`: the run's config as its caller resolved it (`robolake run`'s keys), recorded at
        the experiment's start for its report (None: the RunConfig's fields)."""
        from infra.bus.backend import open_bus

        self.settings, self.config, self.vlm_inner, self.say, self.bars = settings, config, vlm, say, bars
        self.describe_failure, self.recorded_config = describe_failure, recorded_config
        self.bus = open_bus(settings)
        self.producer = self.bus.producer()
        self.run_id = f"{config.experiment_id}-pac"
        # How this process's workers roll out (each decision sets the skills, the experiment and who acts;
        # only an evaluation's first episodes render, as videos).
        self.rollout = RolloutConfig(skills=("go_home",), task_skill="go_home", worker_id="run",
                                     frame_every=VIDEO_FRAME_EVERY, frame_size=config.frame_size,
                                     eval_videos=config.eval_videos)
        self.dataset = f"run:{config.experiment_id}"
        self.state = RunState(config.experiment_id)
        self._encoder = None
        self.offsets_reader = None  # on Kafka: the log's ids, for wait_for_sink
        self.attempt = 1  # of the stage running

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> Outcome:
        with self._only_run():
            self.bus.ensure_topics([topics.CURRICULUM, topics.RUNS, topics.SKILLS])
            self.sync()  # on Kafka: the lake sink is running and caught up, or SinkBehind says so
            self.state = self._load()
            started = self.state.detail(0, "plan").get("experiment")
            if started is not None and started != self.config.identity():
                changed = ", ".join(f"{k} {started[k]} (now {v})" for k, v in self.config.identity().items()
                                    if started.get(k) != v)
                raise ExperimentChanged(f"experiment {self.config.experiment_id!r} was started with {changed}; "
                                        "resume it as it was, or start a new experiment id")
            resumed = bool(self.state.done)
            for iteration in range(self.config.iterations):
                for name in stages.ORDER:
                    if not self.state.is_done(iteration, name):
                        if resumed:  # once, where this process takes over
                            self.say(self._resuming(iteration, name))
                            resumed = False
                        self._stage(iteration, name)
                reason = self._stop_reason(iteration)
                if reason:
                    self.say(f"stopping after iteration {iteration + 1}: {reason}")
                    return Outcome(iteration + 1, reason, self.state)
            return Outcome(self.config.iterations, None, self.state)

    def _resuming(self, iteration: int, name: str) -> str:
        where = ""
        if name == "train":  # a killed training resumes from its last checkpoint, not from the stage's start
            from learner.checkpoints import CheckpointStore

            step = CheckpointStore(self.settings, self.run_id).latest_step()
            where = f", from the checkpoint at step {step}" if step else ""
        return (f"resuming experiment {self.config.experiment_id!r} at iteration {iteration + 1}, stage {name}{where} "
                f"({len(self.state.done)} stages done before)")

    def _stage(self, iteration: int, name: str) -> None:
        attempt = self.state.failures.get((iteration, name), 0) + 1  # numbered across restarts
        tries = 1                                                      # this process's, for the limit
        while True:
            self.say(f"[iteration {iteration + 1}/{self.config.iterations}] {name} ...")
            started = time.monotonic()
            self.attempt = attempt  # an external learner's request is numbered with its stage's attempt
            try:
                detail = stages.STAGES[name](self, iteration)
                self.sync()
            except retryable() as exc:
                if interrupted(exc):  # Ctrl-C inside DuckDB comes back wrapped: it is not a failure
                    raise KeyboardInterrupt from exc
                self.record(iteration, name, "failed", {"error": f"{type(exc).__name__}: {exc}"}, attempt)
                if tries >= self.config.retries:
                    reason = f"{name} of iteration {iteration + 1} failed {tries} times; the last: {exc}"
                    self.record(iteration, name, "stopped", {"reason": reason}, attempt)
                    raise StageFailed(reason) from exc
                pause = min(60.0, 2.0 ** tries)
                self.say(f"  {name} failed ({exc}); try {tries + 1} of {self.config.retries} in {pause:.0f}s")
                time.sleep(pause)
                attempt, tries = attempt + 1, tries + 1
                continue
            self.record(iteration, name, "done", detail, attempt)
            self.state.done[(iteration, name)] = json.loads(json.dumps(detail, default=str))  # as recorded
            self.say(f"  {name} done in {time.monotonic() - started:.1f}s: {_brief(detail)}")
            return

    def _stop_reason(self, iteration: int) -> str | None:
        stop = self.state.detail(iteration, "analysis").get("stop")
        if stop and not self.config.keep_going:
            return f"the analysis says stop ({stop})"
        if self.config.budget_episodes is not None:
            con = self.open()
            try:
                spent = episode_count(con, self.config.experiment_id)
            finally:
                con.close()
            if spent >= self.config.budget_episodes:
                return f"the episode budget is spent ({spent} of {self.config.budget_episodes})"
        return None

    def record(self, iteration: int, name: str, status: str, detail: dict, attempt: int,
               stage_id: str | None = None) -> str:
        """A `run.stage` event, in the lake when this returns; its id is returned."""
        from producers.episode_writer import utc_now
        from schemas.codec import build

        row = {"stage_id": stage_id or self.stage_id(iteration, name, status, attempt),
               "experiment_id": self.config.experiment_id, "iteration": iteration, "stage": name, "status": status,
               "attempt": attempt, "detail": json.dumps(detail, sort_keys=True, default=str), "time": utc_now()}
        self.producer.send(topics.RUNS, self.config.experiment_id, build(RUN_STAGE, [row]))
        self.sync()
        return row["stage_id"]

    def stage_id(self, iteration: int, name: str, status: str, attempt: int) -> str:
        return stable_id(self.config.experiment_id, iteration, name, status, attempt)

    def _load(self) -> RunState:
        con = self.open()
        try:
            return load_state(con, self.config.experiment_id)
        finally:
            con.close()

    def _only_run(self):
        from infra.lake_catalog import only_one

        return only_one(self.settings, f"run-{self.config.experiment_id}", lambda path: AlreadyRunning(
            f"another `robolake run` of experiment {self.config.experiment_id!r} is running on "
            f"{self.settings.lake_root} (lock {path}); wait for it, or stop it first"))

    # --- what the stages share -------------------------------------------------------------------

    @contextmanager
    def library_lock(self):
        from infra.lake_catalog import lake_lock

        with lake_lock(self.settings, "library", "another run is announcing skills; waiting"):
            yield

    def open(self):
        from infra.lake_sql import open_lake

        return open_lake(self.settings)

    def sync(self) -> None:
        """Everything sent so far is in the lake when this returns."""
        self.producer.flush()
        if self.settings.bus == "memory":
            sink_in_process(self.settings)
        else:
            external.wait_for_sink(self)

    def send_decisions(self, rows: list[dict]) -> None:
        """Sends the v3 decision rows the lake lacks; they are in the lake when this returns. Each is
        keyed by its id, so the decisions spread over the partitions, so over the rollout workers."""
        from consumers.curriculum.consumer import OnlyNew, known_ids
        from schemas.codec import build
        from schemas.events import CURRICULUM_DECISION_V3

        con = self.open()
        try:
            producer = OnlyNew(self.producer, known_ids(con, self.config.experiment_id))
        finally:
            con.close()
        for row in rows:
            producer.send(topics.CURRICULUM, row["decision_id"], build(CURRICULUM_DECISION_V3, [row]))
        self.sync()

    def collect(self, decision_ids: list[str], what: str) -> dict:
        """Run the seeds of these decisions whose episodes the lake lacks; the lake is synced after
        each decision, so a kill loses at most the decisions running."""
        from learner.evaluate import load_for_decision
        from producers.decisions import decision_seeds

        self.sync()
        con = self.open()
        try:
            rows = decisions(con, self.config.experiment_id, decision_ids)
            complete = complete_seeds(con, decision_ids)
        finally:
            con.close()
        todo = [(row, [s for s in decision_seeds(row["decision_id"], row["episodes"])
                       if s not in complete[row["decision_id"]]]) for row in rows]
        todo = [(row, seeds) for row, seeds in todo if seeds]
        total = sum(len(seeds) for _, seeds in todo)
        with self.bar(total, what, "episode") as bar:
            if self.config.external_workers:
                external.wait_for_workers(self, todo, bar)
            for row, seeds in [] if self.config.external_workers else todo:
                run_decision_seeds(self.settings, self.rollout, row, seeds, self.config.workers, bar.update,
                                   load_for_decision, self.describe_failure)
                self.sync()
        return {"decisions": len(decision_ids), "episodes_run": total,
                "episodes_before": sum(len(s) for s in complete.values())}

    def grow(self, con):
        from consumers.curriculum.growth import skills_to_add

        return skills_to_add(con, self.config.experiment_id, self._retriever_factory())

    def curriculum_round(self, actor, policy: str, version: str):
        """A round on the summaries of the policy being trained, at `version`: the frontier is what
        the learner can do (the experts' bootstrap would call every skill mastered). Learning
        progress reads the policy's earlier versions too: its slope spans iterations."""
        from consumers.curriculum.consumer import Curriculum, OnlyNew
        from consumers.curriculum.recorder import RecordingVLM
        from consumers.summaries.summaries import current_summaries

        con = self.open()
        try:
            policy_rows = [s for s in current_summaries(con, self.config.experiment_id) if s["policy_id"] == policy]
            summaries = [s for s in policy_rows if s["policy_version"] == version]
            producer = OnlyNew(self.producer, set())
            vlm = RecordingVLM(self._vlm(), producer, self.config.experiment_id, None)
            curriculum = Curriculum(producer, vlm, self.config.experiment_id, self._retriever_factory(),
                                    max_tasks=self.config.max_tasks, episodes=self.config.episodes_per_decision,
                                    actor=actor,
                                    round_episodes=self.config.max_tasks * self.config.episodes_per_decision)
            return curriculum.round(con, summaries=summaries, history=policy_rows)
        finally:
            con.close()

    def _vlm(self):
        if self.vlm_inner is None:
            from consumers.curriculum.backends import open_vlm_from_settings

            self.vlm_inner = open_vlm_from_settings(self.settings)
        return self.vlm_inner

    @property
    def encoder(self):
        """One caption encoder for retrieval, growth and training (the model loads once)."""
        if self._encoder is None:
            from learner.captions import CaptionEncoder

            self._encoder = CaptionEncoder()
        return self._encoder

    def _retriever_factory(self):
        from consumers.curriculum.retrieval import retrievers

        return retrievers(self.encoder)

    @contextmanager
    def bar(self, total: int, what: str, unit: str):
        from tqdm import tqdm

        with tqdm(total=total, desc=f"  {what}", unit=unit, disable=None if self.bars else True,
                  file=sys.stderr, leave=False) as bar:
            yield bar

    def close(self) -> None:
        if self.offsets_reader is not None:
            self.offsets_reader.close()
        self.producer.close()


def retryable() -> tuple[type[BaseException], ...]:
    from consumers.curriculum.vlm import VLMError
    from consumers.lake_sink.sink import LakeUnavailable
    from infra.bus.interface import BusError

    return StageFailed, VLMError, LakeUnavailable, BusError, SinkBehind


def interrupted(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "InterruptException":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _brief(detail: dict) -> str:
    """A stage's detail on one line: lists as their length, (wins, n) pairs as wins/n."""
    def show(value) -> str:
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}/{value[1]}"
        if isinstance(value, list):
            return str(len(value))
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, dict):
            return ", ".join(f"{k} {show(v)}" for k, v in list(value.items())[:6]) + (" ..." if len(value) > 6 else "")
        return str(value)
    return "; ".join(f"{key.replace('_', ' ')} {show(value)}" for key, value in detail.items()
                     if value is not None and key != "checkpoint")
