"""PAC's objective: a distributional TD critic and a KL-regularised policy (BC + improvement).

- Critic: categorical returns on a fixed support (C51 projection). The target is
  r + discount * Z_target(s', a') with a' sampled from the policy at s', the target
  distributions of the sampled actions averaged (a mixture), then projected; a step that reaches
  its skill's goal ends the task at the highest return, 1 / (1 - discount).
- Policy: alpha * BC (cross-entropy against the dataset action two-hot over its bins, over the samples
  whose action demonstrates their caption: `imitate`) + (1 - alpha) *
  improvement: sample K actions from the policy, weight them by softmax(Q / eta) under the
  critic, and raise their likelihood (MPO's E-step; eta from its dual, config.eta_epsilon). alpha = 1 is BC, and
  trains no critic.
"""

from __future__ import annotations

import math

import torch

from learner.pac.config import PACConfig


def bin_centres(config: PACConfig, device=None) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, config.action_bins, device=device)


def support(config: PACConfig, device=None) -> torch.Tensor:
    return torch.linspace(config.v_min, config.v_max, config.return_bins, device=device)


def two_hot(actions: torch.Tensor, config: PACConfig) -> torch.Tensor:
    """(..., A) actions in [-1, 1] -> (..., A, bins): each value split between its two neighbouring
    bins so that the distribution's mean is the value itself. Cross-entropy against it teaches the
    policy the exact action (the expert's last fractional step onto a goal), not just the nearest
    bin, and `mean_action` reads it back."""
    scaled = (actions.clamp(-1, 1) + 1) / 2 * (config.action_bins - 1)
    low = scaled.floor().clamp(max=config.action_bins - 2)
    high_weight = (scaled - low).unsqueeze(-1)
    out = torch.zeros(*actions.shape, config.action_bins, device=actions.device)
    out.scatter_(-1, low.long().unsqueeze(-1), 1 - high_weight)
    out.scatter_add_(-1, low.long().unsqueeze(-1) + 1, high_weight)
    return out


def mean_action(logits: torch.Tensor, config: PACConfig) -> torch.Tensor:
    """The policy's expected action per dimension: (B, A, bins) -> (B, A)."""
    return (logits.softmax(-1) * bin_centres(config, logits.device)).sum(-1)


