"""`robolake train`: PAC from the lake — relabelled batches in, metrics events and checkpoints out.

Every `metrics_every` steps the losses, Q, entropy and samples/s go onto the learner topic as
`learner.metrics` events (they land in the lake like every event); every `checkpoint_every` steps
and at the end a checkpoint is written atomically to the lake. `resume` continues from the run's
latest checkpoint. A non-finite loss stops training; the last good checkpoint stays `latest`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainRun:
    run_id: str
    experiment_id: str
    steps: int = 0
    checkpoint: str | None = None
    last_metrics: dict | None = None


def train(settings, config, dataset: str, steps: int, run_id: str, experiment_id: str = "default",
          device: str = "auto", resume: bool = False, seed: int = 0, checkpoint_every: int = 500,
          metrics_every: int = 50, conditioning: str = "hindsight", successful_only: bool = False,
          skills: tuple[str, ...] | None = None, progress=None, metrics_sent_until: int = 0,
          before_checkpoint=None, captions=None, schedule_from: int = 0) -> TrainRun:
    """Train `steps` steps. A resumed run repeats the steps after its checkpoint: their metrics up
    to `metrics_sent_until` are already on the log and are not sent again. `before_checkpoint()`
    runs before each checkpoint is written (`robolake run` on the in-process bus: sink the metrics
    first, so no checkpoint is ever ahead of the metrics in the lake). `captions`: a CaptionEncoder
    already loaded (default: a new one). `schedule_from`: the step the learning rate's cosine starts
    from (`robolake run` trains each iteration from its previous target: a warm restart, so the
    data each iteration adds is learned at a useful rate, not at the tail of one long decay)."""
    import numpy as np

    from infra.bus.backend import open_bus
    from learner.captions import CaptionEncoder
    from learner.checkpoints import CheckpointStore
    from learner.dataset import DatasetConfig
    from learner.pac.learning import PACLearner
    from learner.symmetry import ColourSymmetry

    store = CheckpointStore(settings, run_id)
    state = store.load_latest() if resume else None
    if resume and state is None:
        raise TrainingError(f"no checkpoint of run {run_id} in {settings.lake_root} to resume from")
    if state is not None:
        config = resumed_config(state["config"], config)
        _check_compatible(state["config"], config)
    learner = PACLearner(config, device=device, seed=seed)
    if learner.device.type == "cpu":
        import torch

        torch.set_num_threads(settings.torch_threads)
    run = TrainRun(run_id, experiment_id)
    if state is not None:
        learner.load_state_dict(state["learner"])
        run.steps = learner.steps
        log.info("resumed run %s at step %d", run_id, run.steps)
    try:  # an empty dataset is an error before training starts
        data = training_data(settings, config, DatasetConfig(
            dataset=dataset, batch_size=config.batch_size, epochs=None, seed=seed + run.steps,
            conditioning=conditioning, functions=tuple(skills) if skills else None,
            successful_only=successful_only, achieved_boost=config.achieved_boost,
            observation_version=config.observation_version))
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    if state is not None and set(lineage_functions(data)) - set(state.get("lineage", {}).get("functions", [])):
        # Skills the input statistics never saw (a library grown since): they are set again from
        # the next batch, or the new skills' captions and states stay outside the normaliser's range.
        learner.forget_normalizer()
        log.info("run %s: new skills since its normaliser was set; it is set again", run_id)
    captions = captions or CaptionEncoder()
    symmetry = ColourSymmetry(data.functions, config.observation_version) if config.colour_symmetry else None
    rng = np.random.default_rng([seed, run.steps])
    producer = open_bus(settings).producer()
    lineage = {"dataset": dataset, "functions": lineage_functions(data),
               "conditioning": conditioning, "successful_only": successful_only,
               "lake": settings.lake_root}
    try:
        for batch in data:
            if run.steps >= steps:
                break
            if symmetry is not None:
                batch = symmetry.apply(batch, data.captions, rng)
            batch = dict(batch, caption=captions.encode(list(batch["caption"])))
            try:
                metrics = learner.step(batch, lr_scale=cosine(run.steps - schedule_from, steps - schedule_from))
            except FloatingPointError as exc:
                raise TrainingError(f"{exc}; stopped, the last good checkpoint is {run.checkpoint or 'none'}") from exc
            run.steps, run.last_metrics = learner.steps, metrics
            if (run.steps % metrics_every == 0 or run.steps == steps) and run.steps > metrics_sent_until:
                _send_metrics(producer, run, metrics)
            if run.steps % checkpoint_every == 0 or run.steps == steps:
                if before_checkpoint is not None:
                    producer.flush()
                    before_checkpoint()
                run.checkpoint = store.save(run.steps, _state(learner, config, lineage))
            if progress is not None:
                progress(1)
    finally:
        data.close()
        producer.close()
    if run.steps < steps:  # an endless dataset ends only when it has nothing to read
        hint = ""
        if conditioning == "hindsight" and config.demo_fraction > 0:
            hint = ("; PAC's BC term trains on demonstrations (a commanded segment's steps up to a skill's first "
                    "success in it): does any episode achieve one of the dataset's skills? (--demo-fraction 0 "
                    "trains without them)")
        raise TrainingError(f"dataset {dataset!r} ran out after {run.steps} steps{hint}")
    return run


def lineage_functions(data) -> list[str]:
    return [f"{n}@{v}" for n, v in data.functions]


def cosine(step: int, steps: int) -> float:
    """The learning rate's share at `step` of a run of `steps`: 1 decaying to 0 on a half cosine (the
    schedule of the small reference learner that reached 0.95 on clean data, issue 22). `train`
    counts both from its `schedule_from`."""
    import math

    return 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))


def training_data(settings, config, data):
    """The lake dataset PAC trains on (a DatasetConfig): under hindsight conditioning with a
    `demo_fraction`, each batch is that share of demonstrations, then samples of every skill."""
    from learner.dataset import LakeDataset, Mixture

    if not 0 <= config.demo_fraction <= 1:
        raise ValueError(f"demo_fraction must be in [0, 1], got {config.demo_fraction!r}")
    demos = int(data.batch_size * config.demo_fraction + 0.5) if data.conditioning == "hindsight" else 0
    if demos == 0:
        return LakeDataset(settings, data)
    shown = LakeDataset(settings, dataclasses.replace(data, batch_size=demos, demonstrations_only=True))
    if demos == data.batch_size:
        return shown
    return Mixture(shown, LakeDataset(settings, dataclasses.replace(data, batch_size=data.batch_size - demos,
                                                              seed=data.seed + 7919)))


def _state(learner, config, lineage: dict) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        code = version("robolake")
    except PackageNotFoundError:
        code = "unknown"
    return {"learner": learner.state_dict(), "config": dataclasses.asdict(config), "lineage": lineage,
            "code_version": code}


def resumed_config(saved: dict, config):
    """The config a resumed run continues with. Under the same named config: the checkpoint's (a field
    it lacks means what `ABSENT_MEANS` says), so a run keeps its model and recipe when a default
    changes later, with the fields the caller set apart from that config's defaults (`--alpha`,
    `--no-colour-symmetry`). Under another name: the caller's, and `_check_compatible` names what differs."""
    from learner.pac.config import CONFIGS, PACConfig

    if saved.get("name") != config.name or config.name not in CONFIGS:
        return config.replace(**{k: v for k, v in config.ABSENT_MEANS.items() if k not in saved})
    named = CONFIGS[config.name]
    chosen = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if getattr(config, f.name) != getattr(named, f.name)}
    return PACConfig.from_dict(saved).replace(**chosen)


