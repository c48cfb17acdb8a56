"""The stages of one iteration of `robolake run`, in order. Each reads what it needs from the lake
(`run.open()`), sends its events, and returns a JSON-able detail that the loop records in a
`run.stage` event. Each is safe to run again after a crash at any point: ids are deterministic and
only what the lake lacks is sent or done (see robolake/experiment/state.py).

plan        iteration 0 bootstraps the base skills; later ones, the skills the library can provide
            for the curriculum's missing steps (announced then): the scripted expert, clean and
            noisy. The previous iteration's curriculum decisions are collected too.
collect     the planned decisions' episodes (only seeds not complete in the lake).
relabel     the reward function of every skill the experiment practises, over its episodes.
train       the experiment's PAC run, `train_steps` more steps (resumed from its checkpoint); with an
            external learner, a request that `robolake learn` serves.
eval        the new checkpoint on every skill the experiment practises: eval decisions, collected
            the same way.
summaries   skill.summary events of the experiment.
analysis    verdicts on the run by evaluated success (never the loss); `stop` ends the run (not
            with keep_going).
curriculum  a curriculum round (or, with collection = random, skills drawn uniformly from the whole
            built-in library by random_skills: the baseline): the next iteration's decisions, with the
            latest policy acting and the expert on skills it was not trained on or cannot do yet.
"""

from __future__ import annotations

import dataclasses
import logging

from consumers.curriculum.stages import stable_id
from producers.decisions import EXPERT
from producers.rollout import task_for
from robolake.experiment import external
from robolake.experiment import state as lake_state
from robolake.experiment.errors import StageFailed

log = logging.getLogger(__name__)

# The expert demonstrates a task when the policy's evaluated success at a skill of it is below this.
EXPERT_BELOW = 0.25

ORDER = ("plan", "collect", "relabel", "train", "eval", "summaries", "analysis", "curriculum")


def plan(run, iteration: int) -> dict:
    """The experiment's skills are its base skills and those grown for it: each is bootstrapped
    once. The bootstrap decisions are sent before the skill is announced, and the plan collects
    every bootstrap decision no earlier plan did: a kill between any two steps loses none."""
    from producers.sim.announce import announce_skills

    con = run.open()
    try:
        if iteration == 0:  # the base skills, with the skills their sequences build on
            skills = list(dict.fromkeys(s for skill in run.config.base_skills for s in task_for(skill)))
        else:
            skills = [a.skill_id for a in run.grow(con)]
        practised = set(experiment_skills(con, run.config.experiment_id))
        new = [s for s in skills if s not in practised]
    finally:
        con.close()
    # Noisy demonstrations for the base skills only: with noise 0.3 the expert failed every grasp, lift
    # and placing (0 of 15 each, curriculum_vs_random lakes); a grown skill's budget buys clean ones.
    noises = (0.0, run.config.bootstrap_noise) if iteration == 0 else (0.0,)
    run.send_decisions([_bootstrap(run, skill, noise) for skill in new for noise in noises])
    with run.library_lock():  # the library is the lake's: two runs must not both announce a skill
        con = run.open()
        try:
            announced = lake_state.announced_skills(con)
        finally:
            con.close()
        adding = [s for s in skills if s not in announced]
        if adding:
            announce_skills(run.producer, adding)
            run.sync()
            run.say(f"  announced {len(adding)} skills: {', '.join(adding)}")
    planned = {d for (i, stage), detail in run.state.done.items() if stage == "plan" for d in detail["decisions"]}
    con = run.open()
    try:
        bootstrap = [d for d in _bootstrap_decisions(con, run.config.experiment_id) if d not in planned]
    finally:
        con.close()
    previous = [] if iteration == 0 else run.state.detail(iteration - 1, "curriculum").get("decisions", [])
    # Each iteration records the settings and code it runs with, for the report (a resumed run may be
    # given more iterations, or a new commit); the experiment's start also its identity, checked on resume.
    config = run.recorded_config or dataclasses.asdict(run.config)
    detail = {"announced": adding, "bootstrap": bootstrap, "decisions": bootstrap + previous, "config": config, **code()}
    return {**detail, "experiment": run.config.identity()} if iteration == 0 else detail


