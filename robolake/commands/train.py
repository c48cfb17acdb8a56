"""`robolake train`: the PAC learner on a relabelled dataset of the lake (learner/train.py)."""

from __future__ import annotations

import argparse
import sys
import uuid

from infra.settings import Settings
from robolake.commands.common import identifier, nonnegative_int, positive_int, usage_error


def register(commands, common) -> None:
    train = commands.add_parser(
        "train", parents=[common], help="train the PAC learner offline from the lake",
        description="Train a text-conditioned actor-critic with PAC's objective (a FiLM MLP on the CPU, the "
                    "paper's Perceiver on a GPU) on a relabelled dataset (`robolake relabel --name DATASET`): learner.metrics events go onto the learner topic, checkpoints "
                    "are written atomically to <lake>/checkpoints/<run id>/. --alpha 1 is behaviour cloning. "
                    "Example: robolake train --dataset default --config tiny --steps 2000")
    train.add_argument("--dataset", default="default", help="relabelled dataset name (default 'default')")
    from learner.pac.config import CONFIGS
    from schemas import observation

    train.add_argument("--config", default="tiny", choices=tuple(CONFIGS),
                       help="model: tiny (FiLM MLP, the CPU's; default), perceiver-tiny, small, base (the paper's "
                            "Perceiver, ~140M parameters, for a GPU)")
    train.add_argument("--observation-version", type=int, choices=tuple(observation.FIELDS), metavar="V",
                       help=f"the observation version the model reads (default {observation.CURRENT}, the current): "
                            "it trains on episodes of that version and later; 1 trains on lakes written before "
                            "the controller's set point was observed")
    train.add_argument("--alpha", type=float, metavar="A", help="BC weight in [0, 1] (default: the config's, 0.9)")
    train.add_argument("--steps", type=positive_int, default=1000, metavar="N", help="gradient steps (default 1000)")
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    train.add_argument("--run-id", type=identifier, metavar="ID", help="name of the run (default: a new id; with --resume: required)")
    train.add_argument("--resume", action="store_true", help="continue the run's latest checkpoint")
    train.add_argument("--experiment", type=identifier, default="default", help="experiment id of the metrics (default 'default')")
    train.add_argument("--checkpoint-every", type=positive_int, default=500, metavar="N", help="default 500")
    train.add_argument("--seed", type=nonnegative_int, default=0, help="default 0")
    train.add_argument("--skills", nargs="+", metavar="NAME[@VERSION]",
                       help="train on these relabelled reward functions only, a NAME alone at its latest version in "
                            "the dataset (default: the latest version of each function in it); one without rows "
                            "in the dataset is an error before training starts")
    train.add_argument("--conditioning", default="hindsight", choices=("hindsight", "commanded"),
                       help="caption per transition: a relabelled skill drawn per sample (hindsight, PAC's "
                            "multi-task way; default) or the skill the episode was commanded (as BC conditions)")
    train.add_argument("--successful-only", action="store_true",
                       help="with --conditioning commanded: only steps of skills the episode achieved (filtered BC)")
    train.add_argument("--demo-fraction", type=float, metavar="F",
                       help="with hindsight: the share of each batch drawn from demonstrations (a commanded "
                            "segment's steps up to a skill's first success in it), BC's data; 0: none, for data "
                            "that never succeeds (default: the config's, 0.5)")
    train.add_argument("--colour-symmetry", action=argparse.BooleanOptionalAction, default=None,
                       help="see every sample under a random permutation of the cubes' colours, its skill "
                            "recoloured with them (default: the config's, on); --no-colour-symmetry for data whose "
                            "colours are not interchangeable")
    train.set_defaults(run=run_train)


def run_train(args, settings: Settings) -> int:
    from tqdm import tqdm

    from infra.optional import require

    require("torch", "learner")
    from learner.pac.config import get_config
    from learner.train import train

    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
        return usage_error("train", f"--alpha must be in [0, 1], got {args.alpha}")
    if args.demo_fraction is not None and not 0.0 <= args.demo_fraction <= 1.0:
        return usage_error("train", f"--demo-fraction must be in [0, 1], got {args.demo_fraction}")
    if args.successful_only and args.conditioning != "commanded":
        return usage_error("train", "--successful-only filters by the commanded skill: add --conditioning commanded")
    if args.resume and not args.run_id:
        return usage_error("train", "--resume needs --run-id (the run to continue)")
    config = get_config(args.config)
    if args.alpha is not None:
        config = config.replace(alpha=args.alpha)
    if args.demo_fraction is not None:
        config = config.replace(demo_fraction=args.demo_fraction)
    if args.observation_version is not None:
        config = config.replace(observation_version=args.observation_version)
    if args.colour_symmetry is not None:
        config = config.replace(colour_symmetry=args.colour_symmetry)
    run_id = args.run_id or f"pac-{args.config}-{uuid.uuid4().hex[:8]}"
    from learner.checkpoints import only_trainer

    with only_trainer(settings, run_id), \
            tqdm(total=args.steps, unit="step", desc=f"training {run_id}", disable=None, file=sys.stderr) as bar:
        run = train(settings, config, args.dataset, args.steps, run_id, experiment_id=args.experiment,
                    device=args.device, resume=args.resume, seed=args.seed,
                    checkpoint_every=args.checkpoint_every, conditioning=args.conditioning,
                    successful_only=args.successful_only, skills=args.skills, progress=bar.update)
    from consumers.lake_sink.sink import sink_in_process

    sink_in_process(settings)
    metrics = run.last_metrics or {}
    print(f"trained run {run.run_id} to step {run.steps}: critic loss {metrics.get('critic_loss', float('nan')):.4f}, "
          f"policy loss {metrics.get('policy_loss', float('nan')):.4f}; checkpoint {run.checkpoint}")
    return 0
