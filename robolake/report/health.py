"""What `robolake status` says of the running system, read from the log and the lake: how far the
lake sink is behind on each partition, which rollout workers are live, where each learner is."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

LIVE_S = 120  # a worker that started an episode this recently is live (an episode takes seconds)


def sink_lag(bus, con, topic_names: list[str]) -> list[dict]:
    """Per partition of the topics: the log's end offset, where the lake continues, and the messages
    between (the lake's offsets are those of the log's current incarnation; none yet: from its start)."""
    ends = bus.log_end_offsets(topic_names)
    starts = bus.log_start_offsets(topic_names)
    reader = bus.consumer(None, sorted({topic for topic, _ in ends}))
    try:
        logs = {topic: reader.log_id(topic) for topic, _ in ends}
    finally:
        reader.close()
    stored = {(log, topic, partition): offset for log, topic, partition, offset in con.execute(
        "SELECT _log, _topic, _partition, next_offset FROM lake_offsets").fetchall()}
    rows = []
    for (topic, partition), end in sorted(ends.items()):
        lake = stored.get((logs[topic], topic, partition), starts.get((topic, partition), 0))
        rows.append({"topic": topic, "partition": partition, "end": end, "lake": lake, "lag": max(0, end - lake)})
    return rows


def workers(con, now: datetime | None = None) -> list[dict]:
    """Every rollout worker the lake has seen, the most recent first: its episodes, its last start,
    and whether that was within LIVE_S seconds of `now`."""
    now = now or datetime.now(timezone.utc)
    rows = con.execute("SELECT worker_id, count(*), max(time) FROM episode_starts GROUP BY ALL "
                       "ORDER BY 3 DESC, 1").fetchall()
    return [{"worker": worker, "episodes": episodes, "last": last, "live": now - last <= timedelta(seconds=LIVE_S)}
            for worker, episodes, last in rows]


def learners(con) -> list[dict]:
    """Each learner run: its latest step and when its latest metrics were sent (its heartbeat: a
    training run sends metrics every few steps)."""
    rows = con.execute("""
        SELECT r.run_id, any_value(experiment_id), max(r.step), max(_timestamp) FROM (
            SELECT unnest(from_json(payload_json, '[{"run_id": "VARCHAR", "step": "BIGINT"}]')) AS r,
                   experiment_id, _timestamp
            FROM events WHERE type = 'learner.metrics')
        GROUP BY ALL ORDER BY 4 DESC""").fetchall()
    return [{"run": run, "experiment": experiment, "step": step, "last": last} for run, experiment, step, last in rows]