def collect(run, iteration: int) -> dict:
    return run.collect(run.state.detail(iteration, "plan")["decisions"], "collecting")


def relabel(run, iteration: int) -> dict:
    from consumers.lake_sink.sink import land
    from learner.relabel import relabel as relabel_lake
    from learner.relabel import resolve

    con = run.open()
    try:
        skills = experiment_skills(con, run.config.experiment_id)
        evaluations = [d for d, why in lake_state.purposes(con, run.config.experiment_id).items() if why == "eval"]
    finally:
        con.close()
    functions = resolve(sorted({_reward_spec(s) for s in skills}))
    # Training data is what the collections gathered: evaluation episodes stay out of it.
    where = f"experiment_id = '{run.config.experiment_id}'" + (
        f" AND decision_id NOT IN ({', '.join(repr(d) for d in evaluations)})" if evaluations else "")
    stats = relabel_lake(run.settings, functions, where=where, dataset=run.dataset, land=land)
    return {"dataset": run.dataset, "functions": [f.spec for f in functions], "rows": stats.rows,
            "episodes": stats.episodes}


def train(run, iteration: int) -> dict:
    request = train_request(run, iteration)
    if run.config.external_learner:
        return external.await_learner(run, iteration, request)
    with learner_lock(run.settings, run.config.experiment_id, lambda path: StageFailed(
            "a `robolake learn` process serves this experiment: run with --external-learner, or stop it")):
        return train_to(run, request)


def learner_lock(settings, experiment_id: str, refused=None):
    """Held by whoever trains the experiment's PAC run: one trainer at a time (`refused(path)`, or
    LockHeld, if another holds it)."""
    from infra.lake_catalog import only_one

    return only_one(settings, f"learn-{experiment_id}", refused)


def train_request(run, iteration: int) -> dict:
    """What the train stage asks of the learner, in this process or another (`robolake learn`)."""
    target = (run.state.detail(iteration - 1, "train")["step"] if iteration else 0) + run.config.train_steps
    return {"run_id": run.run_id, "dataset": run.dataset, "model": run.config.model, "alpha": run.config.alpha,
            "seed": run.config.seed, "target": target, "train_steps": run.config.train_steps}


