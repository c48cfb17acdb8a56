"""What the report shows about learning, on a lake with a hand-made two-iteration `robolake run`:
the expert bootstraps reach_red (clean and noisy) in iteration 1 and lift_red in iteration 2, the
checkpoint is evaluated after each iteration, a curriculum collection mixes the checkpoint with the
expert, and the analysis gives a verdict on the run as a whole (skill `*`)."""

from __future__ import annotations

import json
import re

import pytest

from infra.settings import Settings
from tests.unit.test_report import emit, sink

EXPERIMENT = "exp-learning"
PAC = "pac:exp-learning-pac"
CONFIG = {"experiment_id": EXPERIMENT, "iterations": 2, "base_skills": ["reach_red"], "train_steps": 200,
          "model": "tiny", "seed": 7}

# decision id -> (policy, version, purpose, expert skills, sequence, successes per episode of the last skill)
DECISIONS = {
    "boot-reach": ("scripted_expert", "1", "bootstrap", ["reach_red"], ["reach_red"], [True, True]),
    "boot-reach-noisy": ("scripted_expert", "1+noise0.3", "bootstrap", ["reach_red"], ["reach_red"], [True, False]),
    "eval-reach-1": (PAC, "step-200", "eval", [], ["reach_red"], [False, False]),
    "boot-lift": ("scripted_expert", "1", "bootstrap", ["reach_red", "lift_red"], ["reach_red", "lift_red"],
                  [True, True]),
    "curriculum-1": (PAC, "step-200", "curriculum", ["lift_red"], ["reach_red", "lift_red"], [True, True]),
    "eval-reach-2": (PAC, "step-400", "eval", [], ["reach_red"], [True, False]),
    "eval-lift-2": (PAC, "step-400", "eval", [], ["reach_red", "lift_red"], [False, True]),
}


def build_run(settings, first_plan: dict) -> None:
    from infra.bus.backend import open_bus
    from producers.episode_writer import EpisodeWriter
    from schemas import events, topics

    for decision, (policy, version, purpose, experts, sequence, outcomes) in DECISIONS.items():
        emit(settings, topics.CURRICULUM, events.CURRICULUM_DECISION_V3, [{
            "decision_id": decision, "experiment_id": EXPERIMENT, "proposal_id": None, "task": decision,
            "skill_sequence": sequence, "episodes": len(outcomes), "steps": None, "call_id": None,
            "policy_id": policy, "policy_version": version, "expert_skills": experts, "noise": 0.0,
            "purpose": purpose}])
        writer = EpisodeWriter(open_bus(settings).producer(), chunk_steps=4)
        for seed, success in enumerate(outcomes):
            writer.start(experiment_id=EXPERIMENT, worker_id="w0", env_name="panda_block_stacking", env_version=1,
                         seed=seed, initial_state=[0.0], task=decision, skill_sequence=sequence, decision_id=decision,
                         policy_id=policy, policy_version=version)
            for step, skill in enumerate(sequence):  # an episode's skills[] are those its steps ran
                writer.step(step=step, sim_time=0.0, observation=[0.0] * 43, action=[0.0, 0.0, 0.0, 1.0], reward=0.0,
                            task_reward=0.0, skill_id=skill, skill_caption="x", terminated=False,
                            truncated=skill == sequence[-1])
            writer.end("timeout", task_success=success, skill_success={**{s: True for s in sequence},
                                                                       sequence[-1]: success})
    stages = [(0, "plan", {**first_plan, "decisions": ["boot-reach", "boot-reach-noisy"]}),
              (0, "eval", {"policy": PAC, "version": "step-200", "decisions": ["eval-reach-1"]}),
              (1, "plan", {"decisions": ["boot-lift", "curriculum-1"]}),
              (1, "eval", {"policy": PAC, "version": "step-400", "decisions": ["eval-reach-2", "eval-lift-2"]})]
    for iteration, stage, detail in stages:
        emit(settings, topics.RUNS, events.RUN_STAGE, [{
            "stage_id": f"{stage}-{iteration}", "experiment_id": EXPERIMENT, "iteration": iteration, "stage": stage,
            "status": "done", "attempt": 1, "detail": json.dumps(detail)}])
    for verdict_id, skill, verdict in [("v-reach", "reach_red", "improving"), ("v-all", "*", "improving")]:
        emit(settings, topics.ANALYSIS, events.ANALYSIS_VERDICT_V2, [{
            "verdict_id": verdict_id, "experiment_id": EXPERIMENT, "skill_id": skill, "verdict": verdict,
            "rationale": "evaluated success rising", "run_id": "exp-learning-pac", "method": "statistical",
            "converged_at": None, "slope": None, "slope_low": None, "slope_high": None, "call_id": None}])
    sink(settings)


def report_of(tmp_path, first_plan: dict):
    from robolake.commands.report import write_report

    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")
    build_run(settings, first_plan)
    report, page, text = write_report(settings, EXPERIMENT, tmp_path / "out")
    return report, page.read_text(), text.read_text()


