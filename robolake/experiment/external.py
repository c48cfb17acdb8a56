"""On Kafka, other processes can do the run's work: the lake sink writes the log into the lake,
rollout workers (`robolake produce --from-decisions`) run the decisions, a learner (`robolake learn`)
trains. The run waits for them here, watching the lake, and fails a stage with why when one seems
to be missing."""

from __future__ import annotations

import json
import time

from consumers.curriculum.stages import stable_id
from robolake.experiment.errors import SinkBehind, StageFailed
from robolake.experiment.state import complete_seeds, load_state, metrics_sent_until


def wait_for_sink(run) -> None:
    """Until `robolake sink` has written every partition of the log into the lake up to the end
    offsets of this moment (SinkBehind after run.config.sink_timeout_s)."""
    from consumers.lake_sink.sink import SOURCE_TOPICS

    if run.offsets_reader is None:
        run.offsets_reader = run.bus.consumer(None, SOURCE_TOPICS)
    ends = {key: end for key, end in run.bus.log_end_offsets(SOURCE_TOPICS).items() if end > 0}
    logs = {t: run.offsets_reader.log_id(t) for t in {t for t, _ in ends}}
    deadline = time.monotonic() + run.config.sink_timeout_s
    while True:
        con = run.open()
        try:
            written = {(t, p): o for lg, t, p, o in con.execute(
                "SELECT _log, _topic, _partition, next_offset FROM lake_offsets").fetchall() if logs.get(t) == lg}
        finally:
            con.close()
        behind = {k: e for k, e in ends.items() if written.get(k, 0) < e}
        if not behind:
            return
        if time.monotonic() > deadline:
            raise SinkBehind(f"the lake has not caught up with {len(behind)} partitions of the log after "
                             f"{run.config.sink_timeout_s:.0f}s (e.g. {sorted(behind)[0]}): is `robolake sink` "
                             "running on this bus and lake?")
        time.sleep(0.5)


def wait_for_workers(run, todo: list[tuple[dict, list[int]]], bar) -> None:
    """The rollout service runs the decisions: wait until the lake holds their episodes."""
    ids = [row["decision_id"] for row, _ in todo]
    wanted = {row["decision_id"]: set(seeds) for row, seeds in todo}
    done, last_progress = 0, time.monotonic()
    while done < bar.total:
        time.sleep(2.0)  # each look opens the lake: a few hundred ms of CPU on S3
        con = run.open()
        try:
            found = complete_seeds(con, ids)
        finally:
            con.close()
        now = sum(len(wanted[d] & found[d]) for d in ids)
        if now > done:
            bar.update(now - done)
            done, last_progress = now, time.monotonic()
        elif time.monotonic() - last_progress > run.config.external_timeout_s:
            raise StageFailed(
                f"no new episode of the run's decisions in {run.config.external_timeout_s:.0f}s ({done} of "
                f"{bar.total} done): are rollout workers serving them (robolake produce --from-decisions "
                f"--experiment {run.config.experiment_id})?")


def await_learner(run, iteration: int, request: dict) -> dict:
    """The learner is another process (`robolake learn`): ask it with a `requested` train event,
    then wait until the run's checkpoint reaches the target step, or the learner says it failed."""
    from learner.checkpoints import CheckpointStore

    # The id names what is asked: a restart with other --train-steps or --alpha asks anew.
    request_id = stable_id(run.stage_id(iteration, "train", "requested", run.attempt),
                           json.dumps(request, sort_keys=True))
    if request_id not in {r["stage_id"] for r in run._load().requests}:  # not sent before a kill
        run.record(iteration, "train", "requested", request, run.attempt, stage_id=request_id)
    store, target = CheckpointStore(run.settings, request["run_id"]), request["target"]
    last_progress = time.monotonic()
    with run.bar(target, "training (robolake learn)", "step") as bar:
        while True:
            con = run.open()
            try:
                failed = load_state(con, run.config.experiment_id).learner_failures.get(request_id)
                metrics = metrics_sent_until(con, run.config.experiment_id, request["run_id"])
            finally:
                con.close()
            if failed:
                raise StageFailed(f"the learner failed: {failed}")
            checkpoint = store.latest_step() or 0
            if min(max(checkpoint, metrics), target) > bar.n:  # progress: its metrics, its checkpoints
                bar.update(min(max(checkpoint, metrics), target) - bar.n)
                last_progress = time.monotonic()
            if checkpoint >= target:  # (beyond it: an older request asked for more)
                break
            if time.monotonic() - last_progress > run.config.external_timeout_s:
                raise StageFailed(
                    f"no training progress in {run.config.external_timeout_s:.0f}s (step {bar.n} of {target}): "
                    f"is a learner serving the run (robolake learn --experiment {run.config.experiment_id})?")
            time.sleep(2.0)
    return {"run_id": request["run_id"], "step": checkpoint, "learner": "external",
            "checkpoint": store.url(checkpoint)}
