"""Skill summaries: a projection of the lake's complete episodes (and relabelled rewards) into
one `skill.summary` per (experiment, skill, policy id, policy version).

What counts:
- An episode counts once for every skill in its `skill_sequence`; it is a success for that skill
  when its end's `skills[]` says so (a skill the episode never reached is a failure). Only
  complete episodes count (the lake's `episodes` view), in the order they ended (then by id).
- Skills the library does not know (the built-in library, plus skills announced by `skill.added`
  events in the lake) are logged and ignored.
- `recent_rate` is the success over the last `window` episodes; `trend` compares those with the
  `window` before them (a two-proportion z-test at 95%: up | down | flat), `unknown` while there
  are fewer than two windows of `MIN_WINDOW` episodes.
- Hindsight: where the `rewards` table (`robolake relabel`) covers the policy's episodes with the
  skill's reward function, in how many of them (whatever they were commanded to do) that function
  fired on some step; null where it covers none.

Deterministic by construction: `summary_id` hashes the experiment, skill, policy, the ids of the
episodes counted and the hindsight counts, and `time` is when the last counted episode ended, so
the same lake (or a lake rebuilt by replaying the log) gives the same summaries, and emitting
twice sends nothing new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

from schemas.stats import wilson

log = logging.getLogger(__name__)

WINDOW = 20        # episodes in the recent window (and in the one before it, for the trend)
MIN_WINDOW = 5     # the trend needs two windows of at least this many episodes
Z_95 = 1.96

# Per episode and commanded skill: did the episode succeed at it (its end's skills[] entry).
_OUTCOMES = """
    SELECT experiment_id, skill_id, policy_id, policy_version, episode_id, ended_at,
           coalesce(list_bool_or([s.success FOR s IN skills IF s.skill_id = skill_id]), false) AS success
    FROM (SELECT *, unnest(list_distinct(skill_sequence)) AS skill_id FROM episodes WHERE {where})
    ORDER BY experiment_id, skill_id, policy_id, policy_version, ended_at, episode_id"""

# Per policy version and reward function: episodes the relabelled rewards cover, and achieved in.
_HINDSIGHT = """
    SELECT e.policy_id, e.policy_version, a.reward_fn, a.reward_version,
           count(*) AS episodes, count(*) FILTER (WHERE a.achieved) AS successes
    FROM (SELECT episode_id, reward_fn, reward_version, bool_or(achieved) AS achieved
          FROM achievements WHERE experiment_id = $experiment GROUP BY ALL) a
    JOIN episodes e USING (episode_id)
    GROUP BY ALL"""


def skill_library(con) -> dict[str, tuple[str, int]]:
    """Skill id -> its reward function (name, version): the built-in library, updated by the
    skills announced in the lake (`skill.added`, latest version wins)."""
    import producers.sim.gl  # noqa: F401 (first: MuJoCo reads MUJOCO_GL when it loads)
    from infra.optional import require

    require("mujoco", "sim")  # the built-in library lives with the simulator
    from producers.sim.skills import LIBRARY

    library = {s.id: (s.version, s.reward) for s in LIBRARY.values()}
    for (payload,) in con.execute("SELECT payload_json FROM events WHERE type = 'skill.added'").fetchall():
        for row in json.loads(payload):
            if row["version"] >= library.get(row["skill_id"], (0, None))[0]:
                library[row["skill_id"]] = (row["version"], (row["reward_fn"], row["reward_version"]))
    return {skill: reward for skill, (_, reward) in library.items()}


def experiments(con) -> list[str]:
    """Experiments with complete episodes in the lake."""
    return [r[0] for r in con.execute("SELECT DISTINCT experiment_id FROM episodes ORDER BY 1").fetchall()]


def skill_outcomes(con, where: str = "TRUE", params: dict | None = None) -> list[dict]:
    """(experiment, skill, policy, version, episode, ended_at, success) rows of the episodes matching
    `where` (a trusted predicate on the `episodes` view), ordered by group, then end time and id."""
    cursor = con.execute(_OUTCOMES.format(where=where), params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def current_summaries(con, experiment_id: str, library: dict[str, tuple[str, int]] | None = None,
                      window: int = WINDOW) -> list[dict]:
    """The summary of every (skill, policy id, policy version) of the experiment, as of now: rows
    with the fields of the skill.summary event, sorted by skill, policy id and version."""
    library = skill_library(con) if library is None else library
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in skill_outcomes(con, "experiment_id = $experiment", {"experiment": experiment_id}):
        groups.setdefault((row["skill_id"], row["policy_id"], row["policy_version"]), []).append(row)
    unknown = sorted({skill for skill, _, _ in groups if skill not in library})
    if unknown:
        log.warning("experiment %s: ignoring episodes of skills the library does not know: %s",
                    experiment_id, ", ".join(unknown))
    hindsight = {(r[0], r[1], r[2], r[3]): (r[4], r[5])
                 for r in con.execute(_HINDSIGHT, {"experiment": experiment_id}).fetchall()}
    summaries = []
    for (skill, policy_id, version), rows in sorted(groups.items()):
        if skill not in library:
            continue
        seen = hindsight.get((policy_id, version, *library[skill]))
        summaries.append(summarise(experiment_id, skill, policy_id, version, rows, seen, window))
    return summaries


def summarise(experiment_id: str, skill_id: str, policy_id: str, policy_version: str, rows: list[dict],
              hindsight: tuple[int, int] | None = None, window: int = WINDOW) -> dict:
    """One summary from a group's outcome rows (in episode order) and its hindsight counts."""
    outcomes = [bool(r["success"]) for r in rows]
    n, wins = len(outcomes), sum(outcomes)
    low, high = wilson(wins, n)
    recent = outcomes[-window:]
    key = {"experiment": experiment_id, "skill": skill_id, "policy": policy_id, "version": policy_version,
           "episodes": sorted(r["episode_id"] for r in rows), "hindsight": list(hindsight) if hindsight else None}
    return {
        "summary_id": hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32],
        "experiment_id": experiment_id, "skill_id": skill_id, "policy_id": policy_id,
        "policy_version": policy_version, "episodes": n, "successes": wins, "success_rate": wins / n,
        "ci_low": low, "ci_high": high, "recent_rate": sum(recent) / len(recent), "trend": trend(outcomes, window),
        "hindsight_episodes": hindsight[0] if hindsight else None,
        "hindsight_successes": hindsight[1] if hindsight else None,
        "time": max(r["ended_at"] for r in rows),
    }


