"""Random but valid episodes, so the pipeline (bus, sink, SQL, learner) can be built and
benchmarked before, and independently of, the simulator. Seeded: same seed, same content
(episode ids are always new, so producing twice never collides)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from infra.bus.interface import Producer
from producers.episode_writer import EpisodeWriter
from schemas import topics

SKILLS = [("reach_red", "reach the red block"), ("grasp_red", "grasp the red block"),
          ("lift_red", "lift the red block"), ("place_red_on_blue", "put the red block on the blue block")]
OBS_DIM, ACTION_DIM = 39, 4


@dataclass(frozen=True)
class SyntheticConfig:
    episodes: int = 10
    steps: int = 100            # steps per episode
    chunk_steps: int = 50
    experiment_id: str = "synthetic"
    worker_id: str = "synthetic-0"
    seed: int = 0


def produce(producer: Producer, config: SyntheticConfig, topic: str = topics.EPISODES,
            progress=None) -> list[str]:
    """Stream `config.episodes` episodes; returns their ids. `progress` is called per episode."""
    rng = np.random.default_rng(config.seed)
    writer = EpisodeWriter(producer, topic, chunk_steps=config.chunk_steps)
    ids = []
    for index in range(config.episodes):
        seed = int(rng.integers(2**31))
        skills = SKILLS[: 1 + index % len(SKILLS)]
        episode_id = writer.start(
            str(uuid.uuid4()),  # unique on every run; the content is what the seed reproduces
            experiment_id=config.experiment_id, worker_id=config.worker_id,
            env_name="synthetic", env_version=1, seed=seed,
            initial_state=rng.normal(size=OBS_DIM).astype(np.float32).tolist(),
            task=skills[-1][1], skill_sequence=[s for s, _ in skills],
            policy_id="random", policy_version="1",
        )
        per_skill = max(1, config.steps // len(skills))
        for step in range(config.steps):
            skill_id, caption = skills[min(step // per_skill, len(skills) - 1)]
            reward = float(rng.random() < 0.1)
            writer.step(
                step=step, sim_time=step * 0.1,
                observation=rng.normal(size=OBS_DIM).astype(np.float32).tolist(),
                action=rng.uniform(-1, 1, size=ACTION_DIM).astype(np.float32).tolist(),
                reward=reward, task_reward=reward if skill_id == skills[-1][0] else 0.0,
                skill_id=skill_id, skill_caption=caption,
                terminated=False, truncated=step == config.steps - 1,
            )
        success = bool(rng.random() < 0.5)
        writer.end("success" if success else "timeout", task_success=success,
                   skill_success={s: success or bool(rng.random() < 0.5) for s, _ in skills})
        ids.append(episode_id)
        if progress is not None:
            progress(1)
    producer.flush()
    return ids
