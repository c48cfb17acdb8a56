"""The skill library as data: one `skill.added` event per skill."""

from __future__ import annotations

from infra.bus.interface import Producer
from producers.episode_writer import utc_now
from producers.sim.skills import LIBRARY
from schemas import topics
from schemas.codec import build
from schemas.events import SKILL_ADDED


def announce_skills(producer: Producer) -> int:
    rows = [{"skill_id": s.id, "caption": s.caption, "version": s.version, "reward_fn": s.reward[0],
             "reward_version": s.reward[1], "time": utc_now()} for s in LIBRARY.values()]
    producer.send(topics.SKILLS, "library", build(SKILL_ADDED, rows))
    producer.flush()
    return len(rows)
