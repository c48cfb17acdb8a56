"""The bus: one small interface, two backends (in-process memory, Kafka), one contract test suite.

Producer: `send(topic, key, batch)` then `flush()` (durable when it returns).
Consumer: `poll()` returns decoded batches with topic/partition/offset; `commit()` commits
everything polled so far, after the dead letters it wrote are durable; `seek_to_beginning()`
replays; `held()` keeps a group member's partitions while it works longer than the poll interval. Messages that fail to decode go to the dead-letter topic with the reason and their
source, and the consumer carries on: a poison message never stalls a partition. A reader without
a group (tail, replay) owns no processing, so it only counts and logs them: one dead letter per
poison message, however many people look at the topic.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from schemas import topics
from schemas.codec import DecodeError, EventBatch, Headers, decode, encode
from schemas.events import REGISTRY, Registry

log = logging.getLogger(__name__)


class BusError(RuntimeError):
    """The bus could not do what was asked (unreachable broker, failed delivery)."""


class MessageTooLarge(BusError):
    def __init__(self, size: int, limit: int, topic: str):
        super().__init__(f"message of {size} bytes for {topic} exceeds the {limit}-byte bound "
                         "(split the batch, or raise max_message_bytes)")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class Message:
    """A message as it lies on a topic: raw bytes, before decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode(errors="replace")
        return None


