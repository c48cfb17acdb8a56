"""The offline experimenter: deterministic rules in place of a VLM, so the loop and its tests run
without a network. It reads the structured facts a request was rendered from (`request.context`)
and answers the JSON each stage's schema asks for; the same request always gets the same reply.

Rules, per stage:

propose — frontier tasks. Per skill, the summary of its most-practised policy (most episodes):
- mastered: success rate >= 0.9 with a tight interval (Wilson low >= 0.75);
- hopeless: at least 20 episodes and success rate <= 0.05;
- learned: success rate >= 0.75 with Wilson low >= 0.45 (what it builds on need not be perfect);
- ready: every skill it builds on (its natural sequence, producers/rollout.py task_for) is learned.
Candidates are the skills neither mastered nor hopeless that are ready or practised already (a
skill cannot be learned before what it builds on; one begun stays a candidate when what it builds
on dips; a mastered or hopeless one wastes episodes whatever its score), and
the composite tasks the library does not hold yet (IDEAS, in their order) that are ready: putting
one block on another (each ordered pair of colours), ready when lifting the top block is learned,
and the three-block tower, ready when both of its placings are learned. A skill another candidate
builds on is dropped: that candidate's episodes run it (the expert demonstrates a task whole while
the policy cannot do a part), so it is practised through them. The rest are ranked together by
expected learning progress (context "progress", from consumers/curriculum/progress.py; a context
without it is scored from its summaries; an idea, never tried, scores the exploration value),
highest first, ties in library order, then the ideas. The first `max_tasks` become tasks: the
caption, the skill, and a rationale quoting its rank and score. An idea names no library skill
("skill": "none"), so it is decomposed into one step, the task itself, that no announced skill
covers: a missing skill, which the library may grow by (consumers/curriculum/growth.py). An idea
is dropped once the library announces the skill of its id.

decompose — the task's skill (context "skill") unrolled into its natural sequence, each step the
caption of one skill in words; a task naming no known skill is one step, the task itself.

retrieve — the candidate whose caption is the step, else the most similar candidate when its
similarity is at least 0.6, else "none" (a missing skill).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

from consumers.curriculum import progress
from consumers.curriculum.vlm import VLMError, VLMReply, VLMRequest

MASTERED_RATE, MASTERED_LOW = 0.9, 0.75
LEARNED_RATE, LEARNED_LOW = 0.75, 0.45   # a lucky 3 of 3 (Wilson low 0.44) is not learned yet
HOPELESS_EPISODES, HOPELESS_RATE = 20, 0.05
RETRIEVE_FLOOR = 0.6


@dataclass(frozen=True)
class Idea:
    """A composite task in words; `skill_id` is what a library skill doing it is called (the idea
    is dropped once the library holds it), `needs` the skills that must be learned first."""

    task: str
    skill_id: str
    needs: tuple[str, ...]


def _ideas() -> tuple[Idea, ...]:
    colours = ("red", "green", "blue")
    places = [Idea(f"put the {top} block on the {bottom} block", f"place_{top}_on_{bottom}", (f"lift_{top}",))
              for top, bottom in itertools.permutations(colours, 2)]
    # the built-in tower: green on blue, then red on green
    tower = Idea("build a tower of the three blocks", "build_tower", ("place_green_on_blue", "place_red_on_green"))
    return (*places, tower)


IDEAS = _ideas()


class ScriptedVLM:
    backend = "scripted"
    # v2: composite tasks the library lacks; v3: ranked by learning progress; v4: ready once what a
    # skill builds on is learned (not mastered), and the ideas ranked with the skills; v5: a skill a
    # candidate builds on is practised through it
    model = "frontier-rules-v5"

    def complete(self, request: VLMRequest) -> VLMReply:
        started = time.monotonic()
        answer = {"propose": propose, "decompose": decompose, "retrieve": retrieve}.get(request.stage)
        if answer is None:
            raise VLMError(f"the scripted experimenter has no rules for stage {request.stage!r}")
        text = json.dumps(answer(request.context))
        return VLMReply(text, self.model, time.monotonic() - started)


def propose(context: dict) -> dict:
    skills = context["skills"]
    stats = _most_practised(context.get("summaries", []))
    scores = context.get("progress") or {s: p.as_dict() for s, p in
                                         progress.scores(context.get("summaries", []), [k["id"] for k in skills]).items()}
    mastered = {s for s, row in stats.items() if _mastered(row)}
    learned = {s for s, row in stats.items() if row["success_rate"] >= LEARNED_RATE and row["ci_low"] >= LEARNED_LOW}
    ranked = []  # (-score, order, task without its rationale, what the rationale needs)
    for order, skill in enumerate(skills):
        row = stats.get(skill["id"])
        builds_on = [s for s in skill["sequence"] if s != skill["id"]]
        if skill["id"] in mastered or (row and _hopeless(row)) or (row is None and not set(builds_on) <= learned):
            continue
        ranked.append((-scores[skill["id"]]["score"], order, {"task": skill["caption"], "skill": skill["id"]},
                       (skill["id"], row, builds_on, [s for s in builds_on if s not in learned], scores[skill["id"]])))
    held = {skill["id"] for skill in skills}
    sequences = {skill["id"]: skill["sequence"] for skill in skills}
    for order, idea in enumerate(IDEAS, len(skills)):
        if idea.skill_id not in held and set(idea.needs) <= learned:
            ranked.append((-progress.EXPLORE, order, {"task": idea.task, "skill": "none"}, idea))
    # A candidate's episodes run what it builds on (a placing is reach, grasp, lift, then place; the
    # expert demonstrates it whole where the policy cannot do a part yet), so a skill another
    # candidate builds on is practised through it and gets no episodes of its own.
    parts = {part for _, _, task, why in ranked
             for part in (_parts(why, sequences) if isinstance(why, Idea) else sequences[task["skill"]][:-1])}
    ranked = [r for r in ranked if isinstance(r[3], Idea) or r[2]["skill"] not in parts]
    ranked.sort(key=lambda r: (r[0], r[1]))
    tasks = []
    for rank, (score, _, task, why) in enumerate(ranked[: context["max_tasks"]], 1):
        rationale = (_idea_rationale(why, stats, -score, rank, len(ranked)) if isinstance(why, Idea)
                     else _rationale(*why, rank, len(ranked)))
        tasks.append({**task, "rationale": rationale})
    return {"tasks": tasks}


def decompose(context: dict) -> dict:
    skills = {s["id"]: s for s in context.get("skills", [])}
    skill = skills.get(context.get("skill") or "")
    if skill is None:
        return {"steps": [context["task"]]}
    return {"steps": [skills[s]["caption"] if s in skills else s.replace("_", " ") for s in skill["sequence"]]}


def retrieve(context: dict) -> dict:
    step = context["step"].strip().lower()
    candidates = context["candidates"]
    for candidate in candidates:
        if candidate["caption"].strip().lower() == step:
            return {"skill": candidate["id"], "reason": "its caption is the step"}
    if candidates and candidates[0]["similarity"] >= RETRIEVE_FLOOR:
        best = candidates[0]
        return {"skill": best["id"], "reason": f"the most similar caption ({best['similarity']:.2f})"}
    return {"skill": "none", "reason": f"no candidate is similar enough (at least {RETRIEVE_FLOOR})"}


def _parts(idea: Idea, sequences: dict[str, list[str]]) -> set[str]:
    """The library skills an idea's episodes would run: what it needs, with their own parts."""
    return {part for need in idea.needs for part in sequences.get(need, [need])}


