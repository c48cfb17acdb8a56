"""The experimenter's four stages: propose -> decompose -> retrieve -> decide.

propose    the model reads the skill summaries, each skill's expected learning progress
           (consumers/curriculum/progress.py), the library and the scene image and proposes tasks
           at the frontier, each with the library skill it practises (or none: a task the library
           lacks a skill for, whose steps become missing skills) and a rationale; each proposal
           carries its skill's learning progress, whoever proposed it;
decompose  each task becomes ordered steps in words (with the scene image);
retrieve   each step gets a skill by caption-embedding similarity (consumers/curriculum/retrieval.py);
           only a step whose best match is unsure goes to the model, with the candidates; a step no
           skill covers is a missing skill;
decide     a task whose every step has a skill becomes a decision: that skill sequence, for a number
           of episodes. The sequence is checked against the library last, whatever the path that
           produced it, so a decision never names a skill the library does not hold.

Ids are hashes of the inputs (the experiment, the summaries read, the library, the scene), so the
same lake state, or a replay of the recorded replies, gives the same proposals and decisions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from consumers.curriculum import progress, replies
from consumers.curriculum.prompts import prompts
from consumers.curriculum.vlm import Image, VLMRequest

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("skill_id", "policy_id", "policy_version", "episodes", "successes", "success_rate", "ci_low",
                  "ci_high", "recent_rate", "trend")


def stable_id(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Library:
    """The skills the curriculum may use: id -> caption, and each skill's natural sequence."""

    captions: dict[str, str]
    sequences: dict[str, tuple[str, ...]]

    def context(self) -> list[dict]:
        return [{"id": s, "caption": c, "sequence": list(self.sequences[s])} for s, c in self.captions.items()]


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    task: str
    skill: str | None                 # None: no library skill does the task (its steps may be missing skills)
    rationale: str
    proposer: str
    call_id: str | None
    score: float | None = None        # the skill's learning progress (None: no library skill)
    progress: str | None = None       # the score with its numbers, in words


@dataclass(frozen=True)
class Plan:
    proposal: Proposal
    steps: tuple[str, ...]
    call_id: str | None


@dataclass(frozen=True)
class Step:
    text: str
    skill_id: str | None
    similarity: float
    verdict: str                      # confident | chosen (by the model) | missing | unresolved
    best_skill: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class Decision:
    decision_id: str
    proposal: Proposal
    skill_sequence: tuple[str, ...]
    steps: tuple[str, ...]
    episodes: int
    call_id: str | None


@dataclass(frozen=True)
class Missing:
    missing_id: str
    proposal_id: str
    step: str
    best_skill: str | None
    similarity: float | None


def round_key(experiment_id: str, summaries: list[dict], library: Library, image: Image) -> str:
    """Names one round by what it read."""
    return stable_id("round", experiment_id, sorted(s["summary_id"] for s in summaries), sorted(library.captions),
                     image.sha256)


# --- propose ----------------------------------------------------------------------------------

def propose_request(library: Library, summaries: list[dict], image: Image, max_tasks: int,
                    history: list[dict] | None = None) -> VLMRequest:
    """The propose question; `history` (default: `summaries`) is what each skill's learning progress
    is scored from: the summaries of the policy's earlier versions too, so the slope spans iterations."""
    rows = [{k: s.get(k) for k in SUMMARY_FIELDS} for s in summaries]
    skills = "\n".join(f"{s}: {c}" + _builds_on(s, library) for s, c in library.captions.items())
    table = "\n".join(_summary_line(r) for r in rows) or "(no episodes yet: nothing has been tried)"
    scored = progress.scores(summaries if history is None else history, library.captions)
    lines = "\n".join(f"{s}: {p.reason}" for s, p in scored.items())
    return prompts.request("propose", {"max_tasks": max_tasks, "skills": skills, "summaries": table, "progress": lines},
                           {"max_tasks": max_tasks, "skills": library.context(), "summaries": rows,
                            "progress": {s: p.as_dict() for s, p in scored.items()}}, image)


def _builds_on(skill: str, library: Library) -> str:
    before = [s for s in dict.fromkeys(library.sequences[skill]) if s != skill]
    return f" (builds on {', '.join(before)})" if before else ""


def _summary_line(r: dict) -> str:
    recent = "-" if r["recent_rate"] is None else f"{r['recent_rate']:.2f}"
    return (f"{r['skill_id']} ({r['policy_id']}@{r['policy_version']}): {r['episodes']} episodes, {r['successes']} "
            f"successes, rate {r['success_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}], recent {recent}, "
            f"trend {r['trend']}")


