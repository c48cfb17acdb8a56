"""The VLM reads a plotted learning curve, as a researcher would glance at it; its verdict is
recorded beside the statistical one (an analysis.verdict with method = vlm and the call's id),
which it never replaces: whether a run learns is decided by evaluated success (analysis.py), and
`robolake analyze` shows the model success curves only.

The hook for `robolake analyze`: pass a RecordingVLM (consumers/curriculum/recorder.py) so every
call is on the log as a `vlm.call`; a reply that is not a valid verdict is sent back once with
the error (consumers/curriculum/replies.ask), then dropped (logged): the statistical verdict stands.
"""

from __future__ import annotations

from consumers.analysis.analysis import ALL, Curve, verdict_row
from consumers.curriculum.vlm import Image, Message, VLMRequest

VERDICTS = ("improving", "converged", "stalled")
SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)},
                   "converged_at": {"type": ["integer", "null"]},
                   "rationale": {"type": "string"}},
    "required": ["verdict", "converged_at", "rationale"],
    "additionalProperties": False,
}
SYSTEM = ("You are a reinforcement-learning researcher watching a robot-manipulation experiment. You are shown "
          "one learning curve of a policy under training. Judge it: `improving` if it is still getting better "
          "beyond its noise, `converged` if it has reached a plateau worth having (give the learner step where "
          "the plateau starts), `stalled` if it is flat without having got anywhere, or getting worse. "
          "Answer with one JSON object that satisfies the schema, nothing else.")


def curve_request(curve: Curve, png: bytes) -> VLMRequest:
    subject = "the run as a whole" if curve.skill_id == ALL else f"skill {curve.skill_id}"
    better = "higher" if curve.kind == "success" else "lower"
    name = curve.metric if curve.skill_id == ALL else curve.skill_id
    text = (f"Learner run {curve.run_id} (experiment {curve.experiment_id}), {subject}: {curve.metric} against "
            f"the learner step, {len(curve.steps)} points from step {curve.steps[0]} to {curve.steps[-1]}; "
            f"{better} is better. Is it improving, converged (from which step) or stalled?")
    image = Image(f"analysis/{curve.experiment_id}/{curve.run_id}/{name}.png", png)
    context = {"kind": curve.kind, "steps": list(curve.steps), "values": list(curve.values)}
    return VLMRequest(stage="analyze", system=SYSTEM, messages=(Message("user", text, (image,)),), schema=SCHEMA,
                      context=context)


def _check(reply: dict) -> tuple[str, int | None, str]:
    from consumers.curriculum.replies import ReplyError

    verdict, converged_at, rationale = reply.get("verdict"), reply.get("converged_at"), reply.get("rationale")
    if verdict not in VERDICTS:
        raise ReplyError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if verdict == "converged" and (not isinstance(converged_at, int) or isinstance(converged_at, bool)):
        raise ReplyError(f"a converged verdict needs converged_at, the learner step (an integer), got {converged_at!r}")
    if not isinstance(rationale, str) or not rationale.strip():
        raise ReplyError("rationale must be a non-empty string")
    return verdict, converged_at if verdict == "converged" else None, " ".join(rationale.split())


def vlm_verdict(vlm, curve: Curve, png: bytes) -> dict | None:
    """The model's analysis.verdict v2 row for the plotted curve, or None when it gave no valid one."""
    from consumers.curriculum.replies import ask

    request = curve_request(curve, png)
    answer = ask(vlm, request, _check)
    if answer is None:
        return None
    verdict, converged_at, rationale = answer.value
    return verdict_row(curve, verdict, f"{curve.metric} (read from the plot by {answer.model}): {rationale}", converged_at,
                None, None, None, [request.hash, answer.call_id], method="vlm", call_id=answer.call_id)
