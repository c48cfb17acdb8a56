"""Parallel rollout workers: W worker processes (threads on the in-process bus, which lives in one
process) that run episodes and stream them, or serve `curriculum.decision` events (the
embodiment module): each decision's skill sequence is run for its number of episodes, and the
decision's offset is committed only after those episodes are on the bus. A worker keeps its
partitions while it runs a decision (Consumer.held: the episodes outlast Kafka's poll interval),
and a rebalance meanwhile only costs a second run of that decision, which the lake counts once
(infra/lake_sql.py: one episode per decision and seed). A worker serves every decision in one
environment (one compiled model, one renderer).

Ctrl-C stops every worker promptly (between two control steps): finished episodes are on the
bus, the running ones are abandoned without their end (the lake lists them as partial)."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable

from infra.settings import Settings
from producers.decisions import LoadLearned
from producers.rollout import RolloutConfig, run_episodes
from schemas import topics

log = logging.getLogger(__name__)

# How a worker process reports an expected failure: (exit code, one line), or None for a bug (its
# traceback). The command line gives its own rule (robolake/failures.py); without one, a traceback.
DescribeFailure = Callable[[BaseException], "tuple[int, str] | None"]


def produce_episodes(settings: Settings, config: RolloutConfig, episodes: int, workers: int, seed: int = 0,
                     progress=None, describe_failure: DescribeFailure | None = None) -> None:
    """`episodes` episodes (seeds seed, seed+1, …) split over `workers` workers."""
    seeds = list(range(seed, seed + episodes))
    jobs = [(settings, dataclasses.replace(config, worker_id=f"{config.worker_id}-{w}"), seeds[w::workers])
            for w in range(workers) if seeds[w::workers]]
    launch(_episodes_job, jobs, settings, progress, describe_failure)


def run_decision_seeds(settings: Settings, config: RolloutConfig, decision: dict, seeds: list[int], workers: int,
                       progress=None, load_learned: LoadLearned | None = None,
                       describe_failure: DescribeFailure | None = None) -> None:
    """These seeds of one decision (producers/decisions.py: it says who acts) split over `workers` workers."""
    jobs = [(settings, dataclasses.replace(config, worker_id=f"{config.worker_id}-{w}"), decision, seeds[w::workers],
             load_learned) for w in range(workers) if seeds[w::workers]]
    launch(_decision_seeds_job, jobs, settings, progress, describe_failure)


def serve_decisions(settings: Settings, config: RolloutConfig, workers: int, until_idle_s: float | None,
                    progress=None, experiment: str | None = None, load_learned: LoadLearned | None = None,
                    describe_failure: DescribeFailure | None = None) -> None:
    """Serve the curriculum's decisions (of one experiment, in a consumer group of its own, if given)."""
    jobs = [(settings, dataclasses.replace(config, worker_id=f"{config.worker_id}-{w}"), until_idle_s, experiment,
             load_learned) for w in range(workers)]
    launch(_decisions_job, jobs, settings, progress, describe_failure)


def _episodes_job(settings: Settings, config: RolloutConfig, seeds: list[int], report, stop=None) -> None:
    from infra.bus.backend import open_bus

    producer = open_bus(settings).producer()
    run_episodes(producer, config, seeds, progress=report, stop=stop)
    producer.close()


# A worker thread keeps its loaded policies from one decision to the next (a process starts afresh).
_THREAD_POLICIES: dict[tuple[str, str], object] = {}


def _decision_seeds_job(settings: Settings, config: RolloutConfig, decision: dict, seeds: list[int],
                        load_learned: LoadLearned | None, report, stop=None) -> None:
    from infra.bus.backend import open_bus
    from producers.decisions import Policies, run_decision

    if settings.bus != "memory" and (decision.get("policy_id") or "").startswith("pac:"):
        import torch

        torch.set_num_threads(1)  # the worker processes share the cores
    producer = open_bus(settings).producer()
    policies = _THREAD_POLICIES.setdefault((settings.lake_root, config.worker_id), Policies(settings, load_learned))
    try:
        run_decision(producer, decision, config, policies, seeds=seeds, progress=report, stop=stop)
    finally:
        producer.close()


