"""Rollout: run skill sequences in the simulator and stream every episode as events.

The active skill switches at the first step on which its success function fires
(`switch="success"`), or after a fixed number of steps (`switch="fixed"`, as in the published
system); each skill gets at most `steps_per_skill` steps. The policy has no say: collected data,
learned rollouts and evaluation all run here under this one rule, so the next skill's
demonstrations start in the states a learned policy hands over (the scripted expert is written to
stop anywhere its skill succeeds: its reach first rises clear of a stack it has just built).
Rewards on every step: `reward` is the active skill's success (0/1), `task_reward` the task's.
`episode.ended` is written last; a worker that dies mid-episode leaves that episode without it
(the lake keeps it apart, in `partial_episodes`).

Frames are `frame_size` px square PNGs on steps 0, k, 2k, ... (`frame_every=k`) of every episode
(`frames=True`) or only of the episodes of `frame_seeds` (an evaluation's videos: see
producers/decisions.py); the other steps carry no frame. A worker keeps one environment, and so one
renderer, for all its episodes.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass

import numpy as np

from infra.bus.interface import Producer
from producers.episode_writer import EpisodeWriter
from producers.policy import Policy, ScriptedExpert
from schemas import topics

log = logging.getLogger(__name__)
FRAME_SIZES = range(128, 257)  # px: a video large enough to see the gripper, small enough to render fast
VIDEO_FRAME_EVERY = 2          # an evaluation's videos: 5 frames a second of the 10 Hz control, played in real time


@dataclass(frozen=True)
class RolloutConfig:
    skills: tuple[str, ...]              # the skill sequence, executed in order
    task_skill: str                      # whose success function defines task success
    switch: str = "success"              # "success" | "fixed"
    steps_per_skill: int = 60
    noise: float = 0.0
    frames: bool = False                 # PNG camera frames in every episode ...
    frame_every: int = 1                 # ... on every k-th step (0, k, 2k, ...)
    frame_size: int = 128                # ... frame_size px square
    frame_seeds: frozenset[int] = frozenset()  # episodes (by seed) with frames even when `frames` is off
    eval_videos: int = 2                 # an evaluation decision's first N episodes have frames (its videos)
    experiment_id: str = "default"
    worker_id: str = "worker-0"
    decision_id: str | None = None
    chunk_steps: int = 50

    def __post_init__(self):
        from producers.sim.skills import get_skill

        for skill in (*self.skills, self.task_skill):
            get_skill(skill)  # an unknown skill is an error listing the known ones
        if self.switch not in ("success", "fixed"):
            raise ValueError(f"switch must be 'success' or 'fixed', got {self.switch!r}")
        if self.frame_every < 1:
            raise ValueError(f"frame_every must be >= 1, got {self.frame_every}")
        if self.frame_size not in FRAME_SIZES:
            raise ValueError(f"frame_size must be {FRAME_SIZES.start} to {FRAME_SIZES[-1]} px, got {self.frame_size}")
        if self.eval_videos < 0:
            raise ValueError(f"eval_videos must be >= 0, got {self.eval_videos}")


def task_for(skill_id: str) -> tuple[str, ...]:
    """The natural skill sequence for a task named by its final skill."""
    from producers.sim.skills import get_skill

    skill = get_skill(skill_id)
    if skill_id.startswith("place_"):
        top = skill.target[0]
        return (f"reach_{top}", f"grasp_{top}", f"lift_{top}", skill_id)
    if skill_id == "build_tower":
        return task_for("place_green_on_blue") + task_for("place_red_on_green")
    if skill_id.startswith("lift_"):
        c = skill.target[0]
        return (f"reach_{c}", f"grasp_{c}", skill_id)
    if skill_id.startswith("grasp_"):
        return (f"reach_{skill.target[0]}", skill_id)
    return (skill_id,)


class Stopped(Exception):
    """The rollout was asked to stop (Ctrl-C): the running episode is abandoned without its end."""


def run_episode(env, writer: EpisodeWriter, config: RolloutConfig, seed: int,
                policy: Policy | None = None, stop: threading.Event | None = None) -> dict:
    """One episode from `env.reset(seed)`; returns the episode.ended row. Raises Stopped, between
    two steps, once `stop` is set."""
    from producers.sim.env import ENV_NAME, ENV_VERSION
    from producers.sim.skills import get_skill

    policy = policy or ScriptedExpert(config.noise)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    task = get_skill(config.task_skill)
    writer.start(experiment_id=config.experiment_id, worker_id=config.worker_id, env_name=ENV_NAME,
                 env_version=ENV_VERSION, seed=seed, initial_state=env.state_vector().tolist(),
                 task=task.caption, skill_sequence=list(config.skills), decision_id=config.decision_id,
                 policy_id=policy.id, policy_version=policy.version, initial_observation=obs.tolist())
    step, succeeded, termination = 0, {s: False for s in config.skills}, None
    for skill_id in config.skills:
        skill = get_skill(skill_id)
        policy.start(env, skill, rng)
        for _ in range(config.steps_per_skill):
            if stop is not None and stop.is_set():
                raise Stopped
            action = policy.act(obs)
            obs, _, terminated, _, info = env.step(action)
            if terminated:
                termination = info.get("termination") or "terminated"
                log.warning("episode %s ended by %s at step %d", writer.episode_id, termination, step)
                break
            reward = skill.success(obs)
            succeeded[skill_id] |= reward
            framed = (config.frames or seed in config.frame_seeds) and step % config.frame_every == 0
            writer.step(step=step, sim_time=float(env.data.time), observation=obs.tolist(),
                        action=np.asarray(action, np.float32).tolist(), reward=float(reward),
                        task_reward=float(task.success(obs)), skill_id=skill_id, skill_caption=skill.caption,
                        terminated=False, truncated=False,
                        frame=encode_png(env.frame(size=config.frame_size)) if framed else None)
            step += 1
            if config.switch == "success" and reward:
                break  # the hand-over: whatever acts (one rule, so demonstrations cover a learned policy's states)
        if termination:
            break
    task_success = termination is None and task.success(obs)
    return writer.end(termination or ("success" if task_success else "timeout"),
                      task_success=task_success, skill_success=succeeded)


def encode_png(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes. Level 1 (zlib's fastest) encodes a frame ~4x faster than Pillow's default 6 for
    ~20% more bytes (benchmarks/README.md, at 64x64)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()


def run_episodes(producer: Producer, config: RolloutConfig, seeds: list[int], topic: str = topics.EPISODES,
                 progress=None, env=None, stop: threading.Event | None = None,
                 policy: Policy | None = None) -> list[dict]:
    """Run and stream one episode per seed in this process, in `env` if given (the caller keeps
    and closes it), else in an environment made and closed here, with `policy` (default: the
    scripted expert with the config's noise). Once `stop` is set, returns the episodes that
    finished (all flushed); the one running is abandoned."""
    from producers.sim.env import BlockStackingEnv

    own_env = env is None
    env = BlockStackingEnv() if own_env else env
    writer = EpisodeWriter(producer, topic, chunk_steps=config.chunk_steps)
    ended = []
    try:
        for seed in seeds:
            try:
                ended.append(run_episode(env, writer, config, seed, policy=policy, stop=stop))
            except Stopped:
                break
            producer.flush()
            if progress is not None:
                progress(1)
    finally:
        if own_env:
            env.close()
    return ended
