"""Event contracts: each event type has a name, integer versions and one Arrow schema per version.

An event is a row; one bus message carries a batch of rows of one type and version. Every
field added after version 1 must be nullable (optional), so a reader that asks for an older
version still reads newer data: the codec drops the fields it does not know (see `project`).
A type or version missing from the registry is never guessed at: it is a dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

TIME = pa.timestamp("us", tz="UTC")
VECTOR = pa.list_(pa.float32())


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    schema: pa.Schema
    doc: str
    # Extra checks beyond the schema (finite actions, vector lengths); return a reason or None.
    check: Callable[[pa.Table], str | None] | None = None

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.schema if not f.nullable]


@dataclass
class Registry:
    """The known event types and versions; readers pick the version they were written for."""

    types: dict[tuple[str, int], EventType] = field(default_factory=dict)

    def register(self, event_type: EventType) -> EventType:
        key = (event_type.name, event_type.version)
        if key in self.types:
            raise ValueError(f"{event_type.name} v{event_type.version} is already registered")
        older = self.types.get((event_type.name, event_type.version - 1))
        if event_type.version > 1 and older is None:
            raise ValueError(f"{event_type.name} v{event_type.version}: register v{event_type.version - 1} first")
        if older is not None:
            _check_additive(older, event_type)
        self.types[key] = event_type
        return event_type

    def get(self, name: str, version: int) -> EventType | None:
        return self.types.get((name, version))

    def latest(self, name: str) -> EventType:
        versions = [v for (n, v) in self.types if n == name]
        if not versions:
            raise KeyError(f"unknown event type {name!r}; known: {', '.join(self.names())}")
        return self.types[(name, max(versions))]

    def names(self) -> list[str]:
        return sorted({n for n, _ in self.types})


def _check_additive(old: EventType, new: EventType) -> None:
    for f in old.schema:
        if f.name not in new.schema.names or new.schema.field(f.name) != f:
            raise ValueError(f"{new.name} v{new.version} changes or removes field {f.name!r}; "
                             "only new optional fields may be added")
    for f in new.schema:
        if f.name not in old.schema.names and not f.nullable:
            raise ValueError(f"{new.name} v{new.version} adds required field {f.name!r}; new fields must be nullable")


# --- checks beyond the Arrow schema -----------------------------------------------------------

def _vectors_consistent(table: pa.Table, *columns: str) -> str | None:
    """Every row of `columns` has the same, non-zero length and only finite values."""
    import pyarrow.compute as pc

    for name in columns:
        column = table.column(name)
        lengths = pc.list_value_length(column)
        if table.num_rows and pc.min(lengths).as_py() != pc.max(lengths).as_py():
            return f"{name} vectors have different lengths in one batch ({pc.min(lengths)}..{pc.max(lengths)})"
        if table.num_rows and pc.min(lengths).as_py() == 0:
            return f"{name} vectors are empty"
        values = pc.list_flatten(column)
        if values.null_count:
            return f"{name} contains nulls"
        if len(values) and not pc.all(pc.is_finite(values)).as_py():
            return f"{name} contains NaN or infinite values"
    return None


def _check_steps(table: pa.Table) -> str | None:
    import pyarrow.compute as pc

    if table.num_rows and pc.count_distinct(table.column("episode_id")).as_py() != 1:
        return "a steps chunk must hold steps of exactly one episode"
    if table.num_rows and pc.count_distinct(table.column("chunk")).as_py() != 1:
        return "a steps chunk must hold one chunk number"
    return _vectors_consistent(table, "observation", "action")


# --- the contracts ----------------------------------------------------------------------------

EPISODE_STARTED = EventType("episode.started", 1, pa.schema([
    _f("episode_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("worker_id", pa.string()),
    _f("env_name", pa.string()),
    _f("env_version", pa.int32()),
    _f("seed", pa.int64()),
    _f("initial_state", VECTOR),                      # the scene's full physics state after reset
    _f("task", pa.string()),
    _f("skill_sequence", pa.list_(pa.string())),      # skill ids, executed in order
    _f("decision_id", pa.string(), nullable=True),    # the curriculum.decision that asked for it
    _f("policy_id", pa.string()),
    _f("policy_version", pa.string()),
    _f("time", TIME),
]), doc="an episode began: who runs it, in which scene, to do what")

EPISODE_STEPS = EventType("episode.steps", 1, pa.schema([
    _f("episode_id", pa.string()),
    _f("experiment_id", pa.string()),                 # repeated so every event can be partitioned alone
    _f("chunk", pa.int32()),                          # 0, 1, 2, … within the episode
    _f("step", pa.int32()),
    _f("sim_time", pa.float64()),
    _f("observation", VECTOR),
    _f("action", VECTOR),
    _f("reward", pa.float32()),                       # reward of the active skill
    _f("task_reward", pa.float32()),
    _f("skill_id", pa.string()),
    _f("skill_caption", pa.string()),
    _f("terminated", pa.bool_()),
    _f("truncated", pa.bool_()),
    _f("frame", pa.binary(), nullable=True),          # PNG bytes of the wrist/scene camera
]), doc="a chunk of consecutive steps of one episode", check=_check_steps)

def _check_started(table: pa.Table) -> str | None:
    import pyarrow.compute as pc

    if "initial_observation" not in table.column_names:
        return None
    values = pc.list_flatten(table.column("initial_observation"))
    if len(values) and (values.null_count or not pc.all(pc.is_finite(values)).as_py()):
        return "initial_observation contains NaN, infinite or null values"
    return None


# v2: the observation the policy saw before its first action, so that a learner can train on the
# episode's first transition too (the steps hold each action with the observation after it).
EPISODE_STARTED_V2 = EventType("episode.started", 2, pa.schema([
    *EPISODE_STARTED.schema,
    _f("initial_observation", VECTOR, nullable=True),
]), doc="an episode began: who runs it, in which scene, to do what", check=_check_started)

SKILL_OUTCOME = pa.struct([_f("skill_id", pa.string()), _f("return", pa.float64()), _f("success", pa.bool_())])

EPISODE_ENDED = EventType("episode.ended", 1, pa.schema([
    _f("episode_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("length", pa.int32()),
    _f("task_return", pa.float64()),
    _f("task_success", pa.bool_()),
    _f("skills", pa.list_(SKILL_OUTCOME)),
    _f("termination", pa.string()),                   # success | timeout | sim_error | stopped
    _f("num_chunks", pa.int32()),
    _f("checksum", pa.string()),                      # schemas.codec.episode_checksum over its chunks
    _f("time", TIME),
]), doc="an episode finished; the commit marker that proves it complete")

CURRICULUM_PROPOSAL = EventType("curriculum.proposal", 1, pa.schema([
    _f("proposal_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("proposer", pa.string()),                      # which VLM backend and model
    _f("task", pa.string()),
    _f("rationale", pa.string()),
    _f("time", TIME),
]), doc="the curriculum proposes a task")

CURRICULUM_DECISION = EventType("curriculum.decision", 1, pa.schema([
    _f("decision_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("proposal_id", pa.string(), nullable=True),
    _f("task", pa.string()),
    _f("skill_sequence", pa.list_(pa.string())),
    _f("episodes", pa.int32()),
    _f("time", TIME),
]), doc="the curriculum asks the workers for episodes of a skill sequence")

SKILL_ADDED = EventType("skill.added", 1, pa.schema([
    _f("skill_id", pa.string()),
    _f("caption", pa.string()),
    _f("version", pa.int32()),
    _f("reward_fn", pa.string()),                     # registered reward function name
    _f("reward_version", pa.int32()),
    _f("time", TIME),
]), doc="a skill joined the library")

LEARNER_METRICS = EventType("learner.metrics", 1, pa.schema([
    _f("experiment_id", pa.string()),
    _f("run_id", pa.string()),
    _f("step", pa.int64()),
    _f("name", pa.string()),
    _f("value", pa.float64()),
    _f("skill_id", pa.string(), nullable=True),
    _f("time", TIME),
]), doc="training metrics of a learner run")

ANALYSIS_VERDICT = EventType("analysis.verdict", 1, pa.schema([
    _f("verdict_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("skill_id", pa.string()),
    _f("verdict", pa.string()),                       # improving | converged | stalled | stop (v2 also: not
                                                      # learning | no evaluation yet)
    _f("rationale", pa.string()),
    _f("time", TIME),
]), doc="the analyst's judgement of a skill's training progress")

RELABEL_FUNCTION = pa.struct([_f("name", pa.string()), _f("version", pa.int32()), _f("source_hash", pa.string()),
                              _f("rows", pa.int64())])
RELABEL_SOURCE = pa.struct([_f("log", pa.string()), _f("topic", pa.string()), _f("partition", pa.int32()),
                            _f("first_offset", pa.int64()), _f("last_offset", pa.int64())])

RELABEL_COMPLETED = EventType("relabel.completed", 1, pa.schema([
    _f("relabel_id", pa.string()),
    _f("dataset", pa.string()),                       # the name the rewards rows carry
    _f("predicate", pa.string()),                     # on the episodes view
    _f("functions", pa.list_(RELABEL_FUNCTION)),      # what computed the rows, and how many each wrote
    _f("sources", pa.list_(RELABEL_SOURCE)),          # offset ranges of the steps messages read
    _f("lake_snapshot", pa.int64()),                  # the lake snapshot read (its files, exactly)
    _f("episodes", pa.int64()),
    _f("steps", pa.int64()),
    _f("rows", pa.int64()),
    _f("robolake_version", pa.string()),
    _f("time", TIME),
]), doc="historic steps were relabelled with reward functions: the lineage of the rewards rows")

RELABEL_ADOPTED = pa.struct([_f("relabel_id", pa.string()), _f("name", pa.string()), _f("version", pa.int32()),
                             _f("rows", pa.int64())])
# v2: a run that failed after some commits says so, and a run covers the rows of earlier runs that no
# event covers (killed before publishing). Rows carry their run's relabel_id (the rewards table).
RELABEL_COMPLETED_V2 = EventType("relabel.completed", 2, pa.schema([
    *RELABEL_COMPLETED.schema,
    _f("complete", pa.bool_(), nullable=True),               # false: the run failed after these commits
    _f("error", pa.string(), nullable=True),                 # why it stopped, when it did
    _f("adopted", pa.list_(RELABEL_ADOPTED), nullable=True),  # rows of earlier runs no event covered
]), doc="historic steps were relabelled with reward functions (or partly: complete = false): the lineage "
        "of the rewards rows")

# --- the experimenter (consumers/summaries, consumers/curriculum, consumers/analysis) -----------

SKILL_SUMMARY = EventType("skill.summary", 1, pa.schema([
    _f("summary_id", pa.string()),                    # deterministic: the same episodes give the same id
    _f("experiment_id", pa.string()),
    _f("skill_id", pa.string()),
    _f("policy_id", pa.string()),
    _f("policy_version", pa.string()),
    _f("episodes", pa.int64()),
    _f("successes", pa.int64()),
    _f("success_rate", pa.float64()),
    _f("ci_low", pa.float64()),                       # Wilson 95% interval
    _f("ci_high", pa.float64()),
    _f("recent_rate", pa.float64(), nullable=True),   # success over the most recent window
    _f("trend", pa.string()),                         # up | down | flat | unknown
    # Hindsight, where a relabel dataset covers the experiment's episodes: in how many episodes
    # (whatever they were commanded to do) this skill's reward function says it succeeded.
    _f("hindsight_episodes", pa.int64(), nullable=True),
    _f("hindsight_successes", pa.int64(), nullable=True),
    _f("time", TIME),
]), doc="success of one skill under one policy version in one experiment, so far")

VLM_IMAGE = pa.struct([_f("name", pa.string()), _f("sha256", pa.string())])

VLM_CALL = EventType("vlm.call", 1, pa.schema([
    _f("call_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("stage", pa.string()),                         # propose | decompose | retrieve | analyze
    _f("backend", pa.string()),                       # scripted | gemini | openai
    _f("model", pa.string()),
    _f("temperature", pa.float64()),
    _f("prompt_hash", pa.string()),                   # sha256 of the request (prompt, images, schema)
    _f("prompt", pa.string()),
    _f("images", pa.list_(VLM_IMAGE)),                # references to the images sent, not their bytes
    _f("reply", pa.string(), nullable=True),          # the raw reply text; null when the call failed
    _f("latency_s", pa.float64()),
    _f("input_tokens", pa.int64(), nullable=True),
    _f("output_tokens", pa.int64(), nullable=True),
    _f("error", pa.string(), nullable=True),          # why the call or its reply failed
    _f("attempt", pa.int32()),                        # 1, 2, ... (a re-ask after a bad reply)
    _f("time", TIME),
]), doc="one call of the experimenter's model: what was asked, what came back, how long it took")

CURRICULUM_PROPOSAL_V2 = EventType("curriculum.proposal", 2, pa.schema([
    *CURRICULUM_PROPOSAL.schema,
    _f("call_id", pa.string(), nullable=True),        # the vlm.call that proposed it
]), doc="the curriculum proposes a task")

CURRICULUM_DECISION_V2 = EventType("curriculum.decision", 2, pa.schema([
    *CURRICULUM_DECISION.schema,
    _f("steps", pa.list_(pa.string()), nullable=True),  # the task decomposed into steps, in words
    _f("call_id", pa.string(), nullable=True),          # the vlm.call that decomposed it
]), doc="the curriculum asks the workers for episodes of a skill sequence")

CURRICULUM_MISSING_SKILL = EventType("curriculum.missing_skill", 1, pa.schema([
    _f("missing_id", pa.string()),
    _f("experiment_id", pa.string()),
    _f("proposal_id", pa.string()),
    _f("step", pa.string()),                          # the step, in words, that no skill covers
    _f("best_skill", pa.string(), nullable=True),     # the closest skill, and how close
    _f("similarity", pa.float64(), nullable=True),
    _f("time", TIME),
]), doc="a step of a proposed task that no skill in the library covers")

ANALYSIS_VERDICT_V2 = EventType("analysis.verdict", 2, pa.schema([
    *ANALYSIS_VERDICT.schema,
    _f("run_id", pa.string(), nullable=True),         # the learner run judged
    _f("method", pa.string(), nullable=True),         # statistical | vlm
    _f("converged_at", pa.int64(), nullable=True),    # learner step, for verdict = converged
    _f("slope", pa.float64(), nullable=True),         # success (or metric) per 1000 steps, with a
    _f("slope_low", pa.float64(), nullable=True),     # bootstrap 95% interval
    _f("slope_high", pa.float64(), nullable=True),
    _f("call_id", pa.string(), nullable=True),        # the vlm.call behind a method = vlm verdict
]), doc="the analyst's judgement of a skill's training progress")

# v3: who acts. Rollout workers run the sequence with `policy_id` at `policy_version` (null or
# "scripted_expert": the scripted experts; "pac:<run>": that learner run's checkpoint "step-<n>"),
# except the `expert_skills`, which the scripted expert runs (a skill too new for the policy), with
# `noise` on the expert's actions. `purpose` says why the episodes are wanted.
CURRICULUM_DECISION_V3 = EventType("curriculum.decision", 3, pa.schema([
    *CURRICULUM_DECISION_V2.schema,
    _f("policy_id", pa.string(), nullable=True),
    _f("policy_version", pa.string(), nullable=True),
    _f("expert_skills", pa.list_(pa.string()), nullable=True),
    _f("noise", pa.float64(), nullable=True),
    _f("purpose", pa.string(), nullable=True),          # bootstrap | curriculum | random | eval
]), doc="the curriculum asks the workers for episodes of a skill sequence, with a given policy")

# v3: the curriculum's expected learning progress of the proposal's skill (consumers/curriculum/
# progress.py), whoever proposed it: the score and the numbers behind it in words; null for a task
# no library skill does.
CURRICULUM_PROPOSAL_V3 = EventType("curriculum.proposal", 3, pa.schema([
    *CURRICULUM_PROPOSAL_V2.schema,
    _f("score", pa.float64(), nullable=True),
    _f("progress", pa.string(), nullable=True),
]), doc="the curriculum proposes a task")

# `robolake run`: the run's state is the projection of these (robolake/experiment/state.py).
RUN_STAGE = EventType("run.stage", 1, pa.schema([
    _f("stage_id", pa.string()),                      # deterministic: experiment, iteration, stage, status, attempt
    _f("experiment_id", pa.string()),
    _f("iteration", pa.int32()),
    _f("stage", pa.string()),                         # plan | collect | relabel | train | eval | summaries | ...
    _f("status", pa.string()),                        # done | failed | stopped
    _f("attempt", pa.int32()),                        # 1, 2, ... (failed attempts before it)
    _f("detail", pa.string()),                        # JSON: what the stage produced, or why it failed
    _f("time", TIME),
]), doc="a stage of an experiment run finished, failed, or stopped the run")

REGISTRY = Registry()
for _t in (EPISODE_STARTED, EPISODE_STARTED_V2, EPISODE_STEPS, EPISODE_ENDED, CURRICULUM_PROPOSAL, CURRICULUM_DECISION,
           SKILL_ADDED, LEARNER_METRICS, ANALYSIS_VERDICT, RELABEL_COMPLETED, RELABEL_COMPLETED_V2,
           SKILL_SUMMARY, VLM_CALL, CURRICULUM_PROPOSAL_V2, CURRICULUM_DECISION_V2, CURRICULUM_MISSING_SKILL,
           ANALYSIS_VERDICT_V2, CURRICULUM_DECISION_V3, CURRICULUM_PROPOSAL_V3, RUN_STAGE):
    REGISTRY.register(_t)
