from infra.bus.memory import MemoryBroker, MemoryBus
from producers.episode_writer import EpisodeWriter
from producers.synthetic import SyntheticConfig, produce
from schemas import topics
from schemas.codec import steps_checksum
from tests.bus_contract import drain


def _episode_events(bus):
    reader = bus.consumer(None, [topics.EPISODES])
    events = [d.batch for d in drain(reader, 10**9, timeout_s=0.5)]
    reader.close()
    return events


def test_chunks_are_split_below_the_message_bound():
    bus = MemoryBus(MemoryBroker(partitions=2), max_message_bytes=8 * 1024)
    writer = EpisodeWriter(bus.producer(), chunk_steps=200)
    episode = writer.start(experiment_id="x", worker_id="w", env_name="e", env_version=1, seed=1,
                           initial_state=[0.0], task="t", skill_sequence=["s"], policy_id="p", policy_version="1")
    for i in range(200):
        writer.step(step=i, sim_time=i * 0.1, observation=[float(i)] * 20, action=[0.0] * 4, reward=1.0,
                    task_reward=0.5, skill_id="s", skill_caption="c", terminated=False, truncated=False)
    ended = writer.end("timeout", task_success=False, skill_success={"s": True})

    events = _episode_events(bus)
    chunks = [b.table for b in events if b.type == "episode.steps"]
    assert len(chunks) > 1, "200 steps of 20 floats cannot fit one 8 KiB message"
    assert [c.column("chunk")[0].as_py() for c in chunks] == list(range(len(chunks)))
    assert [s for c in chunks for s in c.column("step").to_pylist()] == list(range(200))
    assert ended["num_chunks"] == len(chunks) and ended["length"] == 200
    assert ended["checksum"] == steps_checksum(chunks)
    assert ended["task_return"] == 100.0
    assert ended["skills"] == [{"skill_id": "s", "return": 200.0, "success": True}]
    assert {b.rows()[0]["episode_id"] for b in events if b.type != "episode.steps"} == {episode}


def test_synthetic_content_is_reproducible_and_ids_are_unique():
    runs = []
    for _ in range(2):
        bus = MemoryBus(MemoryBroker())
        ids = produce(bus.producer(), SyntheticConfig(episodes=3, steps=10, seed=7))
        events = _episode_events(bus)
        assert len(events) == 3 * (1 + 1 + 1)
        steps = sorted((b.rows()[0]["seed"], b.rows()[0]["task"]) for b in events if b.type == "episode.started")
        runs.append((set(ids), steps))
    assert runs[0][1] == runs[1][1]
    assert not runs[0][0] & runs[1][0]
