"""Running a `curriculum.decision`: its seeds, its policy, its episodes.

A decision names a skill sequence and a number of episodes; episode i starts from seed
`decision_seeds(id, n)[i]`, so whoever runs it (a rollout worker serving the curriculum topic, or
`robolake run` itself) runs the same episodes, and a runner that restarts can run only the seeds
whose episodes are not complete in the lake. v3 decisions also say who acts: a learner run's
checkpoint (`policy_id` "pac:<run>", `policy_version` "step-<n>"), with the scripted expert for the
`expert_skills` (skills too new for the policy); without them, the scripted expert acts.
An evaluation (`purpose` eval) records camera frames of its first `eval_videos` episodes only: the
report and the dashboard show them as videos, and no other episode pays for rendering.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable

from producers.policy import ScriptedExpert
from producers.rollout import RolloutConfig, run_episodes

EXPERT = ScriptedExpert.id
_VERSION = re.compile(r"step-(\d+)")


class BadDecision(ValueError):
    """The decision cannot be run (unknown skill, unknown policy); the message says why."""


# (settings, run id, step) -> that checkpoint's policy, or BadDecision saying why not: the learner's
# (learner.evaluate.load_for_decision), handed down, since the producers stand below the learner.
LoadLearned = Callable[[object, str, int], object]


def decision_seeds(decision_id: str, episodes: int) -> list[int]:
    base = int.from_bytes(hashlib.sha256(decision_id.encode()).digest()[:4], "big")
    return [base + i for i in range(episodes)]


class MixedPolicy:
    """`learned` acts, but the scripted expert runs `expert_skills`; the episode carries the
    learned policy's id and version (its data says which skills the expert ran: steps.skill_id)."""

    def __init__(self, learned, expert: ScriptedExpert, expert_skills: set[str]):
        self.learned, self.expert, self.expert_skills = learned, expert, expert_skills
        self.id, self.version = learned.id, learned.version
        self._active = learned

    def start(self, env, skill, rng) -> None:
        self._active = self.expert if skill.id in self.expert_skills else self.learned
        self._active.start(env, skill, rng)

    def act(self, observation):
        return self._active.act(observation)


class Policies:
    """Loaded learned policies, one per (run, step): a worker serving many decisions loads each once,
    with `load_learned` (from the learner, given by whoever launches the workers)."""

    def __init__(self, settings, load_learned: LoadLearned | None = None):
        self.settings, self.load_learned, self._loaded = settings, load_learned, {}

    def for_decision(self, row: dict, noise: float = 0.0):
        """The decision's policy; `noise` on the scripted expert's actions."""
        policy_id = row.get("policy_id") or EXPERT
        expert = ScriptedExpert(noise)
        if policy_id == EXPERT:
            return expert
        if not policy_id.startswith("pac:"):
            raise BadDecision(f"unknown policy {policy_id!r} (expected {EXPERT!r} or 'pac:<run>')")
        version = _VERSION.fullmatch(row.get("policy_version") or "")
        if version is None:
            raise BadDecision(f"policy {policy_id} needs a version 'step-<n>', got {row.get('policy_version')!r}")
        key = (policy_id, int(version[1]))
        if key not in self._loaded:
            if self.load_learned is None:
                raise BadDecision(f"policy {policy_id}: these workers were given no way to load learned policies")
            try:
                self._loaded[key] = self.load_learned(self.settings, policy_id.removeprefix("pac:"), key[1])
            except BadDecision as exc:
                raise BadDecision(f"policy {policy_id} {row['policy_version']}: {exc}") from None
        return MixedPolicy(self._loaded[key], expert, set(row.get("expert_skills") or ()))


def rollout_config(base: RolloutConfig, row: dict) -> RolloutConfig:
    from producers.sim.skills import UnknownSkill

    evaluation = row.get("purpose") == "eval"
    videos = decision_seeds(row["decision_id"], row["episodes"])[:base.eval_videos] if evaluation else []
    try:
        return dataclasses.replace(base, skills=tuple(row["skill_sequence"]), task_skill=row["skill_sequence"][-1],
                                   decision_id=row["decision_id"], experiment_id=row["experiment_id"],
                                   noise=base.noise if row.get("noise") is None else row["noise"],
                                   frame_seeds=frozenset(videos))
    except (UnknownSkill, IndexError) as exc:
        raise BadDecision(f"decision {row['decision_id']}: {exc}") from None


def run_decision(producer, row: dict, base: RolloutConfig, policies: Policies, seeds: list[int] | None = None,
                 env=None, progress=None, stop=None) -> list[dict]:
    """Run the decision's episodes (only `seeds`, when given) and stream them; returns their ends."""
    config = rollout_config(base, row)
    policy = policies.for_decision(row, config.noise)
    seeds = decision_seeds(row["decision_id"], row["episodes"]) if seeds is None else seeds
    return run_episodes(producer, config, seeds, progress=progress, env=env, stop=stop, policy=policy)
