"""`robolake learn`: the learner of `robolake run --external-learner`, as its own process (for
instance on a GPU machine, beside rollout workers elsewhere).

It follows the run's state in the lake (state.py). A train stage of the run records a `requested`
event (the run id, dataset, model, alpha, seed and target step); the learner trains that run up to
the target, resumed from its checkpoint, with the same code as a run that trains in-process
(stages.train_to); the run waits for the checkpoint. A training failure (a NaN loss, an empty
dataset) is recorded as a failed `learn` event naming the request, so the run retries with
backoff (a new request) or stops with the reason. A SIGKILL loses nothing: the request stays open
until the run records its stage done, and training resumes from the last checkpoint. One learner
per experiment and lake (a lock file beside the catalog).
"""

from __future__ import annotations

import time

from consumers.experiment import stages
from consumers.experiment.loop import AlreadyRunning, Run, RunConfig
from consumers.experiment.state import LEARN, load_state


def serve(settings, experiment_id: str, device: str = "auto", say=print, poll_s: float = 2.0,
          until_idle_s: float | None = None, bars: bool = True) -> int:
    """Serve the experiment's train requests until stopped (or `until_idle_s` without one); returns
    how many it trained."""
    from infra.lake_catalog import LockHeld, file_lock, lock_path

    path = lock_path(settings, f"learn-{experiment_id}")
    try:
        with file_lock(path, wait=False):
            return _serve(settings, experiment_id, device, say, poll_s, until_idle_s, bars)
    except LockHeld:
        raise AlreadyRunning(f"another `robolake learn` serves experiment {experiment_id!r} on {settings.lake_root} "
                             f"(lock {path})") from None


def _serve(settings, experiment_id, device, say, poll_s, until_idle_s, bars) -> int:
    from learner.checkpoints import CheckpointStore

    run = Run(settings, RunConfig(experiment_id, device=device), say=say, bars=bars)
    trained, handled, idle_since = 0, set(), time.monotonic()
    try:
        while True:
            con = run.open()
            try:
                state = load_state(con, experiment_id)
            finally:
                con.close()
            todo = [r for r in state.open_requests() if r["stage_id"] not in handled]
            if not todo:
                if until_idle_s is not None and time.monotonic() - idle_since > until_idle_s:
                    return trained
                time.sleep(poll_s)
                continue
            request = todo[-1]  # the newest: an older open one is an attempt the run gave up on
            handled.update(r["stage_id"] for r in todo)
            detail, iteration = request["detail"], request["iteration"]
            if (CheckpointStore(settings, detail["run_id"]).latest_step() or 0) >= detail["target"]:
                continue  # trained already; the run has not recorded it yet
            say(f"[iteration {iteration + 1}] training {detail['run_id']} to step {detail['target']} "
                f"(dataset {detail['dataset']}, {detail['model']})")
            started = time.monotonic()
            try:
                done = stages.train_to(run, detail)
            except stages.StageFailed as exc:
                run.record(iteration, LEARN, "failed", {"request": request["stage_id"], "error": str(exc)},
                            request["attempt"])
                say(f"  failed: {exc}")
            else:
                trained += 1
                say(f"  checkpoint of step {done['step']} in {time.monotonic() - started:.1f}s: {done['checkpoint']}")
            idle_since = time.monotonic()
    finally:
        run.close()
