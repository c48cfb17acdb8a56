"""Every model call is a vlm.call event on the log and in the lake; a replay takes the recorded replies
and never calls the model again."""

from __future__ import annotations

import pytest

from consumers.conversation import describe
from consumers.curriculum.gemini import GeminiVLM
from consumers.curriculum.recorder import RecordedReplies, RecordingVLM, ReplayMismatch
from consumers.curriculum.vlm import Image, Message, VLMError, VLMReply, VLMRequest
from consumers.lake_sink.sink import LakeSink
from infra.bus.memory import MemoryBus
from infra.lake_sql import open_lake
from infra.settings import Settings
from schemas import topics
from tests.vlm_servers import GeminiServer, tiny_png

SCHEMA = {"type": "object", "properties": {"task": {"type": "string"}}}
PNG = tiny_png()


def _request(question: str = "What next?", stage: str = "propose") -> VLMRequest:
    return VLMRequest(stage=stage, system="You are the curriculum.", schema=SCHEMA, messages=(
        Message("user", question, (Image("episode/e1/initial", PNG),)),))


class CountingVLM:
    """A model that numbers its replies, or fails on the questions it is told to."""

    backend, model = "counting", "counter-1"

    def __init__(self, failing: tuple[str, ...] = ()):
        self.calls, self.failing = 0, failing

    def complete(self, request: VLMRequest) -> VLMReply:
        self.calls += 1
        if request.messages[-1].text in self.failing:
            raise VLMError(f"counter-1: gave up after 3 attempts: HTTP 429 (call {self.calls})")
        return VLMReply(f'{{"task": "task {self.calls}"}}', self.model, 0.25 * self.calls, 100 + self.calls, 5)


class MustNotBeCalled:
    backend, model = "gemini", "gemini-test"

    def complete(self, request):
        raise AssertionError("a replay called the model")


def _events(bus: MemoryBus) -> list[dict]:
    consumer = bus.consumer(None, [topics.VLM])
    deliveries = consumer.poll(timeout_s=0.1)
    consumer.close()
    assert all(d.batch.type == "vlm.call" and d.batch.version == 1 for d in deliveries)
    return [dict(row, _key=d.key) for d in deliveries for row in d.batch.rows()]


def _session(vlm, questions: list[str]) -> list[tuple[str, str]]:
    """What the curriculum does: asks, and notes each (call id, reply or error)."""
    outcomes = []
    for question in questions:
        try:
            reply = vlm.complete(_request(question))
            outcomes.append((reply.call_id, reply.text))
        except VLMError as exc:
            outcomes.append((vlm.last_call_id, f"error: {exc}"))
    return outcomes


def test_a_call_becomes_one_event_with_what_was_asked_and_answered():
    bus = MemoryBus()
    vlm = RecordingVLM(CountingVLM(), bus.producer(), "exp-rec-1")
    assert (vlm.backend, vlm.model) == ("counting", "counter-1")
    request = _request()
    reply = vlm.complete(request)
    assert reply.text == '{"task": "task 1"}' and reply.call_id == vlm.last_call_id
    (event,) = _events(bus)
    assert event["_key"] == "exp-rec-1"
    assert event["call_id"] == reply.call_id and event["experiment_id"] == "exp-rec-1"
    assert (event["stage"], event["backend"], event["model"], event["temperature"]) == (
        "propose", "counting", "counter-1", 0.0)
    assert event["prompt_hash"] == request.hash and event["prompt"] == request.prompt
    assert "What next?" in event["prompt"] and "You are the curriculum." in event["prompt"]
    assert event["images"] == [{"name": "episode/e1/initial", "sha256": Image("x", PNG).sha256}]
    assert (event["reply"], event["latency_s"], event["input_tokens"], event["output_tokens"]) == (
        '{"task": "task 1"}', 0.25, 101, 5)
    assert event["error"] is None and event["attempt"] == 1


def test_a_failed_call_is_recorded_with_its_error_then_raised():
    bus = MemoryBus()
    vlm = RecordingVLM(CountingVLM(failing=("What next?",)), bus.producer(), "exp-rec-2")
    with pytest.raises(VLMError, match="HTTP 429"):
        vlm.complete(_request(), attempt=2)
    (event,) = _events(bus)
    assert event["reply"] is None and "gave up after 3 attempts: HTTP 429" in event["error"]
    assert event["attempt"] == 2 and event["call_id"] == vlm.last_call_id
    assert event["latency_s"] >= 0 and event["input_tokens"] is None


