"""What every finished `robolake run` must show in its lake, whatever happened to it on the way."""

from __future__ import annotations

import json

from infra.lake_sql import open_lake

STAGES = ("plan", "collect", "relabel", "train", "eval", "summaries", "analysis", "curriculum")


def query(settings, sql, params=()):
    con = open_lake(settings)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def events(settings, kind, experiment: str = "exp"):
    """The experiment's events of one type (skill.added, which belongs to no experiment: all)."""
    where = "type = ?" + ("" if kind == "skill.added" else " AND experiment_id = ?")
    params = [kind] if kind == "skill.added" else [kind, experiment]
    return [r for (payload,) in query(settings, f"SELECT payload_json FROM events WHERE {where}", params)
            for r in json.loads(payload)]


def check_exactly_once(settings, experiment: str = "exp", iterations: int = 2, train_steps: int = 8):
    """Every stage of every iteration done once; every decision's seeds complete once each;
    no event id, metric or reward row twice."""
    from producers.decisions import decision_seeds

    def of(kind):
        return events(settings, kind, experiment)

    stages = [(r["iteration"], r["stage"]) for r in of("run.stage") if r["status"] == "done"]
    assert sorted(stages) == sorted((i, s) for i in range(iterations) for s in STAGES)
    decisions = of("curriculum.decision")
    assert len({d["decision_id"] for d in decisions}) == len(decisions) > 0
    collected = {i for r in of("run.stage") if r["status"] == "done" and r["stage"] in ("plan", "eval")
                 for i in json.loads(r["detail"]).get("decisions", [])}
    last_round = {i for r in of("run.stage") if (r["iteration"], r["stage"]) == (iterations - 1, "curriculum")
                  and r["status"] == "done" for i in json.loads(r["detail"])["decisions"]}
    # the last round's decisions wait for the next iteration
    assert {d["decision_id"] for d in decisions} == collected | last_round
    for d in (d for d in decisions if d["decision_id"] in collected):
        seeds = [s for (s,) in query(settings, "SELECT seed FROM episodes WHERE decision_id = ?", [d["decision_id"]])]
        assert sorted(seeds) == decision_seeds(d["decision_id"], d["episodes"]), d["task"]
    assert query(settings, "SELECT count(*) FROM episodes WHERE experiment_id = ? AND decision_id IS NULL",
                 [experiment]) == [(0,)]
    # an episode a kill cut short was run again, whole: for the decisions the run collected (a worker may
    # start one of the last round's while the run ends, and be killed or stopped in it; the next
    # iteration, which would run it again, never comes)
    cut_short = query(settings, "SELECT DISTINCT s.decision_id FROM partial_episodes p JOIN episode_starts s "
                                "USING (episode_id) WHERE p.experiment_id = ? AND NOT EXISTS (SELECT 1 FROM episodes e "
                                "WHERE e.decision_id = s.decision_id AND e.seed = s.seed)", [experiment])
    assert not {d for (d,) in cut_short} - last_round, cut_short
    for kind, key in (("skill.summary", "summary_id"), ("analysis.verdict", "verdict_id"), ("vlm.call", "call_id"),
                      ("curriculum.proposal", "proposal_id"), ("run.stage", "stage_id")):
        ids = [r[key] for r in of(kind)]
        assert len(ids) == len(set(ids)), kind
    announced = [s for r in of("run.stage") if r["stage"] == "plan" and r["status"] == "done"
                 for s in json.loads(r["detail"])["announced"]]
    added = [r["skill_id"] for r in of("skill.added")]
    assert all(added.count(s) == 1 for s in announced) and len(set(announced)) == len(announced)
    metrics = [(r["run_id"], r["step"], r["name"]) for r in of("learner.metrics")]
    assert len(metrics) == len(set(metrics)) and {s for _, s, _ in metrics} >= {
        train_steps * (i + 1) for i in range(iterations)}
    assert query(settings, "SELECT count(*) FROM (SELECT episode_id, step, reward_fn, reward_version, count(*) AS n "
                           "FROM rewards WHERE dataset = ? GROUP BY ALL HAVING n > 1)", [f"run:{experiment}"]) == [(0,)]
    # the training data: every complete episode but the evaluations' (and, with rollout workers serving
    # the log, the last round's, run as soon as they were decided, after the last relabel)
    unrelabelled = {d for (d,) in query(settings, "SELECT DISTINCT decision_id FROM episodes e WHERE experiment_id = ? "
                                                  "AND NOT EXISTS (SELECT 1 FROM rewards r WHERE r.episode_id = "
                                                  "e.episode_id AND r.dataset = ?)", [experiment, f"run:{experiment}"])}
    evaluations = {d["decision_id"] for d in decisions if d["purpose"] == "eval"}
    assert evaluations <= unrelabelled <= evaluations | last_round


def small_config_file(path, lake) -> str:
    """The small run of tests/unit (two skills, two iterations, a few episodes and learner steps) as
    a run config file (the flags' names with underscores), with the experiment, its lake and its
    report beside the lake."""
    path.write_text(f'''experiment = "exp"
lake = "file://{lake}"
report_dir = "{lake.parent / 'report'}"
skills = ["reach_red", "lift_red"]
iterations = 2
train_steps = 8
bootstrap_episodes = 1
eval_episodes = 1
episodes = 1
tasks = 1
workers = 1
''')
    return str(path)
