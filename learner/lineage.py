"""Lineage of derived data: a `relabel.completed` event on the lineage topic, landing in the lake's
`events` table like every event (on the in-process bus the sink runs here, before we return)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def relabel_event(stats, functions, where: str, dataset: str) -> dict:
    from producers.episode_writer import utc_now
    from robolake import __version__

    return {
        "relabel_id": stats.relabel_id, "dataset": dataset, "predicate": where,
        "functions": [{"name": f.name, "version": f.version, "source_hash": f.source_hash,
                       "rows": stats.rows_by_function.get(f.key, 0)} for f in functions],
        "sources": [{"log": lg, "topic": t, "partition": p, "first_offset": first, "last_offset": last}
                    for (lg, t, p), (first, last) in sorted(stats.sources.items())],
        "lake_snapshot": stats.snapshot, "episodes": stats.episodes, "steps": stats.steps, "rows": stats.rows,
        "robolake_version": __version__, "time": utc_now(),
    }


def publish_relabel(settings, stats, functions, where: str, dataset: str) -> None:
    from infra.bus import open_bus
    from schemas import topics
    from schemas.codec import build
    from schemas.events import RELABEL_COMPLETED

    bus = open_bus(settings)
    bus.ensure_topics([topics.LINEAGE])  # stacks started before the topic existed lack it
    producer = bus.producer()
    try:
        producer.send(topics.LINEAGE, stats.relabel_id, build(RELABEL_COMPLETED, [relabel_event(stats, functions,
                                                                                               where, dataset)]))
        producer.flush()
    finally:
        producer.close()
    if settings.bus == "memory":  # embedded default: the in-process log lands in the lake before we exit
        from consumers.lake_sink import LakeSink

        LakeSink(settings, bus=bus, source_topics=[topics.LINEAGE], flush_seconds=1.0).run(until_idle_s=0.2)
