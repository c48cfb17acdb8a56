"""A growing library: the built-in skills the curriculum asked for without having them.

A step no announced skill covers is a `curriculum.missing_skill` event. The built-in library
(producers/sim/skills.py) may hold more skills than the lake announced; `skills_to_add` matches
each missing step of an experiment against the captions of those unannounced skills with the
curriculum's own retriever (the factory `Curriculum` takes, so the same thresholds and decision
rule) and returns the skills to announce. Only a "confident" match adds a skill: an unsure one
would need the model to choose, and a wrong skill in the library is worse than a missing one (the
step stays missing, and is matched again on the next call). A skill comes with the unannounced
skills of its natural sequence (what it builds on, producers/rollout.py task_for), so it can
become ready. A skill the lake announced is never returned, so calling again after
`announce_additions` returns nothing new: the library is the lake's `skill.added` events, for
every experiment of the lake.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from consumers.curriculum.stages import Library

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """A missing step that asked for a skill: the `curriculum.missing_skill` event's id and step,
    and how similar the retriever found the step to the skill."""

    missing_id: str
    step: str
    similarity: float


@dataclass(frozen=True)
class Addition:
    """A built-in skill to announce, with why: the missing steps that asked for it, and the other
    additions that build on it (a prerequisite may have no request of its own)."""

    skill_id: str
    caption: str
    requests: tuple[Request, ...] = ()
    needed_by: tuple[str, ...] = ()

    @property
    def missing_ids(self) -> tuple[str, ...]:
        return tuple(r.missing_id for r in self.requests)

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.step for r in self.requests))

    @property
    def similarity(self) -> float | None:
        """The closest of its requests, None for a prerequisite only."""
        return max((r.similarity for r in self.requests), default=None)

    def describe(self) -> str:
        why = [f"{', '.join(repr(s) for s in self.steps)} (similarity {self.similarity:.2f}, missing "
               f"{', '.join(m[:8] for m in self.missing_ids)})"] if self.requests else []
        if self.needed_by:
            why.append(f"{', '.join(self.needed_by)} builds on it")
        return f"{self.skill_id} ({self.caption!r}): {'; '.join(why)}"


def missing_steps(con, experiment_id: str) -> list[tuple[str, str]]:
    """(missing_id, step) of the experiment's `curriculum.missing_skill` events, in lake order, each once."""
    found: dict[str, str] = {}
    for (payload,) in con.execute("SELECT payload_json FROM events WHERE type = 'curriculum.missing_skill' AND "
                                  "experiment_id = ? ORDER BY _log, _partition, _offset", [experiment_id]).fetchall():
        for row in json.loads(payload):
            found.setdefault(row["missing_id"], row["step"])
    return list(found.items())


def skills_to_add(con, experiment_id: str, retriever_for: Callable[[Library], object],
                  prerequisites: bool = True) -> list[Addition]:
    """The built-in skills the lake has not announced that the experiment's missing steps ask for
    (see the module doc), in library order. `retriever_for(library)` makes a SkillRetriever, as for
    `Curriculum`; it is not called when there is nothing to match."""
    from consumers.curriculum.consumer import load_library

    return additions_for(missing_steps(con, experiment_id), load_library(con), retriever_for, prerequisites)


def additions_for(missing: Iterable[tuple[str, str]], announced: Library, retriever_for: Callable[[Library], object],
                  prerequisites: bool = True) -> list[Addition]:
    """`skills_to_add` on given (missing_id, step) pairs and announced library."""
    from producers.rollout import task_for
    from producers.sim.skills import LIBRARY

    missing = list(missing)
    unannounced = [s for s in LIBRARY if s not in announced.captions]
    if not missing or not unannounced:
        return []
    offer = Library({s: LIBRARY[s].caption for s in unannounced}, {s: task_for(s) for s in unannounced})
    steps = list(dict.fromkeys(step for _, step in missing))
    matched = {}
    for match in retriever_for(offer).match_all(steps):
        if match.verdict == "confident" and match.skill_id in offer.captions:
            matched[match.step] = match
        else:
            log.info("no built-in skill to add for %r: %s (best %s)", match.step, match.verdict,
                     match.candidates[0] if match.candidates else "none")
    requests: dict[str, list[Request]] = {}
    for missing_id, step in missing:
        if step in matched:
            requests.setdefault(matched[step].skill_id, []).append(Request(missing_id, step, matched[step].similarity))
    needed_by: dict[str, list[str]] = {}
    if prerequisites:
        for skill in list(requests):
            for before in dict.fromkeys(offer.sequences[skill]):
                if before != skill and before in offer.captions:
                    needed_by.setdefault(before, []).append(skill)
    return [Addition(s, offer.captions[s], tuple(requests.get(s, ())), tuple(needed_by.get(s, ())))
            for s in unannounced if s in requests or s in needed_by]


def announce_additions(producer, additions: Iterable[Addition]) -> int:
    """One `skill.added` event for exactly these skills (flushed); returns how many were announced."""
    from producers.sim.announce import announce_skills

    additions = list(additions)
    for a in additions:
        log.info("library grows by %s", a.describe())
    return announce_skills(producer, [a.skill_id for a in additions])
