"""What the report shows about learning: per skill, the learned policy's evaluated success per
iteration, kept apart from the scripted expert's collection success; the iteration that brought
each skill in; and the experiment's config and commit, as `robolake run` recorded them.

Who acted in an episode is its policy: `scripted_expert` (or none) is the expert; `pac:<run>` at
`step-<n>` a learner checkpoint. A checkpoint's episodes count as its evaluation when their
decision is an evaluation (`purpose` eval), or says no purpose and gives no skill to the expert
(decisions older than v3). A checkpoint's own collection attempts (the curriculum's decisions
it acts in; where the expert takes a task over, the decision is the expert's) are neither: they are
counted apart (`mixed`), never in either table.
"""

from __future__ import annotations

import json
import re

from robolake.report.queries import events_of
from schemas.stats import wilson

EXPERT = "scripted_expert"  # the scripted expert's policy id (curriculum.decision v3)
OVERALL = "*"               # the skill id of a verdict on the run as a whole (consumers/analysis)

# Per decision, skill (of its sequence) and policy version: episodes, and successes at that skill.
_OUTCOMES = """
    SELECT decision_id, policy_id, policy_version, skill_id, count(*), count(*) FILTER (WHERE success)
    FROM (SELECT decision_id, policy_id, policy_version, skill_id,
                 coalesce(list_bool_or([s.success FOR s IN skills IF s.skill_id = skill_id]), false) AS success
          FROM (SELECT *, unnest(list_distinct(skill_sequence)) AS skill_id FROM episodes WHERE experiment_id = ?))
    GROUP BY ALL"""


def stage_details(con, experiment: str) -> dict[tuple[int, str], dict]:
    """(iteration, stage) -> what the finished stage recorded (run.stage events of `robolake run`)."""
    return {(r["iteration"], r["stage"]): json.loads(r["detail"]) for r in events_of(con, experiment, "run.stage")
            if r["status"] == "done"}


def actor(policy_id: str | None, decision: dict | None) -> str:
    """expert | learned | mixed: who acted in the episodes of this policy and decision."""
    if policy_id in (None, EXPERT):
        return "expert"
    decision = decision or {}
    purpose = decision.get("purpose")
    if policy_id.startswith("pac:") and (purpose == "eval" or (purpose is None and not decision.get("expert_skills"))):
        return "learned"
    return "mixed"


def read(con, experiment: str) -> tuple[dict, dict, dict[str, int]]:
    """(header, per_skill, introduced) of the experiment, its stage details and decisions read once."""
    details = stage_details(con, experiment)
    decisions = {d["decision_id"]: d for d in events_of(con, experiment, "curriculum.decision")}
    return header(details), per_skill(con, experiment, details, decisions), introduced(details, decisions)


def per_skill(con, experiment: str, details: dict, decisions: dict) -> dict:
    """{"learned": rows, "expert": rows, "mixed": episodes-per-skill count, "overall": verdict or None}.
    A row is one skill under one policy version (k/n with a Wilson 95% interval); learned rows carry
    the iteration whose eval stage ran that checkpoint (None outside `robolake run`)."""
    evaluated = {(d["policy"], d["version"]): i for (i, stage), d in sorted(details.items()) if stage == "eval"}
    groups: dict[tuple, list[int]] = {}
    mixed = 0
    for decision, policy, version, skill, n, wins in con.execute(_OUTCOMES, [experiment]).fetchall():
        who = actor(policy, decisions.get(decision))
        if who == "mixed":
            mixed += n
            continue
        counts = groups.setdefault((who, skill, policy or EXPERT, version), [0, 0])
        counts[0], counts[1] = counts[0] + n, counts[1] + wins
    verdicts = {r["skill_id"]: r for r in events_of(con, experiment, "analysis.verdict")}  # the latest wins
    out: dict = {"learned": [], "expert": [], "mixed": mixed, "overall": verdicts.pop(OVERALL, None)}
    for (who, skill, policy, version), (n, wins) in groups.items():
        low, high = wilson(wins, n)
        iteration = evaluated.get((policy, version)) if who == "learned" else None
        verdict = verdicts.get(skill) if who == "learned" else None
        out[who].append({"skill_id": skill, "policy_id": policy, "policy_version": version,
                         "policy": f"{policy}@{version}", "iteration": None if iteration is None else iteration + 1,
                         "attempts": n, "successes": wins, "rate": wins / n, "ci_low": low, "ci_high": high,
                         "verdict": verdict and verdict["verdict"], "verdict_id": verdict and verdict["verdict_id"]})
    out["learned"].sort(key=lambda r: (r["skill_id"], r["iteration"] or 0, _step(r["policy_version"]), r["policy"]))
    for row, after in zip(out["learned"], out["learned"][1:]):
        if row["skill_id"] == after["skill_id"]:  # the latest verdict goes with the latest evaluation only
            row["verdict"] = row["verdict_id"] = None
    out["expert"].sort(key=lambda r: (r["skill_id"], r["policy"]))
    return out


def _step(version: str) -> int:
    found = re.fullmatch(r"step-(\d+)", version or "")
    return int(found.group(1)) if found else -1


def introduced(details: dict, decisions: dict) -> dict[str, int]:
    """skill -> the iteration (from 1, as `robolake run` counts) whose plan first collected it."""
    first: dict[str, int] = {}
    for (iteration, stage), detail in sorted(details.items()):
        if stage != "plan":
            continue
        for decision in detail.get("decisions", []):
            for skill in decisions.get(decision, {}).get("skill_sequence", []):
                first.setdefault(skill, iteration + 1)
    return first


def header(details: dict) -> dict:
    """The run's settings and the code that ran it, as its latest plan recorded them (a resumed run
    may have been given more iterations or a new commit; "unknown" where no plan did: experiments
    started before the commit was recorded)."""
    plans = [detail for (_, stage), detail in sorted(details.items()) if stage == "plan" and "config" in detail]
    plan = plans[-1] if plans else details.get((0, "plan"), {})
    return {"config": plan.get("config") or plan.get("experiment") or {},
            "commit": plan.get("commit") or "unknown", "version": plan.get("version") or "unknown"}