def test_call_ids_are_deterministic_and_tell_repeated_questions_apart():
    first = _session(RecordingVLM(CountingVLM(), MemoryBus().producer(), "exp-rec-3"), ["a", "b", "a"])
    again = _session(RecordingVLM(CountingVLM(), MemoryBus().producer(), "exp-rec-3"), ["a", "b", "a"])
    other = _session(RecordingVLM(CountingVLM(), MemoryBus().producer(), "exp-rec-4"), ["a", "b", "a"])
    ids = [call for call, _ in first]
    assert ids == [call for call, _ in again]
    assert len(set(ids)) == 3, "the same question asked twice is two calls"
    assert not set(ids) & {call for call, _ in other}
    vlm = RecordingVLM(CountingVLM(), MemoryBus().producer(), "exp-rec-3")
    assert vlm.complete(_request("a"), attempt=2).call_id != ids[0]


def test_a_replay_gives_the_recorded_replies_and_ids_without_calling_the_model():
    bus = MemoryBus()
    questions = ["a", "b", "a", "broken", "c"]
    recorded = _session(RecordingVLM(CountingVLM(failing=("broken",)), bus.producer(), "exp-rec-5"), questions)
    events = _events(bus)
    replay_bus = MemoryBus()
    replayer = RecordingVLM(MustNotBeCalled(), replay_bus.producer(), "exp-rec-5",
                            replay=RecordedReplies.from_rows(events))
    assert _session(replayer, questions) == recorded
    assert "error: counter-1: gave up after 3 attempts" in recorded[3][1], "the recorded failure fails again"
    replayed = _events(replay_bus)
    unchanging = ("call_id", "prompt_hash", "reply", "error", "backend", "model", "latency_s", "input_tokens")
    assert [[e[k] for k in unchanging] for e in replayed] == [[e[k] for k in unchanging] for e in events]


def test_a_replay_that_asks_something_new_stops_without_calling_the_model():
    bus = MemoryBus()
    _session(RecordingVLM(CountingVLM(), bus.producer(), "exp-rec-6"), ["a", "b"])
    replays = RecordedReplies.from_rows(_events(bus))
    replay_bus = MemoryBus()
    replayer = RecordingVLM(MustNotBeCalled(), replay_bus.producer(), "exp-rec-6", replay=replays)
    replayer.complete(_request("a"))
    with pytest.raises(ReplayMismatch, match="never asked.*nothing was sent to the model"):
        replayer.complete(_request("a"))  # asked once in the recording, twice now
    with pytest.raises(ReplayMismatch):
        replayer.complete(_request("b", stage="decompose"))  # same words, another stage
    assert len(_events(replay_bus)) == 1


def test_a_new_process_counts_on_from_the_recorded_history():
    bus = MemoryBus()
    first = _session(RecordingVLM(CountingVLM(), bus.producer(), "exp-rec-8"), ["a", "b"])
    history = RecordedReplies.from_rows(_events(bus))
    later = _session(RecordingVLM(CountingVLM(), MemoryBus().producer(), "exp-rec-8", history=history), ["a"])
    assert later[0][0] not in {call for call, _ in first}, "asking 'a' again is a new call"
    both = RecordedReplies.from_rows(_events(bus) + [dict(_events(bus)[0], call_id=later[0][0])])
    assert both.asked()[_request("a").hash] == 2


def test_a_call_recorded_twice_counts_once():
    bus = MemoryBus()
    _session(RecordingVLM(CountingVLM(), bus.producer(), "exp-rec-7"), ["a", "a"])
    events = _events(bus)
    replays = RecordedReplies.from_rows(events + events)  # an experiment replayed under its own id
    assert len(replays) == 2


def test_calls_land_in_the_lake_and_replay_from_it_without_the_model(tmp_path):
    """Recorded through the real Gemini client, sunk to the lake, replayed from the lake while the
    server counts the requests it gets."""
    bus, settings = MemoryBus(), Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    with GeminiServer() as server:
        server.queue(server.reply('{"task": "lift red"}'), server.error(400, "bad image"),
                     server.reply('{"task": "stack"}', input_tokens=50))
        gemini = GeminiVLM("gemini-test", api_key="k", base_url=server.url, timeout=5, retries=0)
        questions = ["first", "second", "third"]
        recorded = _session(RecordingVLM(gemini, bus.producer(), "exp-rec-lake"), questions)
        LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.3)

        con = open_lake(settings)
        try:
            assert con.execute("SELECT count(*) FROM events WHERE type = 'vlm.call' "
                               "AND experiment_id = 'exp-rec-lake'").fetchone() == (3,)
            replays = RecordedReplies.from_lake(con, "exp-rec-lake")
            with pytest.raises(ReplayMismatch, match="no recorded model calls"):
                RecordedReplies.from_lake(con, "exp-never-ran")
        finally:
            con.close()
        replayer = RecordingVLM(gemini, MemoryBus().producer(), "exp-rec-lake", replay=replays)
        assert _session(replayer, questions) == recorded
        assert len(server.requests) == 3, "the replay sent nothing to the server"
    assert recorded[0][1] == '{"task": "lift red"}' and "HTTP 400" in recorded[1][1]


