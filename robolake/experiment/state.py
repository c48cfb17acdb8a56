"""The run's state, as a projection of the lake: nothing about a run lives anywhere else.

- `run.stage` events say which stages of which iteration finished (with what they produced),
  which attempts failed, why a run stopped (for the log and the report), and, with an external
  learner, what training was requested and which requests the learner failed;
- `curriculum.decision` events (v3) say what was asked for, and the `episodes` view what was
  done: the seeds of a decision whose episodes are complete. A killed run resumes by running the
  stages not done, and within a collection only the seeds not complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

LEARN = "learn"  # the stage name of an external learner's own events (a failed request)


@dataclass
class RunState:
    experiment_id: str
    done: dict[tuple[int, str], dict] = field(default_factory=dict)      # (iteration, stage) -> detail
    failures: dict[tuple[int, str], int] = field(default_factory=dict)   # (iteration, stage) -> failed attempts
    # An external learner's work (`robolake run --external-learner`, `robolake learn`): the train
    # stages' requests, in log order, and the ones the learner failed (request stage id -> why).
    requests: list[dict] = field(default_factory=list)
    learner_failures: dict[str, str] = field(default_factory=dict)

    def open_requests(self) -> list[dict]:
        """Train requests whose stage is not done and that the learner has not failed, oldest first."""
        return [r for r in self.requests if not self.is_done(r["iteration"], "train")
                and r["stage_id"] not in self.learner_failures]

    def is_done(self, iteration: int, stage: str) -> bool:
        return (iteration, stage) in self.done

    def detail(self, iteration: int, stage: str) -> dict:
        return self.done.get((iteration, stage), {})


def load_state(con, experiment_id: str) -> RunState:
    state = RunState(experiment_id)
    rows = con.execute("SELECT payload_json FROM events WHERE type = 'run.stage' AND experiment_id = ? "
                       "ORDER BY _log, _partition, _offset", [experiment_id]).fetchall()
    for (payload,) in rows:
        for row in json.loads(payload):
            key = (row["iteration"], row["stage"])
            if row["stage"] == LEARN:
                detail = json.loads(row["detail"])
                state.learner_failures[detail["request"]] = detail["error"]
            elif row["status"] == "requested":
                state.requests.append({**row, "detail": json.loads(row["detail"])})
            elif row["status"] == "done":
                state.done[key] = json.loads(row["detail"])
            elif row["status"] == "failed":
                state.failures[key] = max(state.failures.get(key, 0), row["attempt"])
    return state


def decision_rows(con, experiment_id: str) -> list[dict]:
    """The experiment's curriculum.decision rows, in log order."""
    rows = con.execute("SELECT payload_json FROM events WHERE type = 'curriculum.decision' AND experiment_id = ? "
                       "ORDER BY _log, _partition, _offset", [experiment_id]).fetchall()
    return [row for (payload,) in rows for row in json.loads(payload)]


def decisions(con, experiment_id: str, ids: list[str]) -> list[dict]:
    """The decision rows with these ids, in the order of `ids` (each once)."""
    found: dict[str, dict] = {}
    for row in decision_rows(con, experiment_id):
        found.setdefault(row["decision_id"], row)
    missing = set(ids) - set(found)
    if missing:
        raise LookupError(f"decisions not in the lake: {', '.join(sorted(missing))}")
    return [found[i] for i in ids]


def complete_seeds(con, decision_ids: list[str]) -> dict[str, set[int]]:
    """decision id -> the seeds of its complete episodes."""
    out: dict[str, set[int]] = {d: set() for d in decision_ids}
    if decision_ids:
        for decision_id, seed in con.execute("SELECT decision_id, seed FROM episodes WHERE decision_id IN "
                                             f"({', '.join('?' * len(decision_ids))})", decision_ids).fetchall():
            out[decision_id].add(seed)
    return out


def episode_count(con, experiment_id: str, counted: tuple[str, ...] = ("bootstrap", "curriculum", "random")) -> int:
    """Complete episodes of the run's collections (evaluation excluded): what the budget counts."""
    ids = [d for d, purpose in purposes(con, experiment_id).items() if purpose in counted]
    if not ids:
        return 0
    return con.execute(f"SELECT count(*) FROM episodes WHERE decision_id IN ({', '.join('?' * len(ids))})",
                       ids).fetchone()[0]


def purposes(con, experiment_id: str) -> dict[str, str]:
    """decision id -> why it was made (bootstrap | curriculum | random | eval)."""
    return {r["decision_id"]: r.get("purpose") or "curriculum" for r in decision_rows(con, experiment_id)}


def announced_skills(con) -> set[str]:
    rows = con.execute("SELECT payload_json FROM events WHERE type = 'skill.added'").fetchall()
    return {r["skill_id"] for (payload,) in rows for r in json.loads(payload)}


def metrics_sent_until(con, experiment_id: str, run_id: str) -> int:
    """The last learner step of the run whose metrics are in the lake (0: none)."""
    row = con.execute(
        """SELECT max(r.step) FROM (
               SELECT unnest(from_json(payload_json, '[{"run_id": "VARCHAR", "step": "BIGINT"}]')) AS r
               FROM events WHERE type = 'learner.metrics' AND experiment_id = ?) WHERE r.run_id = ?""",
        [experiment_id, run_id]).fetchone()
    return row[0] or 0