def propose(vlm, request: VLMRequest, library: Library, key: str, max_tasks: int) -> list[Proposal]:
    answer = replies.ask(vlm, request, lambda reply: replies.proposals(reply, library.captions, max_tasks))
    if answer is None:
        return []
    scored = request.context["progress"]
    return [Proposal(stable_id("proposal", key, t["task"], t["skill"]), t["task"], t["skill"], t["rationale"],
                     answer.model, answer.call_id, *_scored(scored.get(t["skill"]))) for t in answer.value]


def _scored(entry: dict | None) -> tuple[float | None, str | None]:
    return (None, None) if entry is None else (entry["score"], entry["reason"])


# --- decompose --------------------------------------------------------------------------------

def decompose(vlm, proposal: Proposal, library: Library, image: Image) -> Plan | None:
    request = prompts.request("decompose", {"task": proposal.task},
                              {"task": proposal.task, "skill": proposal.skill, "skills": library.context()}, image)
    answer = replies.ask(vlm, request, replies.steps)
    if answer is None:
        log.warning("proposal %s (%r) is not decided: no usable plan", proposal.proposal_id[:8], proposal.task)
        return None
    return Plan(proposal, tuple(answer.value), answer.call_id)


# --- retrieve ---------------------------------------------------------------------------------

def retrieve(vlm, retriever, plan: Plan, library: Library) -> list[Step]:
    """A skill per step: the retriever's when it is confident, the model's choice among the
    candidates when it is unsure, none when nothing comes near."""
    steps = []
    for match in retriever.match_all(list(plan.steps)):
        best = match.candidates[0][0] if match.candidates else None
        if match.verdict == "confident":
            steps.append(Step(match.step, match.skill_id, match.similarity, "confident", best))
        elif match.verdict == "unsure":
            steps.append(_choose(vlm, plan.proposal.task, match, library, best))
        else:
            steps.append(Step(match.step, None, match.similarity, "missing", best))
    return steps


def _choose(vlm, task: str, match, library: Library, best: str | None) -> Step:
    candidates = [(s, sim) for s, sim in match.candidates if s in library.captions]
    listing = "\n".join(f"{s}: {library.captions[s]} ({sim:.2f})" for s, sim in candidates)
    context = {"task": task, "step": match.step,
               "candidates": [{"id": s, "caption": library.captions[s], "similarity": sim} for s, sim in candidates]}
    request = prompts.request("retrieve", {"task": task, "step": match.step, "candidates": listing}, context)
    answer = replies.ask(vlm, request, lambda reply: replies.choice(reply, [s for s, _ in candidates]))
    if answer is None:
        return Step(match.step, None, match.similarity, "unresolved", best)
    if answer.value is None:
        return Step(match.step, None, match.similarity, "missing", best, answer.call_id)
    similarity = dict(candidates)[answer.value]
    return Step(match.step, answer.value, similarity, "chosen", best, answer.call_id)


# --- decide -----------------------------------------------------------------------------------

def decide(plan: Plan, steps: list[Step], library: Library, episodes: int) -> tuple[Decision | None, list[Missing]]:
    proposal = plan.proposal
    missing = [Missing(stable_id("missing", proposal.proposal_id, i, s.text), proposal.proposal_id, s.text,
                       s.best_skill, s.similarity) for i, s in enumerate(steps) if s.verdict == "missing"]
    if missing:
        log.info("proposal %s (%r): no skill for %s", proposal.proposal_id[:8], proposal.task,
                 "; ".join(repr(m.step) for m in missing))
        return None, missing
    if any(s.verdict == "unresolved" for s in steps):
        log.warning("proposal %s (%r) is not decided: a step's skill could not be resolved",
                    proposal.proposal_id[:8], proposal.task)
        return None, []
    sequence = tuple(s.skill_id for s in steps)
    unknown = [s for s in sequence if s not in library.captions]
    if unknown:  # the last line of defence, whatever path produced the sequence
        log.error("proposal %s (%r) is not decided: skills %s are not in the library", proposal.proposal_id[:8],
                  proposal.task, ", ".join(map(str, unknown)))
        return None, []
    decision_id = stable_id("decision", proposal.proposal_id, sequence, episodes)
    return Decision(decision_id, proposal, sequence, plan.steps, episodes, plan.call_id), []
