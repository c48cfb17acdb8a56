"""The skill library as data: one `skill.added` event per skill."""

from __future__ import annotations

from typing import Iterable

from infra.bus.interface import Producer
from producers.episode_writer import utc_now
from producers.sim.skills import LIBRARY, get_skill
from schemas import topics
from schemas.codec import build
from schemas.events import SKILL_ADDED

# What an experiment that grows its library starts from: every single-block skill, no placing or tower.
BASE_SKILLS = (*(f"{action}_{colour}" for colour in ("red", "green", "blue") for action in ("reach", "grasp", "lift")),
               "open_gripper", "go_home")


def announce_skills(producer: Producer, skill_ids: Iterable[str] | None = None) -> int:
    """Announce `skill_ids` (in that order; all of the built-in library when None); returns how many.
    An id the built-in library lacks raises UnknownSkill before anything is sent; none sends nothing."""
    skills = list(LIBRARY.values()) if skill_ids is None else [get_skill(s) for s in dict.fromkeys(skill_ids)]
    if not skills:
        return 0
    rows = [{"skill_id": s.id, "caption": s.caption, "version": s.version, "reward_fn": s.reward[0],
             "reward_version": s.reward[1], "time": utc_now()} for s in skills]
    producer.send(topics.SKILLS, "library", build(SKILL_ADDED, rows))
    producer.flush()
    return len(rows)
