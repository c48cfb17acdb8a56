"""The Kafka bus (kafka-python): idempotent producer with acks=all, consumers with manual commits."""

from __future__ import annotations

import logging

from infra.bus.interface import Bus, BusError, Consumer, Message, Producer
from schemas.codec import Headers

log = logging.getLogger(__name__)

# Long enough to ride out a broker restart: the idempotent producer resends without duplicates.
DELIVERY_TIMEOUT_MS = 180_000


def _connect(factory, bootstrap: list[str], what: str):
    """Build a kafka-python client; it retries the bootstrap with exponential backoff
    (reconnect_backoff_ms .. reconnect_backoff_max_ms) for bootstrap_timeout_ms. When every
    bootstrap server refuses the connection (nothing listens there), fail at once instead."""
    from kafka.errors import KafkaError

    if _all_refuse(bootstrap):
        raise BusError(f"cannot reach Kafka at {','.join(bootstrap)} for the {what}: connection refused "
                       "(nothing listens there; `robolake infra up` starts a broker)")
    try:
        return factory()
    except (KafkaError, OSError) as exc:
        raise BusError(f"cannot reach Kafka at {','.join(bootstrap)} for the {what}: {exc!r}") from exc


def _all_refuse(bootstrap: list[str]) -> bool:
    """True only if every server actively refused a TCP connection; any other outcome (it
    answered, a timeout, a name that does not resolve yet) is left to the client's own wait."""
    import socket

    for server in bootstrap:
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2.0).close()
            return False
        except ConnectionRefusedError:
            continue
        except (OSError, ValueError):
            return False
    return True


class KafkaBusProducer(Producer):
    def __init__(self, bootstrap: list[str], max_message_bytes: int, compression: str, connect_timeout_s: float):
        super().__init__(max_message_bytes)
        from kafka import KafkaProducer

        self.bootstrap = bootstrap
        self._pending = []
        self._producer = _connect(lambda: KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
            compression_type=None if compression == "none" else compression,
            linger_ms=5, batch_size=1 << 20, max_request_size=4 * max_message_bytes,
            retry_backoff_ms=200, reconnect_backoff_ms=200, reconnect_backoff_max_ms=5000,
            request_timeout_ms=30_000, delivery_timeout_ms=DELIVERY_TIMEOUT_MS, max_block_ms=60_000,
            bootstrap_timeout_ms=int(connect_timeout_s * 1000), client_id="robolake-producer",
        ), bootstrap, "producer")

    def send_raw(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        from kafka.errors import KafkaError

        try:
            self._pending.append(self._producer.send(topic, key=key, value=value, headers=list(headers)))
        except KafkaError as exc:
            raise BusError(f"cannot send to {topic} at {','.join(self.bootstrap)}: {exc!r}") from exc

    def flush(self, timeout_s: float | None = None) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise BusError(f"flush to {','.join(self.bootstrap)} failed: {exc!r}") from exc
        pending, self._pending = self._pending, []
        failed = [f.exception for f in pending if f.failed()]
        if failed:
            raise BusError(f"{len(failed)} of {len(pending)} messages were not delivered to "
                           f"{','.join(self.bootstrap)}: {failed[0]!r}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


class KafkaBusConsumer(Consumer):
    def __init__(self, bus: "KafkaBus", group: str | None, topic_names: list[str], **kwargs):
        super().__init__(bus, group, topic_names, **kwargs)
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

        self._from_beginning = self._paused = False
        consumer = self

        class _OnAssign(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass

            def on_partitions_assigned(self, assigned):
                if consumer._from_beginning and assigned:
                    consumer._kafka.seek_to_beginning(*assigned)
                if consumer._paused and assigned:  # a rebalance assigns partitions unpaused
                    consumer._kafka.pause(*assigned)

        self._kafka = _connect(lambda: KafkaConsumer(
            bootstrap_servers=bus.bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id=f"robolake-{group or 'reader'}",
            # Large fetches: the sink reads whole partitions in few round trips (benchmarks/lake_ingest.py).
            fetch_max_bytes=128 * bus.max_message_bytes, max_partition_fetch_bytes=32 * bus.max_message_bytes,
            # A consumer that died (kill -9) holds its partitions until this runs out.
            session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
            # A member that does not poll for this long is out of the group (its partitions move).
            max_poll_interval_ms=int(bus.max_poll_interval_s * 1000),
            reconnect_backoff_ms=200, reconnect_backoff_max_ms=5000,
            bootstrap_timeout_ms=int(bus.connect_timeout_s * 1000),
        ), bus.bootstrap, "consumer")
        if group is None:  # no group coordinator: read every partition ourselves
            partitions = []
            for name in self.topics:
                ids = self._kafka.partitions_for_topic(name)
                if not ids:
                    raise BusError(f"topic {name!r} does not exist on {','.join(bus.bootstrap)}")
                partitions += [TopicPartition(name, p) for p in sorted(ids)]
            self._kafka.assign(partitions)
        else:
            self._kafka.subscribe(self.topics, listener=_OnAssign())

    def poll_raw(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        records = self._kafka.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [Message(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers or []), r.timestamp)
                for batch in records.values() for r in batch]

    def pause(self) -> None:
        self._paused = True
        self._kafka.pause(*self._kafka.assignment())

    def resume(self) -> None:
        self._paused = False
        self._kafka.resume(*self._kafka.paused())

    def lag(self) -> int | None:
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        assigned = set(self._kafka.assignment())
        if not assigned:
            return None
        every = [TopicPartition(t, p) for t in self.topics for p in sorted(self._kafka.partitions_for_topic(t) or ())]
        wait = 5000  # never block the caller's loop on a rebalancing group: unknown is "not caught up"
        try:
            ends = self._kafka.end_offsets(every, timeout_ms=wait)
            starts = self._kafka.beginning_offsets(every, timeout_ms=wait)
            done = {tp: self._kafka.position(tp, timeout_ms=wait) if tp in assigned
                    else (self._kafka.committed(tp, timeout_ms=wait) or starts[tp]) for tp in every}
        except KafkaError:
            return None
        if any(offset is None for offset in done.values()):
            return None
        return sum(max(0, ends[tp] - done[tp]) for tp in every)

    def _commit(self, offsets: dict[tuple[str, int], int] | None) -> None:
        from kafka import OffsetAndMetadata, TopicPartition
        from kafka.errors import KafkaError

        try:
            if offsets is None:
                self._kafka.commit()
            elif offsets:
                self._kafka.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                    for (t, p), o in offsets.items()})
        except KafkaError as exc:
            raise BusError(f"commit of group {self.group} failed: {exc!r}") from exc

    def seek(self, topic: str, partition: int, offset: int) -> None:
        from kafka import TopicPartition

        self._kafka.seek(TopicPartition(topic, partition), offset)

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._kafka.assignment()}

    def log_start(self, topic: str, partition: int) -> int:
        from kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        return self._kafka.beginning_offsets([tp])[tp]

    def log_id(self, topic: str) -> str:
        cluster = self._kafka._client.cluster  # topic ids arrive with metadata (Kafka >= 2.8)
        topic_id = cluster.topic_id(topic)
        if topic_id is None:
            self._kafka.partitions_for_topic(topic)  # refreshes metadata
            topic_id = cluster.topic_id(topic)
        if topic_id is None:
            raise BusError(f"Kafka at {','.join(self.bus.bootstrap)} reports no topic id for {topic!r}")
        return f"kafka-{topic_id}"

    def committed(self) -> dict[tuple[str, int], int]:
        from kafka import TopicPartition

        out = {}
        for name in self.topics:
            for p in sorted(self._kafka.partitions_for_topic(name) or ()):
                offset = self._kafka.committed(TopicPartition(name, p))
                if offset is not None:
                    out[(name, p)] = offset
        return out

    def seek_to_beginning(self) -> None:
        self._from_beginning = True
        assigned = self._kafka.assignment()
        if assigned:
            self._kafka.seek_to_beginning(*assigned)

    def close(self) -> None:
        super().close()
        self._kafka.close(autocommit=False)


