"""Kafka topics: created explicitly and idempotently (the broker never auto-creates one)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def admin_client(bootstrap: list[str], timeout_ms: int = 10000):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms,
                            bootstrap_timeout_ms=timeout_ms, client_id="robolake-admin")


def ensure_topics(bootstrap: list[str], names: list[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Safe to repeat."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = admin_client(bootstrap)
    try:
        missing = [n for n in names if n not in set(client.list_topics())]
        created = []
        for name in missing:
            try:
                client.create_topics([NewTopic(name, partitions, replication_factor=1)])
                created.append(name)
            except TopicAlreadyExistsError:  # another process won the race: same outcome
                pass
        if created:
            log.info("created topics %s with %d partitions", ", ".join(created), partitions)
        return created
    finally:
        client.close()
