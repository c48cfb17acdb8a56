"""A lake of Panda-scene episodes for the relabel and loader benchmarks, written fast: observations
and actions are real expert rollouts (resampled with a little noise), streamed through the
episode writer and the lake sink like any episode."""

from __future__ import annotations

import numpy as np


def _bank(seeds: int = 6) -> tuple[np.ndarray, np.ndarray]:
    from producers.sim.env import BlockStackingEnv
    from producers.sim.skills import expert_actions, get_skill

    env, obs, actions = BlockStackingEnv(), [], []
    for seed in range(seeds):
        env.reset(seed=seed)
        for skill in ("place_red_on_blue", "place_green_on_red"):
            for action in expert_actions(env, get_skill(skill), np.random.default_rng(seed)):
                obs.append(env.step(action)[0])
                actions.append(action)
    env.close()
    return np.stack(obs), np.stack(actions)


def fill(settings, episodes: int, steps: int, progress=None) -> int:
    """Write `episodes` complete episodes of `steps` steps; returns the steps written."""
    from consumers.lake_sink.sink import LakeSink
    from infra.bus.backend import open_bus
    from producers.episode_writer import EpisodeWriter
    from producers.sim.env import ENV_VERSION

    obs_bank, action_bank = _bank()
    rng = np.random.default_rng(0)
    bus = open_bus(settings)
    producer = bus.producer()
    writer = EpisodeWriter(producer, chunk_steps=50)
    sink = LakeSink(settings, bus=bus, flush_seconds=30.0, group="bench-fill")
    for e in range(episodes):
        writer.start(experiment_id="bench", worker_id="bench", env_name="panda_block_stacking", env_version=ENV_VERSION,
                     seed=e, initial_state=[0.0], task="bench", skill_sequence=["place_red_on_blue"],
                     policy_id="bench", policy_version="1")
        start = int(rng.integers(len(obs_bank) - steps)) if len(obs_bank) > steps else 0
        for t in range(steps):
            i = (start + t) % len(obs_bank)
            o = obs_bank[i] + rng.normal(0, 0.002, obs_bank.shape[1]).astype(np.float32)
            writer.step(step=t, sim_time=t * 0.1, observation=o.tolist(), action=action_bank[i].tolist(),
                        reward=0.0, task_reward=0.0, skill_id="place_red_on_blue",
                        skill_caption="put the red block on the blue block", terminated=False, truncated=False)
        writer.end("timeout", task_success=False, skill_success={})
        if settings.bus == "memory" and (e + 1) % 200 == 0:  # keep the in-process log drained
            sink.run(until_idle_s=0.1)
        if progress is not None:
            progress(1)
    producer.flush()
    sink.run(until_idle_s=0.5)
    return episodes * steps
