"""Kafka (or the in-process bus) -> the lake's tables, exactly once, with any number of sinks.

The protocol (consumers/lake_sink/writer.py, infra/lake_catalog.py):
- The lake, not Kafka, says how far each (log, topic, partition) has been written: a sink that
  meets a partition (at start, after a rebalance, after a gap) reads the lake's next offset and
  seeks there. Kafka's committed offsets are only a mirror, for monitoring tools.
- Rows and the new offsets are committed in one catalog transaction, fenced: if another sink
  moved the partition meanwhile (we are a zombie after a rebalance, or were paused past the poll
  interval), nothing of ours becomes visible, and we re-read from the lake's offset.
- Commits happen by size, and by age: a commit starts early enough to land about `flush_seconds`
  after the oldest message it holds was read (the time a commit takes is learnt as it goes, and a
  poll never waits past that start), so freshness holds whether messages trickle or pour in. While
  the lake is down, commits are retried with backoff.
- A message that cannot be decoded or projected, whatever the exception, goes to the dead-letter
  topic (flushed before the commit that moves past it); it never stalls the partition.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time

from consumers.lake_sink.writer import LakeWriter, SinkStats
from infra.bus.backend import open_bus
from infra.bus.interface import Bus, BusError, Consumer, Delivery, Skipped
from infra.lake_catalog import LakeTables, OffsetKey
from schemas import topics

log = logging.getLogger(__name__)

SOURCE_TOPICS = [topics.EPISODES, topics.CURRICULUM, topics.SKILLS, topics.LEARNER, topics.ANALYSIS, topics.SUMMARIES,
                 topics.VLM, topics.LINEAGE, topics.RUNS]


def sink_in_process(settings) -> None:
    """On the in-process bus, what a command sent outlives it only in the lake: sink it now
    (nothing to do on Kafka, where a running `robolake sink` writes it)."""
    if settings.bus == "memory":
        LakeSink(settings, flush_seconds=1.0).run(until_idle_s=0.3)


def land(settings, bus: Bus, source_topics: list[str]) -> None:
    """These topics of the in-process bus into the lake, now (infra.bus.interface.Land)."""
    LakeSink(settings, bus=bus, source_topics=source_topics, flush_seconds=1.0).run(until_idle_s=0.2)


def default_group(settings) -> str:
    """The sink's consumer group, one per lake: its offsets mirror that lake's, and a sink of
    another lake that shared it would start where this one stands. (Only a mirror: the lake's own
    offsets decide where a sink continues.)"""
    root = settings.lake_root
    identity = f"{settings.s3_endpoint}/{root}" if root.startswith("s3://") else root  # one bucket, two servers
    return f"lake-sink-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


class LakeUnavailable(RuntimeError):
    """The lake cannot be written now; the message says where and why."""


class LakeSink:
    def __init__(self, settings, bus: Bus | None = None, tables: LakeTables | None = None,
                 group: str | None = None, source_topics: list[str] | None = None,
                 file_bytes: int = 128 * 1024 * 1024, flush_seconds: float = 5.0,
                 retry_max_s: float = 30.0, dead_letter: bool = True):
        self.settings = settings
        self.bus = bus or open_bus(settings)
        self._tables = tables
        self.group, self.topics = group or default_group(settings), source_topics or SOURCE_TOPICS
        self.file_bytes, self.flush_seconds, self.retry_max_s = file_bytes, flush_seconds, retry_max_s
        self.dead_letter = dead_letter
        self.stats = SinkStats()
        self._adopted: set[tuple[str, int]] = set()  # partitions started where the lake says, this assignment
        self._log_ids: dict[str, str] = {}
        self._seeking: dict[OffsetKey, int] = {}
        self._seeked_in_batch: set[OffsetKey] = set()
        self._commit_s = 0.0  # how long a commit takes here, learnt from the last ones

    def run(self, stop: threading.Event | None = None, until_idle_s: float | None = None) -> SinkStats:
        """Consume until `stop` is set (or SIGTERM/SIGINT when run from the CLI), or, with
        `until_idle_s`, until caught up with the end of every partition, nothing has arrived
        for that long, and everything is committed."""
        stop = stop or threading.Event()
        tables = self._tables or self._open_tables()
        self.writer = LakeWriter(tables, self.stats)
        consumer = self.bus.consumer(self.group, self.topics, dead_letter=self.dead_letter)
        last_message = time.monotonic()
        try:
            while not stop.is_set():
                records = consumer.poll_records(timeout_s=max(0.005, min(0.5, self._until_due_s())))
                if records:
                    last_message = time.monotonic()
                self._seeked_in_batch: set[OffsetKey] = set()
                self._adopt_assigned(consumer, records)
                for record in records:
                    self._take(consumer, record)
                    if self.writer.pending_bytes >= self.file_bytes:
                        self._commit(consumer, stop)
                self._drop_revoked(consumer)
                caught_up = (until_idle_s is not None and time.monotonic() - last_message >= until_idle_s
                             and consumer.lag() == 0)
                if self.writer.dirty and (caught_up or self._until_due_s() <= 0):
                    self._commit(consumer, stop)
                if caught_up and not self.writer.dirty:
                    break
            if not self._commit(consumer, threading.Event(), attempts=3):
                log.warning("stopped with uncommitted data; it will be re-read from the lake's offsets")
        finally:
            consumer.close()
            if self._tables is None:
                tables.close()
        return self.stats

    def _until_due_s(self) -> float:
        """Seconds until what is buffered must be committed to land `flush_seconds` after its oldest
        message was read: a commit's own time (`_commit_s`, learnt: waiting for the writers' turn
        included) is started that much earlier, but never more than half of `flush_seconds`, so
        slow turns (many sinks, a compaction) make batches larger, not commits back to back."""
        if not self.writer.dirty:
            return self.flush_seconds
        return self.flush_seconds - min(self._commit_s, self.flush_seconds / 2) - self.writer.age_s

    def _open_tables(self) -> LakeTables:
        writer = f"{self.group}@{socket.gethostname()}:{os.getpid()}"
        try:
            return LakeTables(self.settings, writer)
        except Exception as exc:
            raise LakeUnavailable(f"the lake at {self.settings.lake_root} cannot be opened for writing: {exc}") from exc

    def _key(self, consumer: Consumer, topic: str, partition: int) -> OffsetKey:
        if topic not in self._log_ids:
            self._log_ids[topic] = consumer.log_id(topic)
        return self._log_ids[topic], topic, partition

    def _take(self, consumer: Consumer, record: Delivery | Skipped) -> None:
        key = self._key(consumer, record.topic, record.partition)
        if self.writer.position(key) != record.offset:  # a topic deleted and recreated is a new log
            self._log_ids.pop(record.topic, None)
            key = self._key(consumer, record.topic, record.partition)
        if key in self._seeking:
            if key in self._seeked_in_batch or record.offset < self._seeking[key]:
                return  # read before our seek took effect: the next poll starts at the seek
            del self._seeking[key]
        if self.writer.position(key) != record.offset and not self._restart(consumer, key, record.offset):
            return
        if isinstance(record, Skipped):
            self.stats.dead_letters += 1
            self.writer.skip(key, record.offset)
            return
        try:
            self.writer.add(key, record)
        except Exception as exc:  # decoded but not projectable: still only poison
            consumer.dead_letter(record.message, "unprojectable", f"{type(exc).__name__}: {exc}")
            self.stats.dead_letters += 1
            self.writer.skip(key, record.offset)

    def _restart(self, consumer: Consumer, key: OffsetKey, offset: int,
                 lake_offsets: dict[OffsetKey, int] | None = None) -> bool:
        """(Re)start `key` where the lake says it continues (`lake_offsets`: the lake's offsets,
        read once for many keys); True if `offset` is that place."""
        log_id, topic, partition = key
        lake_next = (self.writer.tables.offsets(log_id, topic).get(partition) if lake_offsets is None
                     else lake_offsets.get(key))
        start = consumer.log_start(topic, partition)
        if lake_next is not None and lake_next < start:
            log.error("%s/%d: the lake has offsets up to %d but the log starts at %d: those messages were "
                      "removed by retention before they reached the lake", topic, partition, lake_next, start)
        start = max(start, lake_next or 0)
        log.info("%s/%d: the lake continues at offset %d", topic, partition, start)
        self.writer.track(key, lake_next, start)
        if offset == start:
            return True
        consumer.seek(topic, partition, start)
        self._seeking[key] = start
        self._seeked_in_batch.add(key)
        return False

    def _drop_revoked(self, consumer: Consumer) -> None:
        assigned = consumer.assignment()
        for key in self.writer.keys():
            if (key[1], key[2]) not in assigned:
                self.writer.drop(key)  # another sink owns it now; its rows are its to write
                self._seeking.pop(key, None)

    def _adopt_assigned(self, consumer: Consumer, records: list[Delivery | Skipped]) -> None:
        """Start each newly assigned partition where the lake says, at once: the group's offsets
        on the bus may lie anywhere (a new lake), and waiting for traffic could wait for ever."""
        assigned = consumer.assignment()
        self._adopted &= assigned  # one revoked and assigned again is started anew
        # Once per partition and assignment: an empty partition stays out of the writer's keys, and
        # seeking it again on every poll reset its fetch each time (a sink hung in poll under load).
        new = assigned - self._adopted - {(t, p) for _, t, p in self.writer.keys()}
        if not new:
            return
        self._adopted |= new
        lake_offsets = self.writer.tables.all_offsets()
        first: dict[tuple[str, int], int] = {}
        for record in records:  # a batch that starts where the lake continues needs no seek
            first.setdefault((record.topic, record.partition), record.offset)
        for topic, partition in sorted(new):
            self._restart(consumer, self._key(consumer, topic, partition), first.get((topic, partition), -1),
                          lake_offsets)

    def _commit(self, consumer: Consumer, stop: threading.Event, attempts: int | None = None) -> bool:
        """Commit what is buffered. While the lake is down, retry with backoff; give up (False)
        when `stop` is set or after `attempts` tries. Without `attempts`, LakeUnavailable after the
        lake_commit_attempts setting's tries, and at once when S3 refuses our credentials."""
        from infra.object_store import access_denied

        if not self.writer.dirty:
            return True
        delay, tried = 0.5, 0
        limit = attempts or self.settings.lake_commit_attempts
        while True:
            try:
                started = time.monotonic()
                consumer.flush_dead_letters()  # durable before the commit that moves past them
                fenced = self.writer.commit()
                # a commit's time, smoothed: one slow commit (a rebalance, a compaction) moves it a third
                self._commit_s += (time.monotonic() - started - self._commit_s) / 3
                break
            except Exception as exc:  # the lake (MinIO, disk, catalog) or the bus failed
                denied = access_denied(exc, self.settings)
                if denied is not None:
                    raise denied from exc
                tried += 1
                self.stats.retries += 1
                reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
                log.warning("committing to the lake at %s failed (%s); retry in %.1fs",
                            self.writer.tables.root, reason, delay)
                if tried >= limit and attempts is None:
                    raise LakeUnavailable(f"committing to the lake at {self.writer.tables.root} failed {tried} times "
                                          f"(the last: {reason}); {self._kept()}") from exc
                if tried >= limit or stop.wait(delay):
                    return False
                delay = min(delay * 2, self.retry_max_s)
        assigned = consumer.assignment()
        for key in fenced:
            if (key[1], key[2]) in assigned:  # still ours: continue from where the other writer left it
                self._restart(consumer, key, -1)
        mirror = {(t, p): self.writer.position((lg, t, p)) for lg, t, p in self.writer.keys()}
        try:
            consumer.commit(mirror)
        except BusError as exc:  # only a mirror: the lake holds the offsets that count
            log.warning("mirroring offsets to the bus failed: %s", exc)
        return True

    def _kept(self) -> str:
        if self.settings.bus == "memory":
            return ("what this process sent was not written (the in-process log ends with it): "
                    "make the lake writable and run the command again")
        return "nothing is lost: the log keeps the messages, and a sink started again continues from the lake"


def run_until_signalled(sink: LakeSink) -> SinkStats:
    """Run a sink in the foreground; SIGTERM or Ctrl-C commits and exits."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return sink.run(stop)
