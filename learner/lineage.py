"""Lineage of derived data: a `relabel.completed` event on the lineage topic, landing in the lake's
`events` table like every event (on the in-process bus, `land` writes it there before we return).

Version 2 of the event adds `complete` (false: the run failed after the commits it counts), `error`
and `adopted`: rows of earlier runs of the dataset that no event covers (a run killed before it could
publish), found through the `relabel_id` every rewards row carries (`uncovered`)."""

from __future__ import annotations

import json
import logging

from infra.bus.interface import Land

log = logging.getLogger(__name__)


def uncovered(con, dataset: str, settings=None) -> list[dict]:
    """Rows of `dataset` written by relabel runs that no relabel.completed event names (as its run or
    as adopted): [{relabel_id, name, version, rows}]. Events are looked for in the lake, and, when
    some are missing there and `settings` name a bus whose events reach the lake later (Kafka), on
    the lineage topic itself; if that cannot be read, nothing is adopted (a warning). Rows from
    before the column: not counted (their runs' events cannot name them)."""
    counts = con.execute("SELECT relabel_id, reward_fn, reward_version, count(*) FROM rewards "
                         "WHERE dataset = ? AND relabel_id IS NOT NULL GROUP BY ALL ORDER BY ALL", [dataset]).fetchall()
    if not counts:
        return []
    covered: set[str] = set()
    for (payload,) in con.execute("SELECT payload_json FROM events WHERE type = 'relabel.completed'").fetchall():
        _cover(covered, json.loads(payload))
    if settings is not None and any(run not in covered for run, *_ in counts):
        on_bus = _covered_on_bus(settings)
        if on_bus is None:
            log.warning("the lineage topic could not be read: rows of interrupted relabels are not adopted now")
            return []
        covered |= on_bus
    return [{"relabel_id": run, "name": name, "version": version, "rows": rows}
            for run, name, version, rows in counts if run not in covered]


def _cover(covered: set[str], rows: list[dict]) -> None:
    for row in rows:
        covered.add(row["relabel_id"])
        covered.update(a["relabel_id"] for a in row.get("adopted") or [])


def _covered_on_bus(settings, timeout_s: float = 30.0) -> set[str] | None:
    """Relabel ids the events on the lineage topic name (None if it cannot be read to its end). The
    in-process bus: none (each process's log starts empty, and a publish lands in the lake at once)."""
    import time

    if settings.bus == "memory":
        return set()
    from infra.bus.backend import open_bus
    from schemas import topics

    try:
        bus = open_bus(settings)
        bus.ensure_topics([topics.LINEAGE])
        reader = bus.consumer(None, [topics.LINEAGE])
        try:
            covered: set[str] = set()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                got = reader.poll(1.0)
                for delivery in got:
                    if delivery.batch.type == "relabel.completed":
                        _cover(covered, delivery.batch.rows())
                if not got and reader.lag() == 0:
                    return covered
            return None
        finally:
            reader.close()
    except Exception:
        log.exception("reading the lineage topic")
        return None


def relabel_event(stats, functions, where: str, dataset: str, complete: bool = True, error: str | None = None) -> dict:
    from producers.episode_writer import utc_now
    from schemas.version import VERSION

    return {
        "relabel_id": stats.relabel_id, "dataset": dataset, "predicate": where,
        "functions": [{"name": f.name, "version": f.version, "source_hash": f.source_hash,
                       "rows": stats.rows_by_function.get(f.key, 0)} for f in functions],
        "sources": [{"log": lg, "topic": t, "partition": p, "first_offset": first, "last_offset": last}
                    for (lg, t, p), (first, last) in sorted(stats.sources.items())],
        "lake_snapshot": stats.snapshot, "episodes": stats.episodes, "steps": stats.steps, "rows": stats.rows,
        "robolake_version": VERSION, "time": utc_now(),
        "complete": complete, "error": error, "adopted": list(stats.adopted),
    }


def publish_relabel(settings, stats, functions, where: str, dataset: str, land: Land | None, complete: bool = True,
                    error: str | None = None) -> None:
    """The relabel.completed event on the lineage topic; on the in-process bus, `land` writes it into
    the lake (consumers.lake_sink.sink.land; relabel checks it is given)."""
    from infra.bus.backend import open_bus
    from schemas import topics
    from schemas.codec import build
    from schemas.events import RELABEL_COMPLETED_V2

    bus = open_bus(settings)
    bus.ensure_topics([topics.LINEAGE])  # stacks started before the topic existed lack it
    producer = bus.producer()
    try:
        producer.send(topics.LINEAGE, stats.relabel_id, build(RELABEL_COMPLETED_V2, [relabel_event(
            stats, functions, where, dataset, complete, error)]))
        producer.flush()
    finally:
        producer.close()
    if settings.bus == "memory":  # embedded default: the in-process log lands in the lake before we exit
        land(settings, bus, [topics.LINEAGE])
