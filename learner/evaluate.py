"""A trained PAC policy behind the rollout workers' Policy interface, and `robolake eval`.

`LearnedPolicy` loads a run's checkpoint from the lake and acts greedily, conditioned on the
caption of the skill being executed (embedded by the same frozen encoder as in training).
Evaluation runs each skill's natural sequence (producers.rollout.task_for) with it, through the
same episode writer as every rollout: the episodes land in the lake tagged with the policy's id
and version, and success per skill comes with a Wilson 95% interval (schemas/stats.py).
"""

from __future__ import annotations

import numpy as np


class LearnedPolicy:
    def __init__(self, learner, run_id: str, step: int, captions=None):
        from learner.captions import CaptionEncoder

        self.learner, self.captions = learner, captions or CaptionEncoder()
        self.id, self.version = f"pac:{run_id}", f"step-{step}"
        self._caption: np.ndarray | None = None

    @classmethod
    def load(cls, settings, run_id: str, device: str = "cpu", step: int | None = None) -> "LearnedPolicy":
        """The run's latest checkpoint, or that of `step`."""
        from learner.checkpoints import CheckpointError, CheckpointStore
        from learner.pac.config import PACConfig
        from learner.pac.learning import PACLearner
        from learner.train import _check_compatible

        store = CheckpointStore(settings, run_id)
        state = store.load_latest() if step is None else store.load(step)
        if state is None:
            raise CheckpointError(f"no checkpoint of run {run_id} in {settings.lake_root}")
        config = PACConfig.from_dict(state["config"])
        _check_compatible(state["config"], config)  # a checkpoint from before a model change names what changed
        learner = PACLearner(config, device=device)
        learner.load_state_dict(state["learner"])
        return cls(learner, run_id, learner.steps)

    def start(self, env, skill, rng: np.random.Generator) -> None:
        self._caption = self.captions.encode([skill.caption])

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.learner.act(np.asarray(observation, np.float32)[None], self._caption)[0]


def load_for_decision(settings, run_id: str, step: int) -> LearnedPolicy:
    """The rollout workers' way to load a decision's policy (producers.decisions.LoadLearned): a
    missing or unusable checkpoint is a BadDecision."""
    from learner.checkpoints import CheckpointError
    from producers.decisions import BadDecision

    try:
        return LearnedPolicy.load(settings, run_id, step=step)
    except CheckpointError as exc:
        raise BadDecision(str(exc)) from None


def evaluate(producer, policy, skills: list[str], episodes: int, seed: int = 0, experiment_id: str = "eval",
             progress=None, indices=None, on_episode=None) -> dict[str, tuple[int, int]]:
    """(successes, episodes) per skill, each episode streamed through `producer`. Episode i of a
    skill starts from seed + i; `indices` runs only those i (a worker's share)."""
    from producers.episode_writer import EpisodeWriter
    from producers.rollout import RolloutConfig, run_episode, task_for
    from producers.sim.env import BlockStackingEnv

    indices = range(episodes) if indices is None else indices
    env = BlockStackingEnv()
    writer = EpisodeWriter(producer)
    results = {}
    try:
        for skill in skills:
            config = RolloutConfig(skills=task_for(skill), task_skill=skill, experiment_id=experiment_id,
                                   worker_id="eval")
            wins = 0
            for i in indices:
                success = bool(run_episode(env, writer, config, seed + i, policy=policy)["task_success"])
                wins += success
                producer.flush()
                if on_episode is not None:
                    on_episode(skill, success)
                if progress is not None:
                    progress(1)
            results[skill] = (wins, len(indices))
    finally:
        env.close()
    return results


def evaluate_in_workers(settings, run_id: str, skills: list[str], episodes: int, workers: int, seed: int = 0,
                        experiment_id: str = "eval", progress=None,
                        describe_failure=None) -> dict[str, tuple[int, int]]:
    """`evaluate` split over `workers` rollout workers (producers.workers: processes on Kafka,
    threads on the in-process bus), each with its own copy of the policy; same episodes, same seeds.
    `describe_failure`: how a worker process reports an expected failure (producers.workers.launch)."""
    from producers.workers import launch

    counts = {skill: [0, 0] for skill in skills}

    def report(outcome):
        skill, success = outcome
        counts[skill][0] += success
        counts[skill][1] += 1
        if progress is not None:
            progress(1)

    jobs = [(settings, run_id, tuple(skills), episodes, seed, experiment_id, w, workers)
            for w in range(min(workers, episodes))]
    launch(_evaluation_job, jobs, settings, report, describe_failure)
    return {skill: (wins, n) for skill, (wins, n) in counts.items()}


def _evaluation_job(settings, run_id, skills, episodes, seed, experiment_id, worker, workers, report, stop=None):
    from infra.bus.backend import open_bus

    if workers > 1:
        import torch

        torch.set_num_threads(1)  # W workers share the cores; one thread each avoids oversubscription
    policy = LearnedPolicy.load(settings, run_id)
    producer = open_bus(settings).producer()
    try:
        evaluate(producer, policy, list(skills), episodes, seed, experiment_id, indices=range(worker, episodes, workers),
                 on_episode=lambda skill, success: report((skill, success)))
    finally:
        producer.close()
