"""Kafka (or the in-process bus) -> Parquet in the lake, exactly once.

How, as the Kafka Connect S3 sink does it:
- Rows are buffered per (topic, partition) and written as objects named by topic, partition and
  the offset of their first record (schemas/lake.py), so the same input yields the same names.
- Files rotate by size and by age, and the age is checked on every poll, including empty ones:
  an idle topic still lands within `flush_seconds` (the flaw other sinks have).
- Offsets are committed only after every object of a flush is durable. If MinIO is down, the
  flush is retried with backoff and nothing is committed until it succeeds.
- Whenever a partition (re)starts — the first record after a restart, or a rewind to the
  committed offset after a rebalance or a failed commit — objects of that partition starting at
  or after that offset were written but never committed, so they and any buffered rows of the
  partition are dropped before anything new is written. Nothing duplicated, nothing lost.
- A failed commit (broker restarting) is logged and retried with the next flush.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict

from consumers.lake_sink.writer import LakeWriter, SinkStats
from infra.bus import Bus, BusError, Delivery, open_bus
from infra.lake_store import LakeStore, open_store
from robolake.settings import Settings
from schemas import lake, topics

log = logging.getLogger(__name__)

SOURCE_TOPICS = [topics.EPISODES, topics.CURRICULUM, topics.SKILLS, topics.LEARNER, topics.ANALYSIS]


class LakeSink:
    def __init__(self, settings: Settings, bus: Bus | None = None, store: LakeStore | None = None,
                 group: str = "lake-sink", source_topics: list[str] | None = None,
                 file_bytes: int = 128 * 1024 * 1024, flush_seconds: float = 5.0,
                 retry_max_s: float = 30.0):
        self.bus = bus or open_bus(settings)
        self.store = store or open_store(settings)
        self.group, self.topics = group, source_topics or SOURCE_TOPICS
        self.file_bytes, self.flush_seconds, self.retry_max_s = file_bytes, flush_seconds, retry_max_s
        self.writer = LakeWriter(self.store)
        self.stats = self.writer.stats
        self._next_offset: dict[tuple[str, int], int] = {}
        self._uncommitted = False
        self._existing: dict[tuple[str, int], list[tuple[int, str]]] | None = None

    def run(self, stop: threading.Event | None = None, until_idle_s: float | None = None) -> SinkStats:
        """Consume until `stop` is set (or SIGTERM/SIGINT when run from the CLI), or, with
        `until_idle_s`, until caught up with the end of every partition, nothing has arrived
        for that long, and everything is committed."""
        stop = stop or threading.Event()
        self.store.probe()
        consumer = self.bus.consumer(self.group, self.topics)
        last_message = time.monotonic()
        try:
            while not stop.is_set():
                dead_before = consumer.dead_lettered
                deliveries = consumer.poll(timeout_s=min(0.5, self.flush_seconds))
                if deliveries or consumer.dead_lettered != dead_before:
                    last_message = time.monotonic()
                    self._uncommitted = True
                    self.stats.dead_letters += consumer.dead_lettered - dead_before
                for delivery in deliveries:
                    self._add(delivery)
                caught_up = (until_idle_s is not None and time.monotonic() - last_message >= until_idle_s
                             and consumer.lag() == 0)
                if self._due() or (caught_up and (not self.writer.empty or self._uncommitted)):
                    self._flush_and_commit(consumer, stop)
                if caught_up and self.writer.empty and not self._uncommitted:
                    break
            if not self._flush_and_commit(consumer, threading.Event(), attempts=3):
                log.warning("stopped with unflushed data; it will be re-read from the committed offsets")
        finally:
            consumer.close()
        return self.stats

    def _add(self, delivery: Delivery) -> None:
        tp = (delivery.topic, delivery.partition)
        expected = self._next_offset.get(tp)
        if expected is None or delivery.offset < expected:  # (re)starting from the committed offset
            log.info("%s/%d starts at offset %d%s", tp[0], tp[1], delivery.offset,
                     "" if expected is None else f" (rewound from {expected})")
            self.writer.discard(tp)
            self._remove_uncommitted(tp, delivery.offset, fresh=expected is not None)
        self._next_offset[tp] = delivery.offset + 1
        self.writer.add(delivery)

    def _due(self) -> bool:
        if self.writer.empty:
            return self._uncommitted  # only dead letters since the last commit
        return self.writer.pending_bytes >= self.file_bytes or self.writer.oldest_age_s >= self.flush_seconds

    def _flush_and_commit(self, consumer, stop: threading.Event, attempts: int | None = None) -> bool:
        """Write every buffer, then commit. While the lake is down, retry with backoff and commit
        nothing; give up (False) when `stop` is set or after `attempts` tries."""
        delay, tried = 0.5, 0
        while True:
            try:
                self.writer.write()
                break
            except Exception as exc:  # the lake (MinIO, disk) failed: keep the buffers
                tried += 1
                self.stats.retries += 1
                log.warning("writing to the lake at %s failed (%s); retry in %.1fs, nothing committed",
                            self.store.root, exc, delay)
                if (attempts is not None and tried >= attempts) or stop.wait(delay):
                    return False
                delay = min(delay * 2, self.retry_max_s)
        if self._uncommitted:
            try:
                consumer.commit()
            except BusError as exc:  # the files are durable; the offsets go with the next commit
                log.warning("commit failed, retrying with the next flush: %s", exc)
                return True
            self._uncommitted = False
        return True

    def _remove_uncommitted(self, tp: tuple[str, int], resume_offset: int, fresh: bool = False) -> None:
        if self._existing is None or fresh:  # one listing per run (again after a rewind)
            self._existing = defaultdict(list)
            for table_name in lake.TABLES:
                for key in self.store.list(f"{table_name}/"):
                    parsed = lake.parse_file_name(key)
                    if parsed:  # compacted files hold committed offsets only: never stale
                        self._existing[parsed[:2]].append((parsed[2], key))
        stale = [key for start, key in self._existing.pop(tp, []) if start >= resume_offset]
        if stale:
            log.warning("removing %d objects of %s/%d written after offset %d by a run that never committed them",
                        len(stale), tp[0], tp[1], resume_offset)
            self.store.delete(stale)
            self.stats.stale_files_removed += len(stale)


def run_until_signalled(sink: LakeSink) -> SinkStats:
    """Run a sink in the foreground; SIGTERM or Ctrl-C flushes, commits and exits."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return sink.run(stop)
