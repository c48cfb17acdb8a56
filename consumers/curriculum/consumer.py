"""The curriculum consumer: one round turns the lake's skill summaries into proposals, missing
skills and decisions on the curriculum topic; `serve` runs a round whenever new `skill.summary`
events arrive.

A round reads, from the lake: the experiment's current summaries (consumers/summaries), the
library (the skills announced with `skill.added`; all of the built-in library, with a warning,
when none were), and the scene image (consumers/curriculum/scene.py). Its events are sent once:
ids are hashes of the round's inputs, and ids the lake (or this process) already holds are not sent
again. A question whose accepted answer is on record is not asked again (replies.ask recalls it):
a rerun of a finished round asks nothing and sends nothing, a round interrupted after some calls
(a crash, kill -9) is completed from where it stopped, and a round whose calls failed or whose
replies were rejected is asked again. Replay (`RecordedReplies`) answers from the recorded calls
and never calls the model: the same inputs give the same events, ids included.

`serve` keeps serving when the model fails: a round whose every call failed is run again after a
growing pause, and the summaries that asked for it stay uncommitted until it gets through.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from consumers.curriculum import stages
from consumers.curriculum.replies import printable
from consumers.curriculum.stages import Decision, Library, Missing, Proposal
from consumers.curriculum.vlm import Image
from schemas import topics
from schemas.codec import EventBatch, build
from schemas.events import (CURRICULUM_DECISION_V2, CURRICULUM_DECISION_V3, CURRICULUM_MISSING_SKILL,
                            CURRICULUM_PROPOSAL_V3)

log = logging.getLogger(__name__)

ID_FIELDS = {"curriculum.proposal": "proposal_id", "curriculum.decision": "decision_id",
             "curriculum.missing_skill": "missing_id", "vlm.call": "call_id"}


@dataclass
class RoundResult:
    key: str = ""
    proposals: list[Proposal] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    sent: int = 0                     # events sent, model calls included (the others were on the log)
    calls: int = 0                    # calls sent to the model (not recalled, not replayed)
    failures: list[str] = field(default_factory=list)   # "stage: error" of the calls that failed
    skipped: str | None = None        # why the round asked and sent nothing

    @property
    def failed(self) -> bool:
        """Every model call of the round failed (none answered)."""
        return bool(self.calls) and len(self.failures) == self.calls


def load_library(con) -> Library:
    """The announced skills a rollout worker can run (latest version's caption), in library order."""
    from producers.rollout import task_for
    from producers.sim.skills import LIBRARY

    announced: dict[str, tuple[int, str]] = {}
    for (payload,) in con.execute("SELECT payload_json FROM events WHERE type = 'skill.added' "
                                  "ORDER BY _log, _partition, _offset").fetchall():
        for row in json.loads(payload):
            if row["version"] >= announced.get(row["skill_id"], (0, ""))[0]:
                announced[row["skill_id"]] = (row["version"], row["caption"])
    if not announced:
        log.warning("no skill.added events in the lake: the curriculum uses the whole built-in library (%d skills)",
                    len(LIBRARY))
        ids = list(LIBRARY)
    else:
        unrunnable = sorted(set(announced) - set(LIBRARY))
        if unrunnable:
            log.warning("announced skills no rollout worker can run, ignored: %s", ", ".join(unrunnable))
        ids = [s for s in LIBRARY if s in announced]
    captions = {s: announced[s][1] if s in announced else LIBRARY[s].caption for s in ids}
    return Library(captions, {s: task_for(s) for s in ids})


def known_ids(con, experiment_id: str, calls: bool = False) -> set[str]:
    """Ids of the experiment's curriculum events (and, with `calls`, model calls) already in the lake."""
    kinds = [kind for kind in ID_FIELDS if calls or kind != "vlm.call"]
    found = con.execute(f"SELECT type, payload_json FROM events WHERE experiment_id = ? AND type IN "
                        f"({', '.join('?' * len(kinds))})", [experiment_id, *kinds]).fetchall()
    return {row[ID_FIELDS[kind]] for kind, payload in found for row in json.loads(payload)}


class OnlyNew:
    """A producer that drops the rows of curriculum events and model calls whose id is in `known`
    (the lake's, and what this process sent): a rerun or a replay never duplicates an event."""

    def __init__(self, producer, known: set[str]):
        self.producer, self.known = producer, known
        self.count = 0                                    # rows sent so far

    def send(self, topic: str, key, batch: EventBatch) -> int:
        id_field = ID_FIELDS.get(batch.type)
        if id_field is None:
            self.producer.send(topic, key, batch)
            self.count += batch.num_rows
            return batch.num_rows
        import pyarrow as pa

        ids = batch.table.column(id_field).to_pylist()
        fresh = [i not in self.known for i in ids]
        self.known.update(ids)
        if any(fresh):
            self.producer.send(topic, key, EventBatch(batch.type, batch.version, batch.table.filter(pa.array(fresh))))
        self.count += sum(fresh)
        return sum(fresh)

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(timeout_s)


class Curriculum:
    """Rounds of one experiment. `vlm` is a RecordingVLM (every call on the log) whose producer is
    `producer` too; `retriever_for(library)` makes a SkillRetriever (cached per library here)."""

    def __init__(self, producer: OnlyNew, vlm, experiment_id: str, retriever_for, max_tasks: int = 3,
                 episodes: int = 10, replay: bool = False, actor=None, round_episodes: int | None = None):
        self.producer, self.vlm, self.experiment_id = producer, vlm, experiment_id
        self.retriever_for, self.max_tasks, self.episodes, self.replay = retriever_for, max_tasks, episodes, replay
        # A round's collection budget, spread over however many decisions it makes (None: `episodes`
        # per decision): a round with one frontier task collects as much as one with three.
        self.round_episodes = round_episodes
        # actor(skill_sequence) -> the v3 fields saying who acts (`robolake run`: its latest policy);
        # without it, decisions leave that to the rollout workers (v2).
        self.actor = actor
        self._retrievers: dict[tuple, object] = {}

    def round(self, con, summaries: list[dict] | None = None, image: Image | None = None,
              history: list[dict] | None = None) -> RoundResult:
        """One round on `summaries` (default: the experiment's current ones); learning progress is
        scored from `history` (default: the summaries), which may hold earlier policy versions too."""
        from consumers.curriculum.scene import scene_image
        from consumers.summaries.summaries import current_summaries

        from consumers.curriculum.recorder import RecordedReplies

        # A replayed call is a copy of one on the log; any other call is new, even with a known id.
        self.producer.known.update(known_ids(con, self.experiment_id, calls=self.replay))
        self.vlm.learn(RecordedReplies.from_lake(con, self.experiment_id, required=False))
        library = load_library(con)
        summaries = current_summaries(con, self.experiment_id) if summaries is None else summaries
        ignored = sorted({s["skill_id"] for s in summaries if s["skill_id"] not in library.captions})
        if ignored:
            log.warning("experiment %s: ignoring summaries of skills outside the library: %s", self.experiment_id,
                        ", ".join(ignored))
        summaries = [s for s in summaries if s["skill_id"] in library.captions]
        image = scene_image(con, self.experiment_id) if image is None else image
        key = stages.round_key(self.experiment_id, summaries, library, image)
        history = summaries if history is None else [s for s in history if s["skill_id"] in library.captions]
        request = stages.propose_request(library, summaries, image, self.max_tasks, history)
        sent, calls, failures = self.producer.count, self.vlm.calls, len(self.vlm.failures)
        result = RoundResult(key, stages.propose(self.vlm, request, library, key, self.max_tasks))
        if not result.proposals:
            log.warning("experiment %s: no proposals this round", self.experiment_id)
        decided = []
        for proposal in result.proposals:
            plan = stages.decompose(self.vlm, proposal, library, image)
            if plan is None:
                continue
            steps = stages.retrieve(self.vlm, self._retriever(library), plan, library)
            decision, missing = stages.decide(plan, steps, library, self.episodes)
            result.missing += missing
            if decision is not None:
                decided.append((plan, steps))
        result.decisions = [stages.decide(plan, steps, library, episodes)[0]
                            for (plan, steps), episodes in zip(decided, self._shares(len(decided)))]
        self._emit(result)
        result.sent, result.calls = self.producer.count - sent, self.vlm.calls - calls
        result.failures = self.vlm.failures[failures:]
        if not result.calls and not result.sent:
            result.skipped = (f"this round's question (prompt {request.hash[:12]}) was answered before and its "
                              "events are on the log: nothing new")
        log.info("experiment %s round %s: %d proposals, %d decisions, %d missing skills (%d events new)",
                 self.experiment_id, key[:8], len(result.proposals), len(result.decisions), len(result.missing),
                 result.sent)
        return result

    def _shares(self, decisions: int) -> list[int]:
        """Episodes per decision: `episodes` each, or the round's budget split (the first get the rest)."""
        if self.round_episodes is None or not decisions:
            return [self.episodes] * decisions
        each, rest = divmod(self.round_episodes, decisions)
        return [max(1, each + (i < rest)) for i in range(decisions)]

    def _retriever(self, library: Library):
        key = tuple(library.captions.items())
        if key not in self._retrievers:
            self._retrievers[key] = self.retriever_for(library)
        return self._retrievers[key]

    def _emit(self, result: RoundResult) -> None:
        """Proposals, then missing skills, then decisions (a decision after the proposal it cites)."""
        now = datetime.now(timezone.utc)
        for p in result.proposals:
            self._send(CURRICULUM_PROPOSAL_V3, {
                "proposal_id": p.proposal_id, "experiment_id": self.experiment_id, "proposer": p.proposer,
                "task": p.task, "rationale": p.rationale, "time": now, "call_id": p.call_id, "score": p.score,
                "progress": p.progress})
        for m in result.missing:
            self._send(CURRICULUM_MISSING_SKILL, {
                "missing_id": m.missing_id, "experiment_id": self.experiment_id, "proposal_id": m.proposal_id,
                "step": m.step, "best_skill": m.best_skill, "similarity": m.similarity, "time": now})
        for d in result.decisions:
            row = {"decision_id": d.decision_id, "experiment_id": self.experiment_id,
                   "proposal_id": d.proposal.proposal_id, "task": d.proposal.task,
                   "skill_sequence": list(d.skill_sequence), "episodes": d.episodes, "time": now,
                   "steps": list(d.steps), "call_id": d.call_id}
            if self.actor is None:
                self._send(CURRICULUM_DECISION_V2, row)
            else:
                self._send(CURRICULUM_DECISION_V3, {**row, **self.actor(d.skill_sequence), "purpose": "curriculum"})
        self.producer.flush()

    def _send(self, event_type, row: dict) -> None:
        self.producer.send(topics.CURRICULUM, self.experiment_id, build(event_type, [row]))

    def serve(self, bus, open_con, stop: threading.Event, until_idle_s: float | None = None,
              group: str | None = None, on_round=None, backoff_s: float = 5.0, max_backoff_s: float = 300.0) -> int:
        """A round whenever new skill.summary events of the experiment arrive; offsets are committed
        after the round's events are flushed. A round whose every model call failed is run again
        after `backoff_s`, doubling up to `max_backoff_s`. Returns the number of rounds run."""
        consumer = bus.consumer(group or f"curriculum-{self.experiment_id}", [topics.SUMMARIES])
        rounds, idle_since, due, backoff = 0, time.monotonic(), False, backoff_s
        try:
            while not stop.is_set() and (until_idle_s is None or time.monotonic() - idle_since < until_idle_s):
                deliveries = consumer.poll(1.0)
                if deliveries:
                    idle_since = time.monotonic()
                    due = due or any(r["experiment_id"] == self.experiment_id for d in deliveries
                                     if d.batch.type == "skill.summary" for r in d.batch.rows())
                if not due:
                    if deliveries:
                        consumer.commit()  # nothing of this experiment's
                    continue
                con = open_con()
                try:
                    result = self.round(con)
                finally:
                    con.close()
                rounds += 1
                idle_since = time.monotonic()  # a round is activity: idle time counts from its end
                if on_round is not None:
                    on_round(result)
                if result.failed:  # uncommitted: a restart asks again too
                    log.warning("experiment %s: all %d model calls of the round failed (last: %s); trying again "
                                "in %.0fs", self.experiment_id, result.calls, printable(result.failures[-1]), backoff)
                    stop.wait(backoff)
                    backoff = min(2 * backoff, max_backoff_s)
                    continue
                consumer.commit()  # the round's events were flushed by round()
                due, backoff = False, backoff_s
        finally:
            consumer.close()
        return rounds


class NoModel:
    """The model behind a replay: asking it is a bug (RecordingVLM answers from the recording)."""

    backend, model = "replay", "none"

    def complete(self, request):
        from consumers.curriculum.vlm import VLMError

        raise VLMError(f"replay: the model must not be called (a {request.stage} question)")