def trend(outcomes: list[bool], window: int = WINDOW) -> str:
    """up | down | flat: the last `size` outcomes against the `size` before them (two-proportion
    z-test, 95%), size = min(window, half the outcomes); unknown below MIN_WINDOW per side."""
    size = min(window, len(outcomes) // 2)
    if size < MIN_WINDOW:
        return "unknown"
    recent, before = outcomes[-size:], outcomes[-2 * size:-size]
    p_recent, p_before = sum(recent) / size, sum(before) / size
    pooled = (p_recent + p_before) / 2
    se = math.sqrt(pooled * (1 - pooled) * 2 / size)
    if se == 0:  # all successes or all failures in both windows
        return "flat"
    z = (p_recent - p_before) / se
    return "up" if z > Z_95 else "down" if z < -Z_95 else "flat"


def emitted_ids(con, experiment_id: str) -> set[str]:
    """Ids of the skill.summary events of the experiment already in the lake."""
    rows = con.execute("SELECT payload_json FROM events WHERE type = 'skill.summary' AND experiment_id = ?",
                       [experiment_id]).fetchall()
    return {r["summary_id"] for (payload,) in rows for r in json.loads(payload)}


def emit_summaries(con, producer, experiment_id: str, library: dict[str, tuple[str, int]] | None = None) -> list[dict]:
    """Send the experiment's current summaries that the lake does not hold yet as one skill.summary
    batch (topic SUMMARIES, keyed by the experiment); returns what was sent."""
    from schemas import topics
    from schemas.codec import build
    from schemas.events import SKILL_SUMMARY

    known = emitted_ids(con, experiment_id)
    new = [s for s in current_summaries(con, experiment_id, library) if s["summary_id"] not in known]
    if new:
        producer.send(topics.SUMMARIES, experiment_id, build(SKILL_SUMMARY, new))
        producer.flush()
    log.info("experiment %s: %d new summaries sent (%d already in the lake)", experiment_id, len(new), len(known))
    return new