def train_to(run, request: dict) -> dict:
    """Train the request's PAC run up to its target step, resumed from its checkpoint."""
    from consumers.lake_sink.sink import sink_in_process
    from learner.checkpoints import CheckpointStore, only_trainer
    from learner.pac.config import get_config
    from learner.train import TrainingError
    from learner.train import train as train_pac

    config = get_config(request["model"])
    if request["alpha"] is not None:
        config = config.replace(alpha=request["alpha"])
    run_id, target, every = request["run_id"], request["target"], request["train_steps"]
    # One trainer per run: a `robolake train --run-id` of this very run makes the stage fail (and retry).
    with only_trainer(run.settings, run_id, StageFailed), run.bar(target, "training", "step") as bar:
        con = run.open()
        try:
            sent = lake_state.metrics_sent_until(con, run.config.experiment_id, run_id)
        finally:
            con.close()
        latest = CheckpointStore(run.settings, run_id).latest_step()
        bar.update(min(target, latest or 0))
        try:
            done = train_pac(run.settings, config, request["dataset"], steps=target, run_id=run_id,
                             experiment_id=run.config.experiment_id, device=run.config.device,
                             resume=latest is not None, seed=request["seed"],
                             checkpoint_every=max(1, every // 2), metrics_every=max(1, every // 10),
                             progress=bar.update, metrics_sent_until=sent,
                             before_checkpoint=lambda: sink_in_process(run.settings), captions=run.encoder,
                             schedule_from=target - every)
        except TrainingError as exc:
            raise StageFailed(f"training failed: {exc}") from exc
    return {"run_id": run_id, "step": done.steps, "checkpoint": done.checkpoint,
            "loss": (done.last_metrics or {}).get("policy_loss")}


def evaluate(run, iteration: int) -> dict:
    step = run.state.detail(iteration, "train")["step"]
    con = run.open()
    try:
        skills = experiment_skills(con, run.config.experiment_id)
    finally:
        con.close()
    rows = [_decision(run, stable_id(run.config.experiment_id, "eval", run.run_id, step, skill), skill,
                      f"pac:{run.run_id}", f"step-{step}", [], 0.0, run.config.eval_episodes, "eval",
                      f"evaluate {skill}") for skill in skills]
    run.send_decisions(rows)
    run.collect([r["decision_id"] for r in rows], "evaluating")
    ids = [r["decision_id"] for r in rows]
    con = run.open()
    try:
        found = dict(con.execute(
            "SELECT decision_id, [count_if(task_success), count(*)] FROM episodes WHERE decision_id IN "
            f"({', '.join('?' * len(ids))}) GROUP BY ALL", ids).fetchall()) if ids else {}
    finally:
        con.close()
    success = {r["skill_sequence"][-1]: found.get(r["decision_id"], [0, 0]) for r in rows}
    return {"policy": f"pac:{run.run_id}", "version": f"step-{step}", "success": success, "decisions": ids}


def summaries(run, iteration: int) -> dict:
    from consumers.summaries.summaries import emit_summaries

    con = run.open()
    try:
        sent = emit_summaries(con, run.producer, run.config.experiment_id)
    finally:
        con.close()
    return {"sent": len(sent)}


def analysis(run, iteration: int) -> dict:
    from consumers.analysis.analysis import emit_verdicts, judge_run, run_curves

    con = run.open()
    try:
        rows = judge_run(run_curves(con, run.config.experiment_id, run.run_id), seed=run.config.seed)
        emit_verdicts(con, run.producer, rows)
    finally:
        con.close()
    # `stop` comes only from evaluated success (judge_run), never from the loss.
    stop = next((r["rationale"] for r in rows if r["verdict"] == "stop"), None)
    return {"verdicts": {r["skill_id"]: r["verdict"] for r in rows if r["verdict"] != "stop"}, "stop": stop}


def curriculum(run, iteration: int) -> dict:
    if run.config.collection == "random":
        return _random_round(run, iteration)
    result = run.curriculum_round(_actor(run, iteration), policy=f"pac:{run.run_id}",
                                  version=f"step-{run.state.detail(iteration, 'train')['step']}")
    if result.failed:
        raise StageFailed(f"every model call of the curriculum round failed ({len(result.failures)}); the last: "
                          f"{result.failures[-1]}")
    return {"decisions": [d.decision_id for d in result.decisions], "proposals": len(result.proposals),
            "missing": [m.step for m in result.missing], "calls": result.calls}


STAGES = {"plan": plan, "collect": collect, "relabel": relabel, "train": train, "eval": evaluate,
          "summaries": summaries, "analysis": analysis, "curriculum": curriculum}


# --- helpers -------------------------------------------------------------------------------------

def _actor(run, iteration: int):
    """Who acts in the next iteration's decisions: the latest checkpoint, or the scripted expert,
    clean, on the whole task when the checkpoint was not trained on one of its skills (announced
    since) or its evaluation found it cannot do one yet (below EXPERT_BELOW): its own attempts there
    would be failures that teach little, and the expert's skills hand over only to each other (its
    place after the policy's lift succeeded in 14 of 64 episodes of an unattended run)."""
    trained = set(run.state.detail(iteration, "relabel").get("functions", []))
    step = run.state.detail(iteration, "train")["step"]
    evaluated = run.state.detail(iteration, "eval").get("success", {})
    unable = {s for s, (wins, n) in evaluated.items() if n and wins / n < EXPERT_BELOW}

    def actor(sequence) -> dict:
        if any(_reward_spec(s) not in trained or s in unable for s in sequence):
            return {"policy_id": EXPERT, "policy_version": "1", "expert_skills": list(sequence), "noise": 0.0}
        return {"policy_id": f"pac:{run.run_id}", "policy_version": f"step-{step}", "expert_skills": [],
                "noise": 0.0}
    return actor


def _random_round(run, iteration: int) -> dict:
    from producers.sim.skills import LIBRARY

    actor = _actor(run, iteration)
    rows = []
    for k, skill in enumerate(random_skills(list(LIBRARY), run.config.seed, iteration, run.config.max_tasks)):
        fields = actor(task_for(skill))
        rows.append(_decision(run, stable_id(run.config.experiment_id, "random", iteration, k, skill), skill,
                              fields["policy_id"], fields["policy_version"], fields["expert_skills"], 0.0,
                              run.config.episodes_per_decision, "random", f"random skill: {skill}"))
    run.send_decisions(rows)
    return {"decisions": [r["decision_id"] for r in rows], "proposals": 0, "missing": [], "calls": 0}


def random_skills(skills: list[str], seed: int, iteration: int, count: int) -> list[str]:
    """The random arm's `count` draws of round `iteration`: uniform over `skills` (everything the
    curriculum may come to propose: the whole built-in library, the held-out task and its parts
    included), dealt from seeded shuffled decks, so each skill comes up once before any comes up
    twice. Each draw is still uniform; the deck only keeps a short run from missing a skill by
    chance (12 independent draws from 18 skills miss a given one half the time)."""
    import numpy as np

    drawn = []
    for position in range(iteration * count, (iteration + 1) * count):
        deck, place = divmod(position, len(skills))
        drawn.append(skills[np.random.default_rng([seed, deck]).permutation(len(skills))[place]])
    return drawn


def _bootstrap(run, skill: str, noise: float) -> dict:
    # Half as many noisy episodes: demonstrations that fail teach little, a few show recoveries.
    episodes = run.config.bootstrap_episodes if noise == 0 else max(1, run.config.bootstrap_episodes // 2)
    version = "1" if noise == 0 else f"1+noise{noise:g}"
    return _decision(run, stable_id(run.config.experiment_id, "bootstrap", skill, noise), skill, EXPERT, version,
                     list(task_for(skill)), noise, episodes, "bootstrap",
                     f"bootstrap {skill} ({'expert' if noise == 0 else f'expert, noise {noise}'})")


def _decision(run, decision_id, skill, policy_id, policy_version, expert_skills, noise, episodes, purpose,
              task) -> dict:
    from producers.episode_writer import utc_now

    return {"decision_id": decision_id, "experiment_id": run.config.experiment_id, "proposal_id": None, "task": task,
            "skill_sequence": list(task_for(skill)), "episodes": episodes, "time": utc_now(), "steps": None,
            "call_id": None, "policy_id": policy_id, "policy_version": policy_version,
            "expert_skills": list(expert_skills), "noise": noise, "purpose": purpose}


def code() -> dict:
    """The code running: its git commit (`-dirty` with uncommitted changes; None outside a checkout)
    and robolake's version."""
    import subprocess
    from pathlib import Path

    from schemas.version import VERSION

    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"commit": commit, "version": VERSION}


def _reward_spec(skill: str) -> str:
    from producers.sim.skills import get_skill

    name, version = get_skill(skill).reward
    return f"{name}@{version}"


def _bootstrap_decisions(con, experiment_id: str) -> list[str]:
    return [r["decision_id"] for r in lake_state.decision_rows(con, experiment_id) if r.get("purpose") == "bootstrap"]


def experiment_skills(con, experiment_id: str) -> list[str]:
    """The skills the experiment practises: those of its decisions (its base skills, those grown for
    it, those its curriculum chose), in library order. Relabelled, trained on and evaluated."""
    from producers.sim.skills import LIBRARY

    skills = {s for r in lake_state.decision_rows(con, experiment_id) if r.get("purpose") != "eval"
              for s in r["skill_sequence"]}
    return [s for s in LIBRARY if s in skills]
