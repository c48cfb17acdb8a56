"""`robolake status`'s view of a running system: the sink's lag per partition, live workers, learners."""

from __future__ import annotations

from datetime import timedelta

from consumers.lake_sink.sink import LakeSink
from infra.bus.memory import MemoryBroker, MemoryBus
from infra.lake_sql import open_lake
from infra.settings import Settings
from producers.episode_writer import utc_now
from producers.synthetic import SyntheticConfig, produce
from robolake.report import health
from schemas import topics
from schemas.codec import build
from schemas.events import LEARNER_METRICS


def _metrics(producer, run_id: str, steps: range) -> None:
    producer.send(topics.LEARNER, "exp", build(LEARNER_METRICS, [
        {"experiment_id": "exp", "run_id": run_id, "step": s, "name": "loss", "value": 1.0, "skill_id": None,
         "time": utc_now()} for s in steps]))


def test_lag_workers_and_learners_as_the_lake_and_the_log_have_them(tmp_path):
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake", bus="memory")
    bus = MemoryBus(MemoryBroker(partitions=2))
    producer = bus.producer()
    produce(producer, SyntheticConfig(episodes=3, steps=10, chunk_steps=5, worker_id="w-old"))
    _metrics(producer, "run-a", range(0, 300, 100))
    producer.flush()
    LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    produce(producer, SyntheticConfig(episodes=2, steps=10, chunk_steps=5, worker_id="w-new", seed=1))
    producer.flush()  # on the log, not yet in the lake: 2 episodes x (start, 2 chunks, end)

    con = open_lake(settings)
    try:
        lag = health.sink_lag(bus, con, [topics.EPISODES, topics.LEARNER])
        assert sum(r["lag"] for r in lag if r["topic"] == topics.EPISODES) == 2 * 4
        assert sum(r["lag"] for r in lag if r["topic"] == topics.LEARNER) == 0
        assert all(r["end"] - r["lake"] == r["lag"] for r in lag)

        seen = health.workers(con)
        assert [(w["worker"], w["episodes"], w["live"]) for w in seen] == [("w-old", 3, True)]  # w-new: not sunk yet
        later = health.workers(con, now=seen[0]["last"] + timedelta(seconds=health.LIVE_S + 1))
        assert not later[0]["live"]

        assert [(r["run"], r["step"]) for r in health.learners(con)] == [("run-a", 200)]
    finally:
        con.close()
    another = MemoryBus(MemoryBroker(partitions=2))  # a new log: the lake's offsets are another log's
    con = open_lake(settings)
    try:
        assert all(r["lag"] == 0 and r["lake"] == 0 for r in health.sink_lag(another, con, [topics.EPISODES]))
    finally:
        con.close()