def _decisions_job(settings: Settings, config: RolloutConfig, until_idle_s: float | None, experiment: str | None,
                   load_learned: LoadLearned | None, report, stop=None) -> None:
    from infra.bus.backend import open_bus
    from producers.decisions import Policies

    bus = open_bus(settings)
    producer = bus.producer()
    consumer = bus.consumer(f"rollout-workers-{experiment}" if experiment else "rollout-workers", [topics.CURRICULUM])
    policies = Policies(settings, load_learned)
    env = None  # made at the first decision, reused for every later one
    idle_since = time.monotonic()
    try:
        while (stop is None or not stop.is_set()) and (
                until_idle_s is None or time.monotonic() - idle_since < until_idle_s or consumer.lag() != 0):
            for delivery in consumer.poll(1.0, max_records=1):  # one at a time: each committed once done
                rows = [d for d in delivery.batch.rows() if experiment is None or d["experiment_id"] == experiment] \
                    if delivery.batch.type == "curriculum.decision" else []
                if rows:
                    if env is None:
                        from producers.sim.env import BlockStackingEnv

                        env = BlockStackingEnv()
                    with consumer.held():  # the episodes outlast the poll interval: keep our partitions meanwhile
                        _serve(producer, rows, config, policies, env, report, stop)
                if stop is not None and stop.is_set():
                    return  # uncommitted: the decision is served again by the next worker
                _done(consumer, delivery)
                idle_since = time.monotonic()
    finally:
        if env is not None:
            env.close()
        consumer.close()
        producer.close()


def _serve(producer, rows: list[dict], config: RolloutConfig, policies, env, report, stop) -> None:
    """Run these decisions' episodes; they are on the bus when this returns."""
    from producers.decisions import BadDecision, run_decision

    for decision in rows:
        log.info("running decision %s: %d episodes of %s", decision["decision_id"], decision["episodes"],
                 " -> ".join(decision["skill_sequence"]))
        try:
            run_decision(producer, decision, config, policies, env=env, progress=report, stop=stop)
        except BadDecision as exc:
            log.error("decision %s cannot be run, skipped: %s", decision["decision_id"], exc)
    producer.flush()


def _done(consumer, delivery) -> None:
    """Commit past a served message (its episodes are on the bus). If a rebalance gave its
    partition to another worker meanwhile, that worker may run it again: the lake counts each
    (decision, seed) once, so we only say so and carry on."""
    from infra.bus.interface import BusError

    where = (delivery.topic, delivery.partition)
    try:
        if where not in consumer.assignment():
            raise BusError("the partition was assigned to another worker")
        consumer.commit({where: delivery.offset + 1})
    except BusError as exc:
        log.warning("%s/%d@%d served, but not committed (%s); another worker may serve it again",
                    *where, delivery.offset, exc)
        return
    consumer.seek(*where, delivery.offset + 1)  # a rebalance meanwhile may have set us back to the commit


def launch(job, jobs: list[tuple], settings: Settings, progress,
           describe_failure: DescribeFailure | None = None) -> None:
    """Run `job(*args, report, stop)` once per args tuple: threads on the in-process bus, processes
    on Kafka (each reports an expected failure by `describe_failure`). Raises if any worker failed;
    KeyboardInterrupt (Ctrl-C) once every worker stopped."""
    report = progress or (lambda n: None)
    if settings.bus == "memory" or len(jobs) == 1:
        errors: list[BaseException] = []
        stop = threading.Event()

        def guarded(*args):
            try:
                job(*args, report, stop)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=args, daemon=True) for args in jobs]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # a bare join() would not see Ctrl-C until the thread ends
        except KeyboardInterrupt:
            stop.set()  # the workers stop between two steps and flush what finished
            for thread in threads:
                thread.join(60)  # a worker stops between two steps; wait out one in native code
            raise
        if errors:
            raise errors[0]
        return
    context = multiprocessing.get_context("spawn")  # MuJoCo and Kafka clients do not survive fork
    done = context.Queue()
    level = logging.getLogger().getEffectiveLevel()
    processes = [context.Process(target=_process_main, args=(job, args, done, level, describe_failure), daemon=False)
                 for args in jobs]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes) or not done.empty():
            try:
                report(done.get(timeout=0.5))
            except queue.Empty:
                pass
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: they stop after flushing what finished
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
        while not done.empty():
            report(done.get())
        raise
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise WorkersFailed(f"{len(failed)} of {len(processes)} workers failed (exit codes {failed}); "
                            "see their messages above")


class WorkersFailed(RuntimeError):
    pass


def _process_main(job, args: tuple, done, level: int = logging.WARNING,
                  describe_failure: DescribeFailure | None = None) -> None:
    import signal
    import sys

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if level > logging.DEBUG:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C reaches the whole process group
    try:
        job(*args, done.put, stop)
    except Exception as exc:  # one line, as the command itself would print it
        known = describe_failure(exc) if describe_failure is not None else None
        if known is None:
            raise
        print(f"robolake worker: {known[1]}", file=sys.stderr)
        sys.exit(known[0])
