"""Every call of the experimenter's model becomes a `vlm.call` event, and a recorded experiment can
be replayed from those events without asking the model again.

RecordingVLM wraps any backend. Each call gets a deterministic id, a hash of (experiment id, prompt
hash, how many times this experiment asked that prompt before, attempt), so a replay of the same
experiment gives the same ids, and the proposals and decisions that cite a call still point at it.
The id is on the returned reply (`RecordedReply.call_id`) and, for failed calls too, in
`RecordingVLM.last_call_id`.

With `replay` (RecordedReplies read from the lake or the log), the n-th asking of a prompt gets the
reply recorded for the n-th asking of that prompt — a recorded failure fails again the same way —
and the inner model is never called. A question the recording never asked is a ReplayMismatch
(the round's inputs or its prompts differ from every recorded round), never a silent call to the model.

`recall` gives the replies already recorded for a question (from `history` and this process's own
calls), so a rerun picks a round up where it stopped instead of paying for the same answers again.

A recorded prompt or reply is cut to RECORDED_BYTES (a marker gives its length and sha256): a bus
message is bounded, and a reply that long is rejected by the curriculum anyway (replies.MAX_REPLY_BYTES).
The prompt hash is always that of the whole request, so a replay still finds the call.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from consumers.curriculum.vlm import VLM, VLMError, VLMReply, VLMRequest
from schemas import topics
from schemas.codec import build
from schemas.events import VLM_CALL


RECORDED_BYTES = 64 * 1024   # per text field of a vlm.call; two of them stay well under a bus message


class ReplayMismatch(RuntimeError):
    """A replay asked something the recorded experiment never asked; nothing was sent to the model."""


@dataclass(frozen=True)
class RecordedReply(VLMReply):
    call_id: str = ""                  # the vlm.call event this reply was recorded as


def call_id(experiment_id: str, prompt_hash: str, occurrence: int, attempt: int) -> str:
    key = json.dumps([experiment_id, prompt_hash, occurrence, attempt])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RecordedReplies:
    """The recorded calls of one experiment, by (prompt hash, occurrence of that hash)."""

    def __init__(self, calls: dict[tuple[str, int], dict]):
        self.calls = calls

    @classmethod
    def from_rows(cls, rows) -> "RecordedReplies":
        """vlm.call rows in the order they were made (decoded events, or the lake's JSON of them).
        A call seen twice (an experiment replayed under its own id records the same call_id again)
        counts once."""
        calls, seen, occurrences = {}, set(), Counter()
        for row in rows:
            if row["call_id"] in seen:
                continue
            seen.add(row["call_id"])
            key = (row["prompt_hash"], occurrences[row["prompt_hash"]])
            occurrences[row["prompt_hash"]] += 1
            calls[key] = row
        return cls(calls)

    @classmethod
    def from_lake(cls, con, experiment_id: str, required: bool = True) -> "RecordedReplies":
        """From the lake's events table (`con`: infra.lake_sql.open_lake), in the order the calls
        were made: by the event's own time, then by position in the log. (The log alone does not
        order them: each in-process bus is a log of its own, named at random.) `required`: an
        experiment without recorded calls is a ReplayMismatch (else an empty recording)."""
        found = con.execute("SELECT payload_json, _log, _partition, _offset FROM events WHERE type = 'vlm.call' "
                            "AND experiment_id = ?", [experiment_id]).fetchall()
        placed = [(datetime.fromisoformat(str(row["time"])), where, i, row)
                  for (payload, *where) in found for i, row in enumerate(json.loads(payload))]
        rows = [row for *_, row in sorted(placed, key=lambda p: p[:3])]
        if not rows and required:
            raise ReplayMismatch(f"no recorded model calls (vlm.call events) for experiment {experiment_id!r} "
                                 "in the lake")
        return cls.from_rows(rows)

    def take(self, request: VLMRequest, occurrence: int) -> dict:
        try:
            return self.calls[(request.hash, occurrence)]
        except KeyError:
            raise ReplayMismatch(
                f"the replay asked a {request.stage} question the recorded experiment never asked "
                f"(prompt hash {request.hash[:12]}, asked {occurrence} time(s) before): the inputs (summaries, "
                "library, scene) or the prompts differ from every recorded round — nothing was sent to the "
                "model") from None

    def __len__(self) -> int:
        return len(self.calls)

    def asked(self) -> Counter:
        """How often each prompt hash was asked."""
        return Counter(prompt_hash for prompt_hash, _ in self.calls)


class RecordingVLM:
    def __init__(self, inner: VLM, producer, experiment_id: str, replay: RecordedReplies | None = None,
                 history: RecordedReplies | None = None):
        """`history`: the experiment's calls so far (from the lake; more with `learn`)."""
        self.inner, self.producer, self.experiment_id, self.replay = inner, producer, experiment_id, replay
        self.backend, self.model = inner.backend, inner.model
        self.last_call_id: str | None = None
        self.calls = 0                                   # calls sent to the model by this process
        self.failures: list[str] = []                    # "stage: error" of those that failed
        self._asked: Counter[str] = Counter()            # how often each prompt hash was asked so far
        self._answered: dict[str, list[RecordedReply]] = defaultdict(list)   # prompt hash -> replies, in order
        self._known: set[str] = set()                    # the call ids counted in the two above
        self.learn(history if history is not None else replay)

    def learn(self, recorded: RecordedReplies | None) -> None:
        """Calls recorded elsewhere (the lake): their replies can be recalled, and a question asked
        again counts on from them, so its call gets a new id (a replay counts from nothing, as the
        recording did)."""
        for row in recorded.calls.values() if recorded is not None else ():
            self._remember(row, count=self.replay is None)

    def recall(self, request: VLMRequest) -> list[RecordedReply]:
        """The replies recorded for this very question, oldest first (failed calls have none)."""
        return list(self._answered.get(request.hash, ()))

    def _remember(self, row: dict, count: bool) -> None:
        if row["call_id"] in self._known:
            return
        self._known.add(row["call_id"])
        if count:
            self._asked[row["prompt_hash"]] += 1
        if row["reply"] is not None:
            self._answered[row["prompt_hash"]].append(RecordedReply(
                row["reply"], row["model"], row["latency_s"], row["input_tokens"], row["output_tokens"],
                call_id=row["call_id"]))

    def complete(self, request: VLMRequest, attempt: int = 1, check=None) -> RecordedReply:
        """The reply, recorded as a vlm.call event. `check(text)` raises if the reply is unusable:
        then the call is recorded with the reason as its error (and the reply is still returned)."""
        prompt_hash = request.hash
        occurrence = self._asked[prompt_hash]
        recorded = self.replay.take(request, occurrence) if self.replay is not None else None
        this_call = self.last_call_id = call_id(self.experiment_id, prompt_hash, occurrence, attempt)
        if recorded is not None:
            reply, error, latency = _replayed(recorded)
            backend, model = recorded["backend"], recorded["model"]
        else:
            reply, error, latency = self._ask(request)
            backend, model = self.backend, reply.model if reply else self.model
            self.calls += 1
            if error is not None:
                self.failures.append(f"{request.stage}: {error}")
        row = self._send(this_call, request, attempt, backend, model, reply, error, latency,
                         _rejected(reply, check))
        if recorded is None:
            self._remember(row, count=True)
        else:
            self._asked[prompt_hash] += 1
        if error is not None:
            raise error
        return RecordedReply(reply.text, reply.model, reply.latency_s, reply.input_tokens, reply.output_tokens,
                             call_id=this_call)

    def _ask(self, request: VLMRequest) -> tuple[VLMReply | None, VLMError | None, float]:
        started = time.monotonic()
        try:
            reply = self.inner.complete(request)
        except VLMError as exc:  # recorded, then raised again; anything else is a bug and just raises
            return None, exc, time.monotonic() - started
        if not isinstance(reply.text, str):  # a backend's bug, but the record must stay well-formed
            return None, VLMError(f"{self.backend}: the reply is a {type(reply.text).__name__}, not text"), \
                time.monotonic() - started
        return reply, None, reply.latency_s

    def _send(self, this_call: str, request: VLMRequest, attempt: int, backend: str, model: str,
              reply: VLMReply | None, error: VLMError | None, latency_s: float, rejected: str | None = None) -> dict:
        row = {
            "call_id": this_call, "experiment_id": self.experiment_id, "stage": request.stage,
            "backend": backend, "model": model, "temperature": float(request.temperature),
            "prompt_hash": request.hash, "prompt": bounded(request.prompt),
            "images": [{"name": image.name, "sha256": image.sha256} for image in request.images],
            "reply": bounded(reply.text) if reply else None, "latency_s": float(latency_s),
            "input_tokens": _count(reply.input_tokens) if reply else None,
            "output_tokens": _count(reply.output_tokens) if reply else None,
            "error": bounded(str(error)) if error is not None else rejected and bounded(rejected),
            "attempt": attempt, "time": datetime.now(timezone.utc),
        }
        # Flushed at once: the call is on the log before anything that cites it.
        self.producer.send(topics.VLM, self.experiment_id, build(VLM_CALL, [row]))
        self.producer.flush()
        return row


def _rejected(reply: VLMReply | None, check) -> str | None:
    """Why `check` refuses the reply (its error, as a recorded error says it), or None."""
    if reply is None or check is None:
        return None
    try:
        check(reply.text)
    except Exception as exc:  # ReplyError; anything else is the check's bug, but the record stays whole
        return f"reply rejected: {exc}"
    return None


def bounded(text: str, limit: int = RECORDED_BYTES) -> str:
    """`text`, or its first `limit` bytes (UTF-8) and a marker with the whole text's length and sha256."""
    data = text.encode("utf-8", "replace")  # a lone surrogate (legal in JSON's \u escapes) is no UTF-8
    if len(data) <= limit:
        return data.decode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    return (data[:limit].decode("utf-8", "ignore")
            + f"\n…[cut here: the text has {len(text)} characters in all, sha256 {digest}]")


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _replayed(row: dict) -> tuple[VLMReply | None, VLMError | None, float]:
    """The recorded outcome, as the model gave it then."""
    if row["reply"] is None:
        return None, VLMError(row["error"] or "the recorded call failed"), row["latency_s"]
    reply = VLMReply(row["reply"], row["model"], row["latency_s"], row["input_tokens"], row["output_tokens"])
    return reply, None, row["latency_s"]