class KafkaBus(Bus):
    def __init__(self, bootstrap: list[str], max_message_bytes: int, partitions: int,
                 compression: str = "lz4", connect_timeout_s: float = 30.0, max_poll_interval_s: float = 300.0):
        super().__init__(max_message_bytes, partitions)
        self.bootstrap, self.compression, self.connect_timeout_s = bootstrap, compression, connect_timeout_s
        self.max_poll_interval_s = max_poll_interval_s

    def ensure_topics(self, names: list[str]) -> None:
        from infra.topics import ensure_topics

        ensure_topics(self.bootstrap, names, self.partitions)

    def producer(self) -> KafkaBusProducer:
        return KafkaBusProducer(self.bootstrap, self.max_message_bytes, self.compression, self.connect_timeout_s)

    def log_start_offsets(self, topic_names: list[str]) -> dict[tuple[str, int], int]:
        return self._offsets(topic_names, "beginning_offsets")

    def log_end_offsets(self, topic_names: list[str]) -> dict[tuple[str, int], int]:
        return self._offsets(topic_names, "end_offsets")

    def _offsets(self, topic_names: list[str], which: str) -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer, TopicPartition

        client = _connect(lambda: KafkaConsumer(bootstrap_servers=self.bootstrap,
                                                bootstrap_timeout_ms=int(self.connect_timeout_s * 1000)),
                          self.bootstrap, "offset lookup")
        try:
            partitions = [TopicPartition(t, p) for t in topic_names for p in sorted(client.partitions_for_topic(t) or ())]
            found = getattr(client, which)(partitions) if partitions else {}
        finally:
            client.close()
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    def consumer(self, group: str | None, topic_names: list[str], **kwargs) -> KafkaBusConsumer:
        return KafkaBusConsumer(self, group, topic_names, **kwargs)