@dataclass(frozen=True)
class Delivery:
    """A decoded message (`message`: the bytes it came from, for a consumer that must dead-letter it)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    batch: EventBatch
    timestamp_ms: int
    message: Message | None = None


@dataclass(frozen=True)
class Skipped:
    """A message that was dead-lettered (or, for a reader without a group, skipped): its offset
    still counts as read, so a consumer that tracks positions itself sees no gap."""

    topic: str
    partition: int
    offset: int
    reason: str


def key_bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class Producer(ABC):
    def __init__(self, max_message_bytes: int):
        self.max_message_bytes = max_message_bytes

    def send(self, topic: str, key: str | bytes | None, batch: EventBatch) -> None:
        """Queue one event batch as one message; MessageTooLarge if it exceeds the bound."""
        value, headers = encode(batch)
        if len(value) > self.max_message_bytes:
            raise MessageTooLarge(len(value), self.max_message_bytes, topic)
        self.send_raw(topic, key_bytes(key), value, headers)

    @abstractmethod
    def send_raw(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Queue bytes as they are (dead letters, replays, tests of bad input)."""

    @abstractmethod
    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued message is durable on the bus; BusError if any failed."""

    def close(self) -> None:
        self.flush()


class Consumer(ABC):
    """Decoding, dead-lettering and commit ordering, shared by both backends."""

    def __init__(self, bus: "Bus", group: str | None, topic_names: list[str],
                 registry: Registry = REGISTRY, read_as: dict[str, int] | None = None,
                 dead_letter: bool = True):
        self.bus, self.group, self.topics = bus, group, list(topic_names)
        self.registry, self.read_as = registry, read_as
        # A reader without a group, or a replay of a log whose poison was dead-lettered when it was
        # first consumed, only counts: one dead letter per poison message, however often it is read.
        self.dead_letters_on = dead_letter and group is not None
        self._dead_letters: Producer | None = None
        self.dead_lettered = 0
        self.skipped = 0

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Delivery]:
        return [d for d in self.poll_records(timeout_s, max_records) if isinstance(d, Delivery)]

    def poll_records(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Delivery | Skipped]:
        """Every message polled, in log order: decoded, or Skipped after it was dead-lettered."""
        out: list[Delivery | Skipped] = []
        for message in self.poll_raw(timeout_s, max_records):
            try:
                batch = decode(message.value, message.headers, self.registry, self.read_as)
            except Exception as exc:  # whatever the exception, one message is only poison
                reason, detail = ((exc.reason, exc.detail) if isinstance(exc, DecodeError)
                                  else ("undecodable", f"{type(exc).__name__}: {exc}"))
                self.dead_letter(message, reason, detail)
                out.append(Skipped(message.topic, message.partition, message.offset, reason))
                continue
            key = message.key.decode(errors="replace") if message.key is not None else None
            out.append(Delivery(message.topic, message.partition, message.offset, key, batch,
                                message.timestamp_ms, message))
        return out

    def commit(self, offsets: dict[tuple[str, int], int] | None = None) -> None:
        """Commit everything polled so far (or exactly `offsets`: (topic, partition) -> next
        offset), once the dead letters written for it are durable."""
        if self.group is None:
            raise BusError("a consumer without a group has no offsets to commit")
        self.flush_dead_letters()
        self._commit(offsets)

    def flush_dead_letters(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.flush()

    def dead_letter(self, message: Message, reason: str, detail: str) -> None:
        """Send `message` to the dead-letter topic with the reason (or only count it, see __init__)."""
        if not self.dead_letters_on:
            log.warning("skipping undecodable message %s/%d@%d: %s: %s", message.topic,
                        message.partition, message.offset, reason, detail)
            self.skipped += 1
            return
        if self._dead_letters is None:
            self._dead_letters = self.bus.producer()
        source = f"{message.topic}/{message.partition}/{message.offset}"
        log.warning("dead letter from %s: %s: %s", source, reason, detail)
        headers = [h for h in message.headers if not h[0].startswith("dlq.")] + [
            ("dlq.reason", reason.encode()), ("dlq.detail", detail.encode()),
            ("dlq.source.topic", message.topic.encode()),
            ("dlq.source.partition", str(message.partition).encode()),
            ("dlq.source.offset", str(message.offset).encode()),
            ("dlq.consumer", (self.group or "").encode()),
            ("dlq.time_ms", str(int(time.time() * 1000)).encode()),
        ]
        self._dead_letters.send_raw(topics.DLQ, message.key, message.value, headers)
        self.dead_lettered += 1

    @contextmanager
    def held(self, interval_s: float = 1.0):
        """For a block of long work: a group member that stops polling is counted gone after the
        poll interval and its partitions move. Here fetching pauses and a thread keeps polling
        (heartbeats, rebalances) until the block ends; the block must not use this consumer."""
        self.pause()
        done = threading.Event()

        def keep() -> None:
            while not done.is_set():
                first: dict[tuple[str, int], int] = {}
                for message in self.poll_raw(interval_s):  # paused: none, but should one come, lose none
                    first.setdefault((message.topic, message.partition), message.offset)
                for (topic, partition), offset in first.items():
                    self.seek(topic, partition, offset)

        thread = threading.Thread(target=keep, name="bus-keepalive", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
            self.resume()

    @abstractmethod
    def pause(self) -> None:
        """Fetch nothing (from the partitions assigned now or later) until `resume()`; polls still
        keep the group membership."""

    @abstractmethod
    def resume(self) -> None: ...

    @abstractmethod
    def poll_raw(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]: ...

    @abstractmethod
    def _commit(self, offsets: dict[tuple[str, int], int] | None) -> None: ...

    @abstractmethod
    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read `partition` from `offset` on (it must be assigned to this consumer now)."""

    @abstractmethod
    def assignment(self) -> set[tuple[str, int]]:
        """The partitions this consumer reads now (a group rebalance changes them)."""

    @abstractmethod
    def log_start(self, topic: str, partition: int) -> int:
        """The oldest offset `partition` still holds (older ones were removed by retention)."""

    @abstractmethod
    def log_id(self, topic: str) -> str:
        """Names this incarnation of `topic`'s log: offsets are only comparable within one log
        (a topic deleted and recreated, or a second in-process bus, starts a new one)."""

    @abstractmethod
    def seek_to_beginning(self) -> None:
        """Read every assigned partition (now and after later rebalances) from its first offset."""

    @abstractmethod
    def lag(self) -> int | None:
        """Messages of the subscribed topics this consumer's group has still to read: from our
        position on the partitions assigned to us, from the group's committed offset on the
        others (a member that died holds its partitions until its session expires, and the work
        is not done until someone reads them). None while no partition is assigned to us yet."""

    @abstractmethod
    def committed(self) -> dict[tuple[str, int], int]:
        """The group's committed offsets, (topic, partition) -> next offset to read."""

    def close(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.close()


class Bus(ABC):
    def __init__(self, max_message_bytes: int, partitions: int):
        self.max_message_bytes, self.partitions = max_message_bytes, partitions

    @abstractmethod
    def ensure_topics(self, names: list[str]) -> None: ...

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def log_start_offsets(self, topic_names: list[str]) -> dict[tuple[str, int], int]:
        """The oldest offset still retained in each partition of the existing topics (older
        messages were removed by retention, or lived in an in-process bus that has ended)."""

    @abstractmethod
    def log_end_offsets(self, topic_names: list[str]) -> dict[tuple[str, int], int]:
        """The next offset to be written in each partition of the existing topics."""

    @abstractmethod
    def consumer(self, group: str | None, topic_names: list[str], **kwargs) -> Consumer:
        """A consumer; with group=None it reads every partition and commits nothing (tail, replay)."""


class Land(Protocol):
    """Writes what `topics` of the in-process bus hold into the lake now, before the process ends and
    the bus with it (on Kafka a running sink does that). The lake sink's `land` is one; a layer below
    the sink is handed it (the learner's lineage), never the sink itself."""

    def __call__(self, settings, bus: Bus, topics: list[str]) -> None: ...