@pytest.fixture
def recorded(tmp_path):
    return report_of(tmp_path, {"experiment": {"model": "tiny", "seed": 7}, "config": CONFIG,
                                "commit": "0123abcd" * 5, "version": "0.1.0"})


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_per_skill_tables_never_mix_expert_and_policy_rows(recorded):
    report, page, markdown = recorded
    learned, expert = report.skills["learned"], report.skills["expert"]
    assert learned and expert
    assert {r["policy_id"] for r in learned} == {PAC}
    assert {r["policy_id"] for r in expert} == {"scripted_expert"}
    # the curriculum collection (checkpoint and expert together) is in neither table, but counted
    assert report.skills["mixed"] == 2 * 2  # two episodes, two skills each
    assert not {r["policy_version"] for r in learned} - {"step-200", "step-400"}
    lifted = [r for r in learned if r["skill_id"] == "lift_red"]
    assert [(r["iteration"], r["successes"], r["attempts"]) for r in lifted] == [(2, 1, 2)]
    # rendered the same way: each section's rows name only its own policies
    rows = {title: [line for line in _section(markdown, title).splitlines() if line.startswith("| ")][1:]
            for title in ("Learned policy", "Expert collection")}
    assert rows["Learned policy"] and all(PAC in r and "scripted_expert" not in r for r in rows["Learned policy"])
    assert rows["Expert collection"] and all("scripted_expert" in r and "pac:" not in r
                                             for r in rows["Expert collection"])
    assert 'id="learned"' in page and 'id="expert"' in page
    assert {"learned", "expert"} <= set(report.charts)


def test_the_run_wide_verdict_is_a_line_of_its_own_not_a_skill_row(recorded):
    report, page, markdown = recorded
    assert "*" not in {r["skill_id"] for r in report.skills["learned"] + report.skills["expert"]}
    assert not re.search(r"^\| \\?\* \|", markdown, re.MULTILINE) and "<td>*</td>" not in page
    assert report.skills["overall"]["verdict_id"] == "v-all"
    assert "Verdict on the run as a whole (all skills): improving (v-all)" in _section(markdown, "Learned policy")


def test_each_skill_shows_the_iteration_that_introduced_it_and_its_evaluations_per_iteration(recorded):
    report, page, markdown = recorded
    assert report.introduced == {"reach_red": 1, "lift_red": 2}
    reach = [(r["iteration"], r["policy_version"], f"{r['successes']}/{r['attempts']}")
             for r in report.skills["learned"] if r["skill_id"] == "reach_red"]
    # iteration 2's evaluation of lift_red runs reach_red first: it counts for reach_red too
    assert reach == [(1, "step-200", "0/2"), (2, "step-400", "3/4")]
    assert "| lift_red | 2 | 2 | pac:exp-learning-pac@step-400 | 1/2 | 50% | \\[9, 91\\]% | – |" in markdown
    assert "| reach_red | 1 | 1 | pac:exp-learning-pac@step-200 | 0/2 | 0% | \\[0, 66\\]% | – |" in markdown
    assert "| reach_red | 1 | 2 | pac:exp-learning-pac@step-400 | 3/4 | 75% | \\[30, 95\\]% | improving (v-reach) |" \
        in markdown
    assert "| reach_red | 1 | scripted_expert@1+noise0.3 | 1/2 | 50% | \\[9, 91\\]% |" in markdown


def test_the_config_and_commit_of_the_run_appear(recorded):
    report, page, markdown = recorded
    experiment = _section(markdown, "Experiment")
    assert f"| commit | {'0123abcd' * 5} |" in experiment and "| robolake version | 0.1.0 |" in experiment
    for key, value in CONFIG.items():
        assert f"| {key} | {', '.join(value) if isinstance(value, list) else value} |" in experiment
    assert f"<code>commit {'0123abcd' * 5} (robolake 0.1.0)</code>" in page and "<td>train_steps</td>" in page
    assert f"Code: `commit {'0123abcd' * 5} (robolake 0.1.0)`" in markdown


def test_an_experiment_without_a_recorded_commit_shows_unknown(tmp_path):
    report, page, markdown = report_of(tmp_path, {"experiment": {"model": "tiny", "seed": 7}})
    experiment = _section(markdown, "Experiment")
    assert "| commit | unknown |" in experiment and "| model | tiny |" in experiment
    assert "Code: <code>robolake 0.1.0 (no commit recorded)</code>" in page  # the package's version instead


def test_the_first_plan_records_the_code_that_runs():
    from robolake.experiment.stages import code
    from schemas.version import VERSION

    recorded = code()
    assert recorded["version"] == VERSION
    assert recorded["commit"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", recorded["commit"])


def test_the_header_is_the_latest_plan_s_config_and_code():
    """A resumed run given more iterations (or run by a newer commit) shows what it runs with now."""
    from robolake.report.learning import header

    first = {"config": {"iterations": 1, "train_steps": 200}, "commit": "aaa", "version": "0.1.0", "experiment": {}}
    later = {"config": {"iterations": 5, "train_steps": 200}, "commit": "bbb", "version": "0.1.0"}
    details = {(0, "plan"): first, (0, "train"): {"step": 200}, (1, "plan"): later}
    assert header(details) == {"config": later["config"], "commit": "bbb", "version": "0.1.0"}
    old = {(0, "plan"): {"experiment": {"base_skills": ["reach_red"]}}}  # started before configs were recorded
    assert header(old) == {"config": {"base_skills": ["reach_red"]}, "commit": "unknown", "version": "unknown"}
