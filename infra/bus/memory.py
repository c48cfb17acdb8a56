"""The in-process bus: Kafka's semantics (partitions by key, offsets, groups, committed offsets,
replay from the start) in one Python process, for the embedded default and unit tests.

Messages live as long as the process. Each broker is a log of its own (`log_id`, new per
process), so the offsets of two processes that share one lake never meet: the lake keys its
progress by (log, topic, partition).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
import zlib
from collections import defaultdict

from infra.bus.interface import Bus, BusError, Consumer, Message, Producer
from schemas import topics
from schemas.codec import Headers


class MemoryBroker:
    def __init__(self, partitions: int = 4):
        self.partitions = partitions
        self.log_id = f"memory-{uuid.uuid4().hex}"
        self.logs: dict[str, list[list[Message]]] = {}
        self.start_offsets: dict[tuple[str, int], int] = {}
        self.committed: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)
        self.members: dict[str, list[int]] = defaultdict(list)  # group -> consumer ids, join order
        self.changed = threading.Condition()
        self._round_robin = itertools.count()
        for name in topics.ALL:
            self.ensure_topic(name)

    def start(self, topic: str, partition: int) -> int:
        return self.start_offsets.get((topic, partition), 0)

    def end(self, topic: str, partition: int) -> int:
        return self.start(topic, partition) + len(self.logs[topic][partition])

    def ensure_topic(self, name: str) -> None:
        with self.changed:
            self.logs.setdefault(name, [[] for _ in range(self.partitions)])

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Message:
        with self.changed:
            if topic not in self.logs:
                raise BusError(f"topic {topic!r} does not exist (create it first)")
            partitions = self.logs[topic]
            # Same key, same partition (so an episode's chunks stay ordered); no key: spread.
            index = (zlib.crc32(key) if key is not None else next(self._round_robin)) % len(partitions)
            log = partitions[index]
            message = Message(topic, index, self.end(topic, index), key, value, list(headers),
                              int(time.time() * 1000))
            log.append(message)
            self.changed.notify_all()
            return message


class MemoryProducer(Producer):
    def __init__(self, broker: MemoryBroker, max_message_bytes: int):
        super().__init__(max_message_bytes)
        self.broker = broker

    def send_raw(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        self.broker.append(topic, key, value, headers)

    def flush(self, timeout_s: float | None = None) -> None:
        pass  # appends are immediate


class MemoryConsumer(Consumer):
    _ids = itertools.count()

    def __init__(self, bus: "MemoryBus", group: str | None, topic_names: list[str], **kwargs):
        super().__init__(bus, group, topic_names, **kwargs)
        self.broker = bus.broker
        self.id = next(self._ids)
        self.positions: dict[tuple[str, int], int] = {}
        self.from_beginning = self.paused = False
        with self.broker.changed:
            for name in self.topics:
                if name not in self.broker.logs:
                    raise BusError(f"topic {name!r} does not exist (create it first)")
            if group is not None:
                self.broker.members[group].append(self.id)

    def _assignment(self) -> list[tuple[str, int]]:
        every = [(t, p) for t in self.topics for p in range(len(self.broker.logs[t]))]
        if self.group is None:
            return every
        members = self.broker.members[self.group]
        mine = members.index(self.id)
        return [tp for i, tp in enumerate(every) if i % len(members) == mine]

    def _rebalance(self) -> list[tuple[str, int]]:
        assigned = self._assignment()
        committed = self.broker.committed[self.group] if self.group is not None else {}
        start = self.broker.start
        self.positions = {tp: max(start(*tp), self.positions.get(tp, start(*tp) if self.from_beginning
                                                                else committed.get(tp, 0)))
                          for tp in assigned}
        return assigned

    def poll_raw(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        with self.broker.changed:
            while True:
                out: list[Message] = []
                for tp in [] if self.paused else self._rebalance():
                    log = self.broker.logs[tp[0]][tp[1]]
                    index = self.positions[tp] - self.broker.start(*tp)
                    taken = log[index:index + max_records - len(out)]
                    out.extend(taken)
                    self.positions[tp] += len(taken)
                    if len(out) >= max_records:
                        break
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                self.broker.changed.wait(remaining)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def lag(self) -> int | None:
        with self.broker.changed:
            assigned = self._rebalance()
            if not assigned:
                return None
            committed = self.broker.committed[self.group] if self.group is not None else {}
            every = [(t, p) for t in self.topics for p in range(len(self.broker.logs[t]))]
            return sum(self.broker.end(*tp) - self.positions.get(tp, max(committed.get(tp, 0), self.broker.start(*tp)))
                       for tp in every)

    def _commit(self, offsets: dict[tuple[str, int], int] | None) -> None:
        with self.broker.changed:
            self.broker.committed[self.group].update(self.positions if offsets is None else offsets)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        with self.broker.changed:
            self.positions[(topic, partition)] = max(offset, self.broker.start(topic, partition))

    def assignment(self) -> set[tuple[str, int]]:
        with self.broker.changed:
            return set(self._assignment())

    def log_start(self, topic: str, partition: int) -> int:
        return self.broker.start(topic, partition)

    def log_id(self, topic: str) -> str:
        return self.broker.log_id

    def committed(self) -> dict[tuple[str, int], int]:
        with self.broker.changed:
            return dict(self.broker.committed[self.group]) if self.group is not None else {}

    def seek_to_beginning(self) -> None:
        with self.broker.changed:
            self.from_beginning = True
            self.positions = {tp: self.broker.start(*tp) for tp in self.positions}

    def close(self) -> None:
        super().close()
        with self.broker.changed:
            if self.group is not None and self.id in self.broker.members[self.group]:
                self.broker.members[self.group].remove(self.id)


class MemoryBus(Bus):
    def __init__(self, broker: MemoryBroker | None = None, max_message_bytes: int = 512 * 1024):
        self.broker = broker or MemoryBroker()
        super().__init__(max_message_bytes, self.broker.partitions)

    def ensure_topics(self, names: list[str]) -> None:
        for name in names:
            self.broker.ensure_topic(name)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self.broker, self.max_message_bytes)

    def log_start_offsets(self, topic_names: list[str]) -> dict[tuple[str, int], int]:
        with self.broker.changed:
            return {(t, p): self.broker.start(t, p) for t in topic_names if t in self.broker.logs
                    for p in range(len(self.broker.logs[t]))}

    def log_end_offsets(self, topic_names: list[str]) -> dict[tuple[str, int], int]:
        with self.broker.changed:
            return {(t, p): self.broker.end(t, p) for t in topic_names if t in self.broker.logs
                    for p in range(len(self.broker.logs[t]))}

    def consumer(self, group: str | None, topic_names: list[str], **kwargs) -> MemoryConsumer:
        return MemoryConsumer(self, group, topic_names, **kwargs)
