"""The analyst: learner runs' curves from the lake, judged (verdicts.py), as `analysis.verdict` events.

A learner run is known by its `learner.metrics` events (their experiment is the run's). Its curves:
- per skill, evaluation success against the learner step: the run's evaluation episodes carry the
  policy id `pac:<run id>` and version `step-<N>` (learner/evaluate.py), in whatever experiment;
  one point per evaluated checkpoint, success per skill as the summaries count it;
- the loss LOSS_METRIC against the step, for the run as a whole (skill id ALL): judged only while
  no evaluation curve has enough points to be judged.
Each curve gets an `improving | converged | stalled` verdict; the run gets `stop` (skill id ALL)
once every curve is converged or stalled. Verdict ids hash the curve's points and verdict, so
judging the same data again (or a replayed lake) gives the same ids and emits nothing new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field

from consumers.analysis.verdicts import Judgement, judge

log = logging.getLogger(__name__)

ALL = "*"                      # the skill id of a verdict on the run as a whole
LOSS_METRIC = "policy_loss"
_VERSION = re.compile(r"step-(\d+)")


@dataclass
class Curve:
    experiment_id: str
    run_id: str
    skill_id: str              # ALL for a loss curve
    kind: str                  # success | loss
    metric: str                # "success" or the loss's name
    steps: list[int]
    values: list[float]
    episodes: list[int] | None = None
    time: object = None        # when its latest point was recorded
    judgement: Judgement | None = field(default=None, repr=False)


def learner_runs(con, experiment_id: str | None = None) -> list[tuple[str, str]]:
    """(experiment, run id) of every run with learner.metrics events (in one experiment if given)."""
    sql = ("SELECT DISTINCT experiment_id, unnest(json_extract_string(payload_json, '$[*].run_id')) FROM events "
           "WHERE type = 'learner.metrics'" + (" AND experiment_id = $experiment" if experiment_id else "")
           + " ORDER BY ALL")
    return [tuple(r) for r in con.execute(sql, {"experiment": experiment_id} if experiment_id else {}).fetchall()]


def run_curves(con, experiment_id: str, run_id: str) -> list[Curve]:
    """The run's evaluation curves per skill, then its loss curve (if it has one)."""
    from consumers.summaries.summaries import skill_outcomes

    points: dict[str, dict[int, list]] = {}
    for row in skill_outcomes(con, "policy_id = $policy", {"policy": f"pac:{run_id}"}):
        version = _VERSION.fullmatch(row["policy_version"])
        if version is None:
            log.warning("run %s: ignoring episodes of policy version %r (not step-<N>)", run_id, row["policy_version"])
            continue
        point = points.setdefault(row["skill_id"], {}).setdefault(int(version[1]), [0, 0, row["ended_at"]])
        point[0] += bool(row["success"])
        point[1] += 1
        point[2] = max(point[2], row["ended_at"])
    curves = [Curve(experiment_id, run_id, skill, "success", "success", sorted(by_step),
                    [by_step[s][0] / by_step[s][1] for s in sorted(by_step)],
                    [by_step[s][1] for s in sorted(by_step)], max(p[2] for p in by_step.values()))
              for skill, by_step in sorted(points.items())]
    rows = con.execute(
        """SELECT r.step, r.value, r.time FROM (
               SELECT unnest(from_json(payload_json, '[{"run_id": "VARCHAR", "step": "BIGINT", "name": "VARCHAR",
                                                       "value": "DOUBLE", "time": "TIMESTAMPTZ"}]')) AS r
               FROM events WHERE type = 'learner.metrics' AND experiment_id = $experiment)
           WHERE r.run_id = $run AND r.name = $name ORDER BY r.step, r.time""",
        {"experiment": experiment_id, "run": run_id, "name": LOSS_METRIC}).fetchall()
    by_step = {step: (value, time) for step, value, time in rows}  # a resumed run's repeat of a step: the last
    if by_step:
        curves.append(Curve(experiment_id, run_id, ALL, "loss", LOSS_METRIC, sorted(by_step),
                            [by_step[s][0] for s in sorted(by_step)], None, max(t for _, t in by_step.values())))
    return curves


def judge_run(curves: list[Curve], seed: int = 0) -> list[dict]:
    """analysis.verdict v2 rows for a run's curves (those with enough points; the loss only while no
    evaluation curve has them), then `stop` if due."""
    rows = []
    for curve in sorted(curves, key=lambda c: c.kind != "success"):
        if curve.kind == "loss" and rows:
            continue
        curve.judgement = judge(curve.steps, curve.values, curve.kind, curve.episodes, seed)
        if curve.judgement is None:
            log.info("run %s, %s: %d points, too few to judge", curve.run_id, curve.skill_id, len(curve.steps))
            continue
        j = curve.judgement
        rows.append(verdict_row(curve, j.verdict, f"{curve.metric}: {j.rationale}", j.converged_at, j.slope,
                                j.slope_low, j.slope_high, [curve.steps, curve.values, curve.episodes, seed]))
    if rows and all(r["verdict"] in ("converged", "stalled") for r in rows):
        ids = sorted(r["verdict_id"] for r in rows)
        said = ", ".join(f"{r['skill_id']} {r['verdict']}" for r in rows)
        latest = max(curves, key=lambda c: c.time)
        rows.append(verdict_row(latest, "stop", f"every curve is converged or stalled ({said}): more training "
                                "would not help", None, None, None, None, ids, skill_id=ALL))
    return rows


def verdict_row(curve: Curve, verdict: str, rationale: str, converged_at, slope, low, high, evidence,
                skill_id: str | None = None, method: str = "statistical", call_id: str | None = None) -> dict:
    """An analysis.verdict v2 row; its id hashes who judged what (the evidence) and the verdict."""
    skill_id = skill_id or curve.skill_id
    key = json.dumps([curve.experiment_id, curve.run_id, skill_id, method, verdict, evidence])
    return {"verdict_id": hashlib.sha256(key.encode()).hexdigest()[:32], "experiment_id": curve.experiment_id,
            "skill_id": skill_id, "verdict": verdict, "rationale": rationale, "time": curve.time,
            "run_id": curve.run_id, "method": method, "converged_at": converged_at, "slope": slope,
            "slope_low": low, "slope_high": high, "call_id": call_id}


def emitted_ids(con, experiment_id: str) -> set[str]:
    rows = con.execute("SELECT payload_json FROM events WHERE type = 'analysis.verdict' AND experiment_id = ?",
                       [experiment_id]).fetchall()
    return {r["verdict_id"] for (payload,) in rows for r in json.loads(payload)}


def emit_verdicts(con, producer, rows: list[dict]) -> list[dict]:
    """Send the verdicts the lake does not hold yet (one batch per experiment); returns what was sent."""
    from schemas import topics
    from schemas.codec import build
    from schemas.events import ANALYSIS_VERDICT_V2

    sent = []
    for experiment in sorted({r["experiment_id"] for r in rows}):
        known = emitted_ids(con, experiment)
        new = [r for r in rows if r["experiment_id"] == experiment and r["verdict_id"] not in known]
        if new:
            producer.send(topics.ANALYSIS, experiment, build(ANALYSIS_VERDICT_V2, new))
            sent += new
    producer.flush()
    return sent
