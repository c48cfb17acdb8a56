"""`robolake learn`: the learner of `robolake run --external-learner`, as its own process.

It follows the run's state in the lake (state.py). A train stage of the run records a `requested`
event (the run id, dataset, model, alpha, seed and target step); the learner trains that run up to
the target, resumed from its checkpoint, with the same code as a run that trains in-process
(stages.train_to); the run waits for the checkpoint. A training failure (a NaN loss, an empty
dataset, a bad checkpoint) is recorded as a failed `learn` event naming the request, so the run
retries with backoff (a new request) or stops with the reason. A SIGKILL loses nothing: the request
stays open until the run records its stage done, and training resumes from the last checkpoint
once the lake has caught up with the log (so no metric is sent twice).

It reads training data through the lake's catalog, so it runs where the catalog is (the machine of
the lake sink). One trainer per experiment and lake: this process, or a run training in-process,
holds the experiment's learner lock.
"""

from __future__ import annotations

import time

from robolake.experiment import stages
from robolake.experiment.errors import AlreadyRunning, StageFailed
from robolake.experiment.loop import Run, RunConfig, interrupted, retryable
from robolake.experiment.state import LEARN, load_state


def serve(settings, experiment_id: str, device: str = "auto", say=print, poll_s: float = 2.0,
          until_idle_s: float | None = None, bars: bool = True) -> int:
    """Serve the experiment's train requests until stopped (or `until_idle_s` without one); returns
    how many it trained."""
    try:
        with stages.learner_lock(settings, experiment_id, lambda path: AlreadyRunning(
                f"another learner trains experiment {experiment_id!r} on {settings.lake_root} (a `robolake learn`, "
                "or a `robolake run` without --external-learner)")):
            return _serve(settings, experiment_id, device, say, poll_s, until_idle_s, bars)
    except Exception as exc:
        if interrupted(exc):  # Ctrl-C inside DuckDB comes back wrapped
            raise KeyboardInterrupt from exc
        raise


def _serve(settings, experiment_id, device, say, poll_s, until_idle_s, bars) -> int:
    run = Run(settings, RunConfig(experiment_id, device=device), say=say, bars=bars)
    trained, handled, idle_since, waiting = 0, set(), time.monotonic(), None
    try:
        while True:
            try:
                todo = _open_requests(run, handled)
                if todo:
                    run.sync()  # what an earlier life of this learner sent is in the lake: no metric twice
                    todo = _open_requests(run, handled)
            except (*retryable(), *_not_ready()) as exc:
                if interrupted(exc):
                    raise
                if str(exc) != waiting:
                    say(f"  the lake or the log is not ready ({exc}); looking again every {poll_s:g}s")
                    waiting = str(exc)
                todo = []
            if todo:
                request = todo[-1]  # the newest: an older open one is an attempt the run gave up on
                handled.update(r["stage_id"] for r in todo)
                trained += _train(run, request)
                idle_since = time.monotonic()
            elif until_idle_s is not None and time.monotonic() - idle_since > until_idle_s:
                return trained
            else:
                time.sleep(poll_s)
    finally:
        run.close()


def _open_requests(run, handled: set) -> list[dict]:
    con = run.open()
    try:
        state = load_state(con, run.config.experiment_id)
    finally:
        con.close()
    return [r for r in state.open_requests() if r["stage_id"] not in handled]


def _train(run, request: dict) -> int:
    """Train one request; 1 if it trained, 0 if there was nothing to do or it failed (recorded)."""
    from learner.checkpoints import CheckpointError, CheckpointStore
    from learner.pac.learning import DeviceUnavailable

    detail, iteration = request["detail"], request["iteration"]
    if (CheckpointStore(run.settings, detail["run_id"]).latest_step() or 0) >= detail["target"]:
        return 0  # trained already; the run has not recorded it yet
    run.say(f"[iteration {iteration + 1}] training {detail['run_id']} to step {detail['target']} (dataset "
            f"{detail['dataset']}, {detail['model']}, request attempt {request['attempt']})")
    started = time.monotonic()
    try:
        done = stages.train_to(run, detail)
    except (StageFailed, CheckpointError, DeviceUnavailable, ValueError) as exc:
        run.record(iteration, LEARN, "failed", {"request": request["stage_id"], "error": str(exc)}, request["attempt"])
        run.say(f"  failed (the run is told): {exc}")
        return 0
    run.say(f"  checkpoint of step {done['step']} in {time.monotonic() - started:.1f}s: {done['checkpoint']}")
    return 1


def _not_ready() -> tuple[type[BaseException], ...]:
    """Errors of a lake that is not there yet (the sink creates it) or not reachable for now."""
    import duckdb

    from infra.lake_catalog import LakeNotFound

    return LakeNotFound, duckdb.IOException
