"""The analyst: learner runs judged by what their policy does (verdicts.py), as `analysis.verdict` events.

A learner run is known by its `learner.metrics` events (their experiment is the run's). Its curves:
- per skill, evaluation success against the learner step: the run's evaluation episodes carry the
  policy id `pac:<run id>` and version `step-<N>` (learner/evaluate.py), in whatever experiment;
  one point per evaluated checkpoint, success per skill as the summaries count it;
- the loss LOSS_METRIC against the step, for the run as a whole: a diagnostic only. A loss falls
  whenever the policy fits its data, whether or not it does the task, so it never says "improving".
Each skill gets a verdict by its evaluated success (improving | converged | stalled | not learning,
quoted with Wilson intervals); the run as a whole (skill id ALL) gets one from them, with the loss
as a note, or `no evaluation yet`; then `stop` once every skill has MIN_POINTS evaluations and none
is improving. Verdict ids hash the evidence and verdict, so judging the same data again (or a
replayed lake) gives the same ids and emits nothing new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field

from consumers.analysis.verdicts import MIN_POINTS, NOT_LEARNING, Judgement, judge_success, quote

log = logging.getLogger(__name__)

ALL = "*"                      # the skill id of a verdict on the run as a whole
NO_EVALUATION = "no evaluation yet"
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
    judgement: Judgement | None = field(default=None, repr=False)  # success curves only: a loss is not judged


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
    """analysis.verdict v2 rows: one per evaluated skill, one for the run (ALL), then `stop` if due."""
    success = [c for c in curves if c.kind == "success"]
    loss = next((c for c in curves if c.kind == "loss"), None)
    note = loss_note(loss)
    rows = []
    for curve in success:
        wins = [round(v * n) for v, n in zip(curve.values, curve.episodes)]
        j = curve.judgement = judge_success(curve.steps, wins, curve.episodes, seed)
        rows.append(verdict_row(curve, j.verdict, j.rationale, j.converged_at, j.slope, j.slope_low, j.slope_high,
                                [curve.steps, curve.values, curve.episodes, seed]))
    if not success:
        if loss is None:
            return []
        why = (f"{NO_EVALUATION}: no checkpoint of run {loss.run_id} has been evaluated (robolake eval), so whether "
               "its policy does the task is unknown" + (f"; {note} (a diagnostic, not a verdict)" if note else ""))
        return [verdict_row(loss, NO_EVALUATION, why, None, None, None, None, [NO_EVALUATION, loss.steps, loss.values])]
    skills = [r["verdict"] for r in rows]
    if "improving" in skills:
        verdict = "improving"
    elif all(v == NOT_LEARNING for v in skills):
        verdict = NOT_LEARNING
    elif all(v in ("converged", NOT_LEARNING) for v in skills):
        verdict = "converged"
    else:
        verdict = "stalled"
    same_step = len({c.steps[-1] for c in success}) == 1
    quoted = ", ".join((f"{c.skill_id} " if len(success) > 1 else "")
                       + quote(round(c.values[-1] * c.episodes[-1]), c.episodes[-1])
                       + ("" if same_step else f" at step {c.steps[-1]}") for c in success)
    why = (f"{verdict}: evaluated success {quoted}" + (f" at step {success[0].steps[-1]}" if same_step else "")
           + (f" while {note}" if note else ""))
    latest = max(curves, key=lambda c: c.time)
    ids = sorted(r["verdict_id"] for r in rows)
    rows.append(verdict_row(latest, verdict, why, None, None, None, None, [ids, note], skill_id=ALL))
    if all(len(c.steps) >= MIN_POINTS for c in success) and "improving" not in skills:
        said = ", ".join(f"{r['skill_id']} {r['verdict']}" for r in rows[:-1])
        rows.append(verdict_row(latest, "stop", f"every skill is converged, stalled or not learning after at least "
                                f"{MIN_POINTS} evaluations ({said}): more training would not help",
                                None, None, None, None, ids, skill_id=ALL))
    return rows


def loss_note(curve: Curve | None) -> str | None:
    """'policy_loss fell 2.1 → 0.4': how the loss went, first to last finite point (a diagnostic)."""
    import math

    points = [v for v in (curve.values if curve else []) if math.isfinite(v)]
    if len(points) < 2:
        return None
    if points[-1] == points[0]:
        return f"{curve.metric} stayed at {points[0]:.3g}"
    return f"{curve.metric} {'fell' if points[-1] < points[0] else 'rose'} {points[0]:.3g} → {points[-1]:.3g}"


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