def test_the_log_reads_a_call_as_one_line():
    bus = MemoryBus()
    vlm = RecordingVLM(CountingVLM(failing=("broken",)), bus.producer(), "exp-rec-8")
    _session(vlm, ["a", "broken"])
    consumer = bus.consumer(None, [topics.VLM])
    lines = [describe(d) for d in consumer.poll(timeout_s=0.1)]
    assert lines[0].endswith('counting/counter-1 (propose, 0.2s): {"task": "task 1"}')
    assert "counting/counter-1 (propose" in lines[1] and "error: counter-1: gave up after 3 attempts" in lines[1]


def test_the_lake_orders_calls_by_their_time_not_by_the_name_of_the_log(tmp_path):
    """Each process's in-process bus is a log of its own, named at random: the second process's
    log may sort first, but its call came second."""
    from infra.bus.memory import MemoryBroker

    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    first_bus, second_bus = MemoryBus(MemoryBroker()), MemoryBus(MemoryBroker())
    first_bus.broker.log_id, second_bus.broker.log_id = "memory-zzz", "memory-aaa"
    first = _session(RecordingVLM(CountingVLM(), first_bus.producer(), "exp-rec-order"), ["a"])
    history = RecordedReplies.from_rows(_events(first_bus))
    second = _session(RecordingVLM(CountingVLM(), second_bus.producer(), "exp-rec-order", history=history), ["a"])
    for bus in (second_bus, first_bus):
        LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    con = open_lake(settings)
    replays = RecordedReplies.from_lake(con, "exp-rec-order")
    con.close()
    assert [replays.calls[(_request("a").hash, n)]["call_id"] for n in (0, 1)] == [first[0][0], second[0][0]]


def test_a_huge_reply_or_prompt_is_recorded_cut_with_its_length_and_hash():
    import hashlib

    from consumers.curriculum.recorder import RECORDED_BYTES

    class Runaway(CountingVLM):
        def complete(self, request):
            return VLMReply('{"task": "' + "é" * 5_000_000 + '"}', self.model, 0.1)

    bus = MemoryBus()
    question = "Q" * 200_000
    reply = RecordingVLM(Runaway(), bus.producer(), "exp-rec-huge").complete(_request(question))
    [event] = _events(bus)
    assert len(reply.text) == 5_000_012, "the caller gets the whole reply (and rejects it)"
    assert len(event["reply"].encode()) < RECORDED_BYTES + 200 and len(event["prompt"].encode()) < RECORDED_BYTES + 200
    digest = hashlib.sha256(reply.text.encode()).hexdigest()
    assert event["reply"].endswith(f"[cut here: the text has 5000012 characters in all, sha256 {digest}]")
    assert event["prompt_hash"] == _request(question).hash, "a replay still finds the call"


def test_a_reply_that_is_not_text_is_recorded_as_a_failed_call():
    class Parts(CountingVLM):
        def complete(self, request):
            return VLMReply([{"type": "text", "text": "{}"}], self.model, 0.1, "many", None)

    bus = MemoryBus()
    with pytest.raises(VLMError, match="the reply is a list, not text"):
        RecordingVLM(Parts(), bus.producer(), "exp-rec-parts").complete(_request())
    [event] = _events(bus)
    assert event["reply"] is None and "not text" in event["error"]


def test_a_replay_that_asks_something_new_says_the_inputs_or_prompts_differ():
    bus = MemoryBus()
    _session(RecordingVLM(CountingVLM(), bus.producer(), "exp-rec-msg"), ["a"])
    replayer = RecordingVLM(MustNotBeCalled(), MemoryBus().producer(), "exp-rec-msg",
                            replay=RecordedReplies.from_rows(_events(bus)))
    with pytest.raises(ReplayMismatch, match=r"the inputs \(summaries, library, scene\) or the prompts differ"):
        replayer.complete(_request("b"))


def test_a_rejected_reply_is_recorded_with_why_it_was_rejected():
    from consumers.curriculum.replies import ReplyError, ask

    def check(reply: dict):
        raise ReplyError(f"{reply['task']!r} is not one of the candidates")

    bus = MemoryBus()
    vlm = RecordingVLM(CountingVLM(), bus.producer(), "exp-rec-rejected")
    assert ask(vlm, _request(), check) is None  # rejected, then its repair rejected too
    calls = _events(bus)
    assert [c["attempt"] for c in calls] == [1, 2]
    assert [c["error"] for c in calls] == ["reply rejected: 'task 1' is not one of the candidates",
                                           "reply rejected: 'task 2' is not one of the candidates"]
    assert [c["reply"] for c in calls] == ['{"task": "task 1"}', '{"task": "task 2"}'], "the reply is kept"
