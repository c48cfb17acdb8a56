"""Helpers shared by the lake tests (memory/local and Kafka/MinIO)."""

from __future__ import annotations

import hashlib

from infra.lake_sql import open_lake

CONTENT_VIEWS = ("episodes", "steps", "frames", "events", "partial_episodes", "partial_steps", "rewards")


def lake_fingerprint(settings) -> dict[str, tuple[int, str]]:
    """(row count, sha256 over the sorted rows) of every view: equal fingerprints, equal query results."""
    con = open_lake(settings)
    out = {}
    for view in CONTENT_VIEWS:
        columns = [c[0] for c in con.execute(f"DESCRIBE {view}").fetchall()]
        rows = con.execute(f"SELECT * FROM {view} ORDER BY ALL").fetchall()
        digest = hashlib.sha256(repr((columns, rows)).encode()).hexdigest()
        out[view] = (len(rows), digest)
    con.close()
    return out


def count(settings, sql: str):
    con = open_lake(settings)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def rows(settings, sql: str) -> list[tuple]:
    con = open_lake(settings)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


class Recorder:
    """A producer that only records what would be sent, to replay it in a chosen (broken) order."""

    def __init__(self):
        self.sent = []

    def send(self, topic, key, batch):
        self.sent.append((topic, key, batch))

    def flush(self, timeout_s=None):
        pass