def sample_actions(logits: torch.Tensor, k: int, config: PACConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """K actions per state from per-dimension categoricals: (bins (B, K, A), actions (B, K, A))."""
    probs = logits.softmax(-1)                                    # (B, A, bins)
    b, a, n = probs.shape
    bins = torch.multinomial(probs.reshape(b * a, n), k, replacement=True).view(b, a, k).transpose(1, 2)
    return bins, bin_centres(config, logits.device)[bins]


def log_prob(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """log pi(bins) summed over action dimensions; logits (B, A, n), bins (B, K, A) -> (B, K)."""
    logp = logits.log_softmax(-1).unsqueeze(1).expand(-1, bins.shape[1], -1, -1)   # (B, K, A, n)
    return logp.gather(-1, bins.unsqueeze(-1)).squeeze(-1).sum(-1)


def project(target_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
            config: PACConfig) -> torch.Tensor:
    """C51: the distribution of r + discount * Z on the fixed support. (B, n) -> (B, n)."""
    z = support(config, target_probs.device)
    dz = (config.v_max - config.v_min) / (config.return_bins - 1)
    tz = (rewards[:, None] + discounts[:, None] * z[None]).clamp(config.v_min, config.v_max)
    pos = (tz - config.v_min) / dz
    low, high = pos.floor().long(), pos.ceil().long()
    out = torch.zeros_like(target_probs)
    w_high = pos - low
    w_low = 1 - w_high
    out.scatter_add_(1, low, target_probs * w_low)
    out.scatter_add_(1, high, target_probs * w_high)
    return out


def expected(logits: torch.Tensor, config: PACConfig) -> torch.Tensor:
    return (logits.softmax(-1) * support(config, logits.device)).sum(-1)


def goal_return(config: PACConfig) -> float:
    """The return of a reached goal: the most a step pays (1: rewards are in [0, 1]) for ever after."""
    return 1 / (1 - config.discount)


def critic_target(target, batch: dict[str, torch.Tensor], config: PACConfig) -> torch.Tensor:
    """The return distribution the critic learns for each sample, (B, return_bins).

    Reaching a skill's goal ends its task (discount 0) and is worth the most a state can be,
    `goal_return`. Without that, a shaped reward (reach: exp(-distance)) is worth more hovering
    near the goal for ever than arriving, which ends the reward, and the critic learns to avoid
    success (learning_quality in benchmarks/README.md)."""
    z_next = target.encode(batch["next_observation"], batch["caption"], batch.get("caption_index"))
    _, next_actions = sample_actions(target.policy_logits(z_next), config.sampled_actions, config)
    next_probs = target.q_logits(z_next, next_actions).softmax(-1).mean(1)                # (B, n)
    goal = torch.full_like(batch["reward"], goal_return(config))
    paid = batch["reward"] if config.shaped_rewards else torch.zeros_like(batch["reward"])
    rewards = torch.where(batch["success"] > 0, goal, paid)
    return project(next_probs, rewards, config.discount * batch["discount"], config)


def critic_loss(model, target, batch: dict[str, torch.Tensor], z: torch.Tensor,
                config: PACConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the critic's return distribution for the dataset actions against the target,
    and those logits (B, return_bins). It shapes the state encoding `z` only if the config says so."""
    with torch.no_grad():
        target_probs = critic_target(target, batch, config)
    z_critic = z if config.critic_shapes_encoder else z.detach()
    q_data = model.q_logits(z_critic, batch["action"].unsqueeze(1))[:, 0]
    return -(target_probs * q_data.log_softmax(-1)).sum(-1).mean(), q_data


def pac_losses(model, target, batch: dict[str, torch.Tensor], config: PACConfig) -> tuple[torch.Tensor, dict]:
    """The total loss and its parts for one batch (observation, caption, action, reward,
    next_observation, discount, success: the step reached its skill's goal, imitate; optional
    caption_index: then caption holds the distinct captions, networks.py)."""
    obs, caption, action = batch["observation"], batch["caption"], batch["action"]
    k = config.sampled_actions
    z = model.encode(obs, caption, batch.get("caption_index"))
    policy = model.policy_logits(z)
    zero = torch.zeros((), device=obs.device)

    # Critic: distributional TD with the target network (none for BC, alpha = 1: nothing reads it).
    critic, q_mean = zero, zero
    if config.alpha < 1.0:
        critic, q_data = critic_loss(model, target, batch, z, config)
        q_mean = expected(q_data.detach(), config).mean()

    # Policy: BC on the dataset action + improvement against the critic.
    # BC only where the dataset action demonstrates the caption (hindsight: its commanded segment
    # goes on to achieve that skill); every sample still trains the critic and the improvement.
    imitate = batch["imitate"]
    nll = -(two_hot(action, config) * policy.log_softmax(-1)).sum(-1).sum(-1)
    bc_loss = (nll * imitate).sum() / imitate.sum().clamp(min=1.0)
    improve_loss, eta_loss, eta = zero, zero, torch.tensor(config.eta)
    if config.alpha < 1.0:
        with torch.no_grad():
            bins, actions = sample_actions(policy, k, config)
            q = expected(model.q_logits(z.detach(), actions), config)                      # (B, K)
        if config.eta_epsilon > 0:  # MPO's dual: the eta whose reweighting moves the policy by KL epsilon
            eta = model.log_eta.exp().clamp_min(1e-3)
            eta_loss = eta * config.eta_epsilon + eta * (torch.logsumexp(q / eta, -1) - math.log(k)).mean()
        weights = (q / eta.detach()).softmax(-1)
        improve_loss = -(weights * log_prob(policy, bins)).sum(-1).mean()
    policy_loss = config.alpha * bc_loss + (1 - config.alpha) * improve_loss
    entropy = -(policy.softmax(-1) * policy.log_softmax(-1)).sum(-1).sum(-1).mean()
    metrics = {"critic_loss": critic.detach(), "bc_loss": bc_loss.detach(),
               "improve_loss": improve_loss.detach(), "policy_loss": policy_loss.detach(),
               "q_mean": q_mean, "entropy": entropy.detach(), "eta": eta.detach()}
    return critic + policy_loss + eta_loss, metrics