def _most_practised(summaries: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for row in summaries:
        if row["skill_id"] not in best or row["episodes"] > best[row["skill_id"]]["episodes"]:
            best[row["skill_id"]] = row
    return best


def _mastered(row: dict) -> bool:
    return row["success_rate"] >= MASTERED_RATE and row["ci_low"] >= MASTERED_LOW


def _hopeless(row: dict) -> bool:
    return row["episodes"] >= HOPELESS_EPISODES and row["success_rate"] <= HOPELESS_RATE


def _rationale(skill_id: str, row: dict | None, builds_on: list[str], unlearned: list[str], scored: dict, rank: int,
               of: int) -> str:
    done = "never tried" if row is None else f"{row['successes']}/{row['episodes']} successes"
    base = ("it builds on no other skill" if not builds_on else f"it builds on {', '.join(builds_on)}, all learned"
            if not unlearned else f"practised already, it stays a candidate while {', '.join(unlearned)} "
            f"is not learned")
    # the score only: the numbers behind it travel with every proposal (Proposal.progress)
    return f"{skill_id} ({done}) ranks {rank} of {of} candidates by learning progress ({scored['score']:.2f}); {base}"


def _idea_rationale(idea: Idea, stats: dict[str, dict], score: float, rank: int, of: int) -> str:
    needs = ", ".join(f"{s} ({stats[s]['successes']}/{stats[s]['episodes']})" for s in idea.needs)
    return (f"no skill of the library does this yet; never tried, it ranks {rank} of {of} candidates by learning "
            f"progress ({score:.2f}, the exploration value); it builds on {needs}, learned")
