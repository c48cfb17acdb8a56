"""Read models over the lake for the report and the dashboard: the experiment's conversation (timeline),
the skills table, success and learning curves, the episodes shown as videos, data volumes and provenance.

Every function takes a read-only DuckDB connection (infra.lake_sql.open_lake) and returns plain
Python data (JSON-ready), each number next to the ids it was computed from, so a reader can follow
it back: episode <-> decision <-> proposal <-> model call <-> checkpoint (learner run).
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import datetime, timezone

from schemas.lake import NO_EXPERIMENT

# What each event type is about: (kind of its own id, id field), and the ids it refers to.
# A kind names an anchor in the report (`<kind>-<id>`), so a reference is a link.
OWN_ID = {"curriculum.proposal": ("proposal", "proposal_id"), "curriculum.decision": ("decision", "decision_id"),
          "curriculum.missing_skill": ("missing", "missing_id"), "vlm.call": ("call", "call_id"),
          "skill.summary": ("summary", "summary_id"), "learner.metrics": ("run", "run_id"),
          "analysis.verdict": ("verdict", "verdict_id"), "relabel.completed": ("relabel", "relabel_id"),
          "skill.added": ("skill", "skill_id")}
REFERENCES = {"proposal_id": "proposal", "call_id": "call", "run_id": "run", "decision_id": "decision"}


class ExperimentNotFound(LookupError):
    """No episode and no event of this experiment in the lake."""


def experiments(con) -> list[dict]:
    """Every experiment in the lake, most recently active first."""
    rows = con.execute("""
        SELECT experiment_id, sum(episodes)::BIGINT, sum(events)::BIGINT, max(last) FROM (
            SELECT experiment_id, count(*) AS episodes, 0 AS events, max(ended_at) AS last FROM episodes GROUP BY ALL
            UNION ALL
            SELECT experiment_id, 0, count(*), max(_timestamp) FROM events WHERE experiment_id <> ? GROUP BY ALL)
        GROUP BY ALL ORDER BY 4 DESC NULLS LAST, 1""", [NO_EXPERIMENT]).fetchall()
    return [{"experiment_id": e, "episodes": n, "events": m, "last": _iso(t)} for e, n, m, t in rows]


def require_experiment(con, experiment: str, where: str) -> None:
    if not any(e["experiment_id"] == experiment for e in experiments(con)):
        known = ", ".join(e["experiment_id"] for e in experiments(con)[:10]) or "none"
        raise ExperimentNotFound(f"no episodes or events of experiment {experiment!r} in the lake at {where} "
                                 f"(experiments there: {known})")


# --- the conversation ------------------------------------------------------------------------

def timeline(con, experiment: str, cursor: str | None = None, limit: int | None = None) -> dict:
    """The experiment's events after `cursor`, oldest first, one readable line each, and the cursor
    to ask with next time, in order of the log's time (ms), then the event's own (µs).
    The cursor holds the last offset seen per (log, topic, partition): a partition's events reach
    the lake in offset order, so nothing committed later is ever missed (a time cursor would miss
    an event that arrives late with an earlier time). With `limit`, only the newest `limit` new
    events are returned (`skipped` counts the others)."""
    seen = _decode_cursor(cursor)
    rows = con.execute(f"""
        SELECT _log, _topic, _partition, _offset, epoch_ms(_timestamp), type, version, payload
        FROM events
        WHERE {_EXPERIMENT_EVENTS}
          AND _offset > coalesce(MAP(?::VARCHAR[], ?::BIGINT[])[_log || '/' || _topic || '/' || _partition], -1)
        ORDER BY {_IN_TIME_ORDER}""",
                       [experiment, experiment, list(seen), list(seen.values())]).fetchall()
    for log, topic, partition, offset, *_ in rows:
        key = f"{log}/{topic}/{partition}"
        seen[key] = max(seen.get(key, -1), offset)
    skipped = max(0, len(rows) - limit) if limit is not None else 0
    return {"events": [_event(*row) for row in rows[skipped:]], "cursor": _encode_cursor(seen), "skipped": skipped}


# The experiment's own events, the library's (skill.added belongs to no experiment), and the relabel
# runs whose rewards rows cover the experiment's episodes.
_EXPERIMENT_EVENTS = f"""(experiment_id = ? OR type = 'skill.added'
    OR (type = 'relabel.completed' AND json_extract_string(payload_json, '$[0].relabel_id') IN
        (SELECT DISTINCT relabel_id FROM rewards WHERE experiment_id = ?)))"""


_IN_TIME_ORDER = "_timestamp, json_extract_string(payload_json, '$[0].time'), _topic, _partition, _offset"


def _event(log, topic, partition, offset, ts_ms, type_, version, payload) -> dict:
    from consumers.conversation import describe
    from infra.bus.interface import Delivery
    from schemas.codec import HEADER_TYPE, HEADER_VERSION, decode

    batch = decode(payload, [(HEADER_TYPE, type_.encode()), (HEADER_VERSION, str(version).encode())])
    rows = batch.rows()
    line = describe(Delivery(topic, partition, offset, None, batch, ts_ms))
    kind, field = OWN_ID.get(type_, (None, None))
    ids = list(dict.fromkeys(str(r[field]) for r in rows if r.get(field))) if field else []
    refs = sorted({(REFERENCES[f], str(r[f])) for r in rows for f in REFERENCES
                   if f != field and r.get(f) is not None})
    return {"key": f"{topic}/{partition}/{offset}", "ts": ts_ms, "time": _iso_ms(ts_ms), "type": type_,
            "version": version, "topic": topic, "kind": kind, "ids": ids[:20], "rows": len(rows),
            "refs": [{"kind": k, "id": i} for k, i in refs], "line": line, "payload": rows}


def _encode_cursor(seen: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(seen, sort_keys=True).encode()).decode()


def _decode_cursor(cursor: str | None) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        seen = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(seen, dict) and all(isinstance(k, str) and type(v) is int and -2**63 <= v < 2**63
                                          for k, v in seen.items()):  # offsets are BIGINT
            return seen
    except ValueError:
        pass
    raise ValueError(f"not a timeline cursor: {cursor[:40]!r}")


def events_of(con, experiment: str, *types: str) -> list[dict]:
    """Decoded rows of the experiment's events of `types`, oldest first, each with its time and
    source (`_time`, `_key`)."""
    rows = con.execute(f"""
        SELECT epoch_ms(_timestamp), _topic || '/' || _partition || '/' || _offset, payload_json FROM events
        WHERE {_EXPERIMENT_EVENTS} AND list_contains(?, type)
        ORDER BY {_IN_TIME_ORDER}""",
                       [experiment, experiment, list(types)]).fetchall()
    return [{**row, "_time": _iso_ms(ts), "_key": key} for ts, key, payload in rows for row in json.loads(payload)]


# --- skills and curves -----------------------------------------------------------------------

def learning_curves(con, experiment: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """learner.metrics per metric name and run: [(step, value)], in step order (per skill metrics
    are named `<name>/<skill>`)."""
    curves: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in events_of(con, experiment, "learner.metrics"):
        name = row["name"] + (f"/{row['skill_id']}" if row.get("skill_id") else "")
        curves[name][row["run_id"]].append((row["step"], row["value"]))
    return {name: {run: sorted(points) for run, points in runs.items()} for name, runs in sorted(curves.items())}


def _run_of(policy_id: str | None) -> str | None:
    return policy_id.removeprefix("pac:") if policy_id and policy_id.startswith("pac:") else None


# --- videos, volumes, provenance ---------------------------------------------------------------

def video_episodes(con, experiment: str, per_skill: int = 2, asked: list[str] | tuple = ()) -> list[dict]:
    """The episodes shown as videos (robolake/report/video.py): per task (an episode's last skill), the
    `per_skill` most recent of the experiment's complete episodes with frames (in `robolake run`, its
    evaluations' first episodes), and the `asked` episodes that have frames, by task and time."""
    rows = con.execute("""
        WITH framed AS (SELECT DISTINCT episode_id FROM frames WHERE experiment_id = ? OR list_contains(?, episode_id)),
             e AS (SELECT *, skill_sequence[-1] AS skill,
                          row_number() OVER (PARTITION BY experiment_id, skill_sequence[-1] ORDER BY ended_at DESC)
                              AS recency
                   FROM episodes JOIN framed USING (episode_id))
        SELECT episode_id, skill, task, task_success, decision_id, policy_id, policy_version, length FROM e
        WHERE (experiment_id = ? AND recency <= ?) OR list_contains(?, episode_id)
        ORDER BY skill, ended_at, episode_id""",
                       [experiment, list(asked), experiment, per_skill, list(asked)]).fetchall()
    return [{"episode_id": episode, "skill": skill, "task": task, "success": success, "decision_id": decision,
             "policy": f"{policy}@{version}", "run_id": _run_of(policy), "length": length}
            for episode, skill, task, success, decision, policy, version, length in rows]


def volumes(con, experiment: str) -> dict:
    """How much data the experiment has, by kind."""
    episodes, steps, successes = con.execute(
        "SELECT count(*), coalesce(sum(length), 0)::BIGINT, count(*) FILTER (WHERE task_success) FROM episodes "
        "WHERE experiment_id = ?", [experiment]).fetchone()
    partial = con.execute("SELECT count(*) FROM partial_episodes WHERE experiment_id = ?", [experiment]).fetchone()[0]
    frames, frame_bytes = con.execute("SELECT count(*), coalesce(sum(octet_length(frame)), 0)::BIGINT FROM frames "
                                      "WHERE experiment_id = ?", [experiment]).fetchone()
    rewards = con.execute("SELECT count(*) FROM rewards WHERE experiment_id = ?", [experiment]).fetchone()[0]
    by_type = dict(con.execute(f"SELECT type, sum(rows)::BIGINT FROM events WHERE {_EXPERIMENT_EVENTS} GROUP BY ALL "
                               "ORDER BY 1", [experiment, experiment]).fetchall())
    return {"complete episodes": episodes, "task successes": successes, "partial episodes": partial, "steps": steps,
            "frames": frames, "frame bytes": frame_bytes, "relabelled reward rows": rewards,
            **{f"{t} events": n for t, n in by_type.items()}}


def provenance(con, experiment: str) -> dict[str, list[dict]]:
    """The chain behind every number: decisions (with their proposal, model calls, episodes and the
    policies that ran them), proposals, missing skills, model calls, verdicts, summaries, learner runs."""
    episodes = con.execute("""
        SELECT decision_id, list(episode_id ORDER BY started_at), count(*), count(*) FILTER (WHERE task_success),
               list(DISTINCT policy_id || '@' || policy_version ORDER BY policy_id || '@' || policy_version)
        FROM episodes WHERE experiment_id = ? GROUP BY ALL""", [experiment]).fetchall()
    by_decision = {d: {"episode_ids": ids, "episodes_done": n, "task_successes": wins, "policies": policies}
                   for d, ids, n, wins, policies in episodes}
    decisions = [{**d, **by_decision.get(d["decision_id"], {"episode_ids": [], "episodes_done": 0,
                                                               "task_successes": 0, "policies": []})}
                 for d in events_of(con, experiment, "curriculum.decision")]
    undirected = by_decision.get(None)
    runs: dict[str, dict] = {}
    for row in events_of(con, experiment, "learner.metrics"):
        run = runs.setdefault(row["run_id"], {"run_id": row["run_id"], "first_step": row["step"],
                                              "last_step": row["step"], "metrics": {}})
        run["first_step"], run["last_step"] = min(run["first_step"], row["step"]), max(run["last_step"], row["step"])
        run["metrics"][row["name"]] = row["value"]  # the latest value
    return {"decisions": decisions, "proposals": events_of(con, experiment, "curriculum.proposal"),
            "missing_skills": events_of(con, experiment, "curriculum.missing_skill"),
            "calls": events_of(con, experiment, "vlm.call"), "verdicts": events_of(con, experiment, "analysis.verdict"),
            "summaries": events_of(con, experiment, "skill.summary"),
            "relabels": events_of(con, experiment, "relabel.completed"), "runs": list(runs.values()),
            "undirected_episodes": undirected and {**undirected, "decision_id": None}}


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return str(value)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
