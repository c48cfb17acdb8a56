"""What the model replied, checked before anything acts on it; a bad reply is repaired once or
rejected, never acted on, and the experimenter never crashes because of one.

- `parse`: one JSON object of at most MAX_REPLY_BYTES (a ```json fence around it is tolerated, prose
  around it is not).
- `proposals`, `steps`, `choice`: each stage's reply against what exists — the library's skill
  ids, the candidates offered, and the scene's three cubes (red, green, blue): a reply that
  mentions any other colour, a fourth block or another object is invalid. A proposal may name
  no skill ("skill": "none"): a task the library lacks a skill for, whose steps the retrieval
  then reports as missing skills (the way the library grows, consumers/curriculum/growth.py).
- `ask`: one question with one repair. A reply that fails its check is answered with the error
  (and the start of the reply) and asked again (attempt 2); a second failure, or a call that failed
  outright (a timeout, a 429 storm: VLMError after the backend's own retries), rejects the question.
  Every rejection is a warning naming the stage, the call id and the reason, and `ask` returns None.
  An answer already on record for the very same question (the recorder's `recall`) is taken when it
  passes the checks, so a rerun completes an interrupted round without asking again; a failed or
  rejected one is asked again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from consumers.curriculum.vlm import Message, VLMError, VLMRequest

log = logging.getLogger(__name__)

SCENE_COLOURS = ("red", "green", "blue")
MAX_STEPS = 12
MAX_REPLY_BYTES = 64 * 1024   # a reply to any stage is a few hundred bytes; far longer is a model gone astray
REPAIR_EXCERPT = 2000         # characters of a bad reply quoted back to the model in the repair
# Things a reply may not bring into the scene; colours come from the retrieval's word lists.
_FOREIGN = re.compile(r"\b(fourth|4th|four|another (?:block|cube|box)|ball|sphere|cylinder|cup|mug|bowl|plate|"
                      r"bottle|pyramid|drawer|door|shelf)\b", re.IGNORECASE)


class ReplyError(ValueError):
    """The reply cannot be acted on; the message says why (and is sent back to the model)."""


@dataclass(frozen=True)
class Answer:
    value: object            # what the stage's check made of the reply
    call_id: str | None      # the vlm.call that produced it
    model: str = ""          # the model that replied (as recorded, in a replay)


def parse(text: str) -> dict:
    if len(text.encode("utf-8", "replace")) > MAX_REPLY_BYTES:  # no length in the message: the same for a cut record
        raise ReplyError(f"the reply is longer than the {MAX_REPLY_BYTES} bytes a reply may have")
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ReplyError(f"the reply must be a JSON object, got {type(value).__name__}")
    return value


def check_objects(text: str, what: str) -> None:
    """Only the scene's three cubes may be mentioned."""
    from consumers.curriculum.retrieval import colours_in

    other = [c for c in colours_in(text, _colour_words()) if c not in SCENE_COLOURS]
    if other:
        raise ReplyError(f"{what} {text!r} mentions {', '.join(other)}: the scene has only a red, a green and a "
                         "blue cube")
    foreign = _FOREIGN.search(text)
    if foreign:
        raise ReplyError(f"{what} {text!r} mentions {foreign.group(0)!r}: the scene has only a red, a green and "
                         "a blue cube, nothing else")


@lru_cache
def _colour_words() -> dict[str, str]:
    from consumers.curriculum.retrieval import load_aliases

    return load_aliases().colour_words


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReplyError(f"{what} must be a non-empty string, got {json.dumps(value)}")
    return value.strip()


def proposals(reply: dict, library: dict[str, str], max_tasks: int) -> list[dict]:
    """[{task, skill, rationale}], at most `max_tasks`, each skill in the library or None ("none":
    no library skill does the task), the same task once."""
    tasks = reply.get("tasks")
    if not isinstance(tasks, list):
        raise ReplyError('the reply must have "tasks": a list of {"task", "skill", "rationale"}')
    distinct = _first_of_each_task(tasks)
    if len(distinct) > max_tasks:
        raise ReplyError(f"{len(distinct)} tasks proposed, at most {max_tasks} were asked for")
    checked = []
    for i, item in distinct:
        if not isinstance(item, dict):
            raise ReplyError(f"tasks[{i}] must be an object with task, skill and rationale")
        task = _text(item.get("task"), f"tasks[{i}].task")
        skill = _text(item.get("skill"), f"tasks[{i}].skill")
        rationale = _text(item.get("rationale"), f"tasks[{i}].rationale")
        if skill.lower() == "none":
            skill = None
        elif skill not in library:
            raise ReplyError(f"tasks[{i}].skill {skill!r} is not in the skill library (its {len(library)} skills "
                             "are listed in the question)")
        check_objects(task, f"tasks[{i}].task")
        checked.append({"task": task, "skill": skill, "rationale": rationale})
    return checked