def _check_compatible(saved: dict, config) -> None:
    from learner.pac.config import PACConfig

    # A field the checkpoint lacks was added since (the model's inputs changed): "absent" != its value,
    # unless PACConfig.ABSENT_MEANS says what its absence meant.
    before = PACConfig.from_dict(saved)
    # The model's shape, and what its critic's bins mean (the same weights on another support or
    # discount would read as other returns).
    shape = ("observation_version", "torso", "critic", "step_features", "hidden", "layers", "film_dim",
             "critic_hidden", "d_model", "latents", "blocks", "heads", "ff_mult", "action_dim", "caption_dim",
             "action_bins", "relative_groups", "anchor_group", "normalize", "discount")
    if config.critic == "sampled":
        shape += ("return_bins", "v_min", "v_max")
    known = set(saved) | set(PACConfig.ABSENT_MEANS)
    wrong = [f"{k}: checkpoint {getattr(before, k) if k in known else 'absent'!r}, now {getattr(config, k)!r}"
             for k in shape if k not in known or getattr(before, k) != getattr(config, k)]
    if wrong:
        raise TrainingError("the checkpoint was trained with another model shape or critic: " + "; ".join(wrong))


def _send_metrics(producer, run: TrainRun, metrics: dict) -> None:
    from producers.episode_writer import utc_now
    from schemas import topics
    from schemas.codec import build
    from schemas.events import LEARNER_METRICS

    now = utc_now()
    rows = [{"experiment_id": run.experiment_id, "run_id": run.run_id, "step": run.steps, "name": name,
             "value": float(value), "skill_id": None, "time": now} for name, value in sorted(metrics.items())]
    producer.send(topics.LEARNER, run.experiment_id, build(LEARNER_METRICS, rows))
