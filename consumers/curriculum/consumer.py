"""The curriculum consumer: one round turns the lake's skill summaries into proposals, missing
skills and decisions on the curriculum topic; `serve` runs a round whenever new `skill.summary`
events arrive.

A round reads, from the lake: the experiment's current summaries (consumers/summaries), the
library (the skills announced with `skill.added`; all of the built-in library, with a warning,
when none were), and the scene image (consumers/curriculum/scene.py). Its events are sent once:
ids are hashes of the round's inputs, ids the lake (or this process) already holds are not sent
again, and a round whose propose question the experiment already asked is not asked again — the
log holds its answer (or its failure). Replay (`RecordedReplies`) answers from the recorded calls
and never calls the model: the same inputs give the same events, ids included.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from consumers.curriculum import stages
from consumers.curriculum.stages import Decision, Library, Missing, Proposal
from consumers.curriculum.vlm import Image
from schemas import topics
from schemas.codec import EventBatch, build
from schemas.events import CURRICULUM_DECISION_V2, CURRICULUM_MISSING_SKILL, CURRICULUM_PROPOSAL_V2

log = logging.getLogger(__name__)

ID_FIELDS = {"curriculum.proposal": "proposal_id", "curriculum.decision": "decision_id",
             "curriculum.missing_skill": "missing_id", "vlm.call": "call_id"}


@dataclass
class RoundResult:
    key: str = ""
    proposals: list[Proposal] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    sent: int = 0                     # events sent (the others were already on the log)
    skipped: str | None = None        # why the round asked nothing


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


def asked_before(con, experiment_id: str, prompt_hash: str) -> str | None:
    """The call id of an earlier propose call of the experiment with this very question, if any."""
    found = con.execute("SELECT payload_json FROM events WHERE experiment_id = ? AND type = 'vlm.call'",
                        [experiment_id]).fetchall()
    for (payload,) in found:
        for row in json.loads(payload):
            if row["stage"] == "propose" and row["prompt_hash"] == prompt_hash:
                return row["call_id"]
    return None


class OnlyNew:
    """A producer that drops the rows of curriculum events and model calls whose id is in `known`
    (the lake's, and what this process sent): a rerun or a replay never duplicates an event."""

    def __init__(self, producer, known: set[str]):
        self.producer, self.known = producer, known

    def send(self, topic: str, key, batch: EventBatch) -> int:
        id_field = ID_FIELDS.get(batch.type)
        if id_field is None:
            self.producer.send(topic, key, batch)
            return batch.num_rows
        import pyarrow as pa

        ids = batch.table.column(id_field).to_pylist()
        fresh = [i not in self.known for i in ids]
        self.known.update(ids)
        if any(fresh):
            self.producer.send(topic, key, EventBatch(batch.type, batch.version, batch.table.filter(pa.array(fresh))))
        return sum(fresh)

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(timeout_s)


class Curriculum:
    """Rounds of one experiment. `vlm` is a RecordingVLM (every call on the log) whose producer is
    `producer` too; `retriever_for(library)` makes a SkillRetriever (cached per library here)."""

    def __init__(self, producer: OnlyNew, vlm, experiment_id: str, retriever_for, max_tasks: int = 3,
                 episodes: int = 10, replay: bool = False):
        self.producer, self.vlm, self.experiment_id = producer, vlm, experiment_id
        self.retriever_for, self.max_tasks, self.episodes, self.replay = retriever_for, max_tasks, episodes, replay
        self._retrievers: dict[tuple, object] = {}
        self._asked: set[str] = set()   # propose questions asked by this process

    def round(self, con, summaries: list[dict] | None = None, image: Image | None = None) -> RoundResult:
        from consumers.curriculum.scene import scene_image
        from consumers.summaries.summaries import current_summaries

        # A replayed call is a copy of one on the log; any other call is new, even with a known id.
        self.producer.known.update(known_ids(con, self.experiment_id, calls=self.replay))
        library = load_library(con)
        summaries = current_summaries(con, self.experiment_id) if summaries is None else summaries
        ignored = sorted({s["skill_id"] for s in summaries if s["skill_id"] not in library.captions})
        if ignored:
            log.warning("experiment %s: ignoring summaries of skills outside the library: %s", self.experiment_id,
                        ", ".join(ignored))
        summaries = [s for s in summaries if s["skill_id"] in library.captions]
        image = scene_image(con, self.experiment_id) if image is None else image
        key = stages.round_key(self.experiment_id, summaries, library, image)
        request = stages.propose_request(library, summaries, image, self.max_tasks)
        if not self.replay and (request.hash in self._asked or asked_before(con, self.experiment_id, request.hash)):
            reason = f"this round's question (prompt {request.hash[:12]}) was asked before: nothing new to propose"
            log.info("experiment %s: %s", self.experiment_id, reason)
            return RoundResult(key, skipped=reason)
        self._asked.add(request.hash)
        result = RoundResult(key, stages.propose(self.vlm, request, library, key, self.max_tasks))
        if not result.proposals:
            log.warning("experiment %s: no proposals this round", self.experiment_id)
        for proposal in result.proposals:
            plan = stages.decompose(self.vlm, proposal, library, image)
            if plan is None:
                continue
            steps = stages.retrieve(self.vlm, self._retriever(library), plan, library)
            decision, missing = stages.decide(plan, steps, library, self.episodes)
            result.missing += missing
            if decision is not None:
                result.decisions.append(decision)
        result.sent = self._emit(result)
        log.info("experiment %s round %s: %d proposals, %d decisions, %d missing skills (%d events new)",
                 self.experiment_id, key[:8], len(result.proposals), len(result.decisions), len(result.missing),
                 result.sent)
        return result

    def _retriever(self, library: Library):
        key = tuple(library.captions.items())
        if key not in self._retrievers:
            self._retrievers[key] = self.retriever_for(library)
        return self._retrievers[key]

    def _emit(self, result: RoundResult) -> int:
        """Proposals, then missing skills, then decisions (a decision after the proposal it cites)."""
        now = datetime.now(timezone.utc)
        sent = 0
        for p in result.proposals:
            sent += self._send(CURRICULUM_PROPOSAL_V2, {
                "proposal_id": p.proposal_id, "experiment_id": self.experiment_id, "proposer": p.proposer,
                "task": p.task, "rationale": p.rationale, "time": now, "call_id": p.call_id})
        for m in result.missing:
            sent += self._send(CURRICULUM_MISSING_SKILL, {
                "missing_id": m.missing_id, "experiment_id": self.experiment_id, "proposal_id": m.proposal_id,
                "step": m.step, "best_skill": m.best_skill, "similarity": m.similarity, "time": now})
        for d in result.decisions:
            sent += self._send(CURRICULUM_DECISION_V2, {
                "decision_id": d.decision_id, "experiment_id": self.experiment_id,
                "proposal_id": d.proposal.proposal_id, "task": d.proposal.task, "skill_sequence": list(d.skill_sequence),
                "episodes": d.episodes, "time": now, "steps": list(d.steps), "call_id": d.call_id})
        self.producer.flush()
        return sent

    def _send(self, event_type, row: dict) -> int:
        return self.producer.send(topics.CURRICULUM, self.experiment_id, build(event_type, [row]))

    def serve(self, bus, open_con, stop: threading.Event, until_idle_s: float | None = None,
              group: str | None = None, on_round=None) -> int:
        """A round whenever new skill.summary events of the experiment arrive; offsets are committed
        after the round's events are flushed. Returns the number of rounds run."""
        consumer = bus.consumer(group or f"curriculum-{self.experiment_id}", [topics.SUMMARIES])
        rounds, idle_since = 0, time.monotonic()
        try:
            while not stop.is_set() and (until_idle_s is None or time.monotonic() - idle_since < until_idle_s):
                deliveries = consumer.poll(1.0)
                if not deliveries:
                    continue
                if any(r["experiment_id"] == self.experiment_id for d in deliveries
                       if d.batch.type == "skill.summary" for r in d.batch.rows()):
                    con = open_con()
                    try:
                        result = self.round(con)
                    finally:
                        con.close()
                    rounds += 1
                    if on_round is not None:
                        on_round(result)
                consumer.commit()  # the round's events were flushed by round()
                idle_since = time.monotonic()
        finally:
            consumer.close()
        return rounds


class NoModel:
    """The model behind a replay: asking it is a bug (RecordingVLM answers from the recording)."""

    backend, model = "replay", "none"

    def complete(self, request):
        from consumers.curriculum.vlm import VLMError

        raise VLMError(f"replay: the model must not be called (a {request.stage} question)")