def _first_of_each_task(tasks: list) -> list[tuple[int, object]]:
    """(index, item) without the repeats of a task already listed: a repeat adds nothing, so a bad
    one must not reject the reply."""
    kept, seen = [], set()
    for i, item in enumerate(tasks):
        task = item.get("task") if isinstance(item, dict) else None
        key = task.strip().lower() if isinstance(task, str) else None
        if key is None or key not in seen:
            seen.add(key)
            kept.append((i, item))
    return kept


def steps(reply: dict) -> list[str]:
    """The plan: 1 to MAX_STEPS steps in words, only about the scene's cubes."""
    plan = reply.get("steps")
    if not isinstance(plan, list):
        raise ReplyError('the reply must have "steps": a list of steps in words')
    if not plan:
        raise ReplyError("the plan is empty: a task needs at least one step")
    if len(plan) > MAX_STEPS:
        raise ReplyError(f"the plan has {len(plan)} steps, at most {MAX_STEPS} are allowed")
    checked = [_text(step, f"steps[{i}]") for i, step in enumerate(plan)]
    for i, step in enumerate(checked):
        check_objects(step, f"steps[{i}]")
    return checked


def choice(reply: dict, candidates: list[str]) -> str | None:
    """One of the candidate ids, or None for "none" (no candidate does the step)."""
    skill = _text(reply.get("skill"), "skill")
    if skill.lower() == "none":
        return None
    if skill not in candidates:
        raise ReplyError(f"skill {skill!r} is not one of the candidates ({', '.join(candidates)}) nor \"none\"")
    return skill


def ask(vlm, request: VLMRequest, check: Callable[[dict], object]) -> Answer | None:
    """The checked answer to `request`, repairing a bad reply once; None when rejected (logged)."""
    recalled = _recalled(vlm, request, check)
    if recalled is not None:
        return recalled
    for attempt in (1, 2):
        try:
            reply = vlm.complete(request, attempt=attempt, check=lambda text: check(parse(text)))
        except VLMError as exc:
            log.warning("%s: rejected, the model call failed (call %s, attempt %d): %s",
                        request.stage, getattr(vlm, "last_call_id", None), attempt, printable(str(exc)))
            return None
        call = getattr(reply, "call_id", None)
        try:
            return Answer(check(parse(reply.text)), call, reply.model)
        except ReplyError as exc:
            if attempt == 2:
                log.warning("%s: rejected, the repaired reply is still invalid (call %s): %s", request.stage, call,
                            printable(str(exc)))
                return None
            log.warning("%s: invalid reply, asking once more with the error (call %s): %s", request.stage, call,
                        printable(str(exc)))
            request = repair(request, reply.text, str(exc))
    return None


def _recalled(vlm, request: VLMRequest, check) -> Answer | None:
    """An answer on record for this very question (or for its repair) that passes the check now."""
    recall = getattr(vlm, "recall", None)
    for reply in recall(request) if recall else ():
        try:
            return Answer(check(parse(reply.text)), reply.call_id, reply.model)
        except ReplyError as exc:
            for repaired in recall(repair(request, reply.text, str(exc))):
                try:
                    return Answer(check(parse(repaired.text)), repaired.call_id, repaired.model)
                except ReplyError:
                    continue
    return None


def repair(request: VLMRequest, reply_text: str, error: str) -> VLMRequest:
    """The same question, followed by the bad reply (its start: a runaway reply must not grow the
    prompt) and what was wrong with it."""
    if len(reply_text) > REPAIR_EXCERPT:  # no length given: a cut record of the reply repairs the same way
        reply_text = f"{reply_text[:REPAIR_EXCERPT]}… [the rest is cut]"
    correction = (f"Your reply was rejected: {error}. Answer the question again: one JSON object that satisfies "
                  "the schema, nothing else.")
    return dataclasses.replace(request, messages=(*request.messages, Message("model", reply_text),
                                                  Message("user", correction)))


def printable(text: str, limit: int = 300) -> str:
    """Model text made safe for a terminal or a log line: control, format (bidi) and other
    unprintable characters escaped as repr does, on one line, cut at `limit`."""
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return safe if len(safe) <= limit else safe[:limit - 1] + "…"
