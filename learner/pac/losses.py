"""PAC's objective: a TD critic and a KL-regularised policy (BC + improvement).

A step that reaches its skill's goal ends the task at the highest return, 1 / (1 - discount).
- Critic, factorised (config.critic): Q(s, a) = mean_d Q_d(s, a_d) over the policy's bins, a
  dataset action read between its two neighbouring bins; regressed on r + discount * E_{a' ~ pi(s')}
  Q_target(s', a'), an exact sum over bins.
- Critic, sampled: categorical returns on a fixed support (C51 projection). The target is
  r + discount * Z_target(s', a') with a' sampled from the policy at s', the target
  distributions of the sampled actions averaged (a mixture), then projected.
- Policy: alpha * BC (cross-entropy against the dataset action two-hot over its bins, over the samples
  whose action demonstrates their caption: `imitate`) + (1 - alpha) * improvement: K actions drawn
  from the policy, weighted by softmax(Q / eta), their likelihood raised (MPO's E-step; eta from its
  dual, config.eta_epsilon). alpha = 1 is BC, and trains no critic.
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


def q_values(model, z: torch.Tensor, actions: torch.Tensor, config: PACConfig) -> torch.Tensor:
    """Q of K candidate actions per state, (B, K, A) -> (B, K), under either critic."""
    if config.critic == "factorised":
        return (two_hot(actions, config) * model.q_bins(z)[:, None]).sum(-1).mean(-1)
    return expected(model.q_logits(z, actions), config)


def goal_rewards(batch: dict[str, torch.Tensor], config: PACConfig) -> torch.Tensor:
    """What each sample's step pays the critic: `goal_return` where it reached its skill's goal (and
    ends the task: its discount is 0), else the shaped reward or nothing (config.shaped_rewards).
    Without the goal's worth, a shaped reward (reach: exp(-distance)) is worth more hovering near the
    goal for ever than arriving, which ends the reward, and the critic learns to avoid success
    (learning_quality in benchmarks/README.md)."""
    goal = torch.full_like(batch["reward"], goal_return(config))
    paid = batch["reward"] if config.shaped_rewards else torch.zeros_like(batch["reward"])
    return torch.where(batch["success"] > 0, goal, paid)


def critic_target(target, batch: dict[str, torch.Tensor], config: PACConfig) -> torch.Tensor:
    """The sampled critic's target: the return distribution each sample learns, (B, return_bins)."""
    z_next = target.encode(batch["next_observation"], batch["caption"], batch.get("caption_index"))
    _, next_actions = sample_actions(target.policy_logits(z_next), config.sampled_actions, config)
    next_probs = target.q_logits(z_next, next_actions).softmax(-1).mean(1)                # (B, n)
    return project(next_probs, goal_rewards(batch, config), config.discount * batch["discount"], config)


def _temperature(model, config: PACConfig) -> torch.Tensor:
    return model.log_eta.exp().clamp_min(1e-3) if config.eta_epsilon > 0 else torch.tensor(config.eta)


def sampled_critic(model, target, batch: dict[str, torch.Tensor], z: torch.Tensor, policy: torch.Tensor,
                   config: PACConfig) -> dict[str, torch.Tensor]:
    """The distributional critic's loss (cross-entropy against the projected target; it shapes the
    state encoding `z` only if the config says so) and MPO's improvement over K sampled actions."""
    with torch.no_grad():
        target_probs = critic_target(target, batch, config)
    z_critic = z if config.critic_shapes_encoder else z.detach()
    q_data = model.q_logits(z_critic, batch["action"].unsqueeze(1))[:, 0]
    critic = -(target_probs * q_data.log_softmax(-1)).sum(-1).mean()
    with torch.no_grad():
        bins, actions = sample_actions(policy, config.sampled_actions, config)
        q = expected(model.q_logits(z.detach(), actions), config)                          # (B, K)
    return {"critic": critic, "q_mean": expected(q_data.detach(), config).mean(),
            **improvement(model, policy, bins, q, config)}


def improvement(model, policy: torch.Tensor, bins: torch.Tensor, q: torch.Tensor,
                config: PACConfig) -> dict[str, torch.Tensor]:
    """MPO's E-step over K actions drawn from the policy (bins (B, K, A), their Q (B, K)): raise their
    likelihood weighted by softmax(Q / eta), eta from the dual that keeps the reweighting within KL
    epsilon. Only actions the policy proposes are weighed: a critic's values for actions the data never
    shows are guesses (offline RL's out-of-distribution actions)."""
    eta = _temperature(model, config)
    eta_loss = eta * config.eta_epsilon + eta * (torch.logsumexp(q / eta, -1) - math.log(q.shape[-1])).mean()
    weights = (q / eta.detach()).softmax(-1)
    return {"improve": -(weights * log_prob(policy, bins)).sum(-1).mean(), "eta_loss": eta_loss, "eta": eta}


def factorised_critic(model, target, batch: dict[str, torch.Tensor], z: torch.Tensor, policy: torch.Tensor,
                      config: PACConfig) -> dict[str, torch.Tensor]:
    """The factorised critic's squared TD error (in units of the goal's return), its target's
    expectation under the target policy exact, and MPO's improvement over K sampled actions, whose Q
    are read from the bins' values (no network pass per action)."""
    with torch.no_grad():
        z_next = target.encode(batch["next_observation"], batch["caption"], batch.get("caption_index"))
        next_value = (target.policy_logits(z_next).softmax(-1) * target.q_bins(z_next)).sum(-1).mean(-1)
        y = goal_rewards(batch, config) + config.discount * batch["discount"] * next_value
    q = model.q_bins(z if config.critic_shapes_encoder else z.detach())                    # (B, A, bins)
    q_data = (two_hot(batch["action"], config) * q).sum(-1).mean(-1)                       # Q(s, a) of the data
    critic = ((q_data - y) / goal_return(config)).pow(2).mean()
    with torch.no_grad():
        bins, _ = sample_actions(policy, config.sampled_actions, config)                   # (B, K, A)
        values = q.detach().unsqueeze(1).expand(-1, bins.shape[1], -1, -1)
        q_sampled = values.gather(-1, bins.unsqueeze(-1)).squeeze(-1).mean(-1)             # (B, K)
    return {"critic": critic, "q_mean": q_data.detach().mean(), **improvement(model, policy, bins, q_sampled, config)}


def pac_losses(model, target, batch: dict[str, torch.Tensor], config: PACConfig) -> tuple[torch.Tensor, dict]:
    """The total loss and its parts for one batch (observation, caption, action, reward,
    next_observation, discount, success: the step reached its skill's goal, imitate; optional
    caption_index: then caption holds the distinct captions, networks.py)."""
    obs, caption, action = batch["observation"], batch["caption"], batch["action"]
    z = model.encode(obs, caption, batch.get("caption_index"))
    policy = model.policy_logits(z)
    zero = torch.zeros((), device=obs.device)

    # BC only where the dataset action demonstrates the caption (hindsight: its commanded segment
    # goes on to achieve that skill); every sample still trains the critic and the improvement.
    imitate = batch["imitate"]
    nll = -(two_hot(action, config) * policy.log_softmax(-1)).sum(-1).sum(-1)
    bc_loss = (nll * imitate).sum() / imitate.sum().clamp(min=1.0)
    # The critic and the improvement (none for BC, alpha = 1: nothing reads them).
    parts = {"critic": zero, "q_mean": zero, "improve": zero, "eta_loss": zero, "eta": torch.tensor(config.eta)}
    if config.alpha < 1.0:
        parts = (factorised_critic if config.critic == "factorised" else sampled_critic)(
            model, target, batch, z, policy, config)
    policy_loss = config.alpha * bc_loss + (1 - config.alpha) * parts["improve"]
    entropy = -(policy.softmax(-1) * policy.log_softmax(-1)).sum(-1).sum(-1).mean()
    metrics = {"critic_loss": parts["critic"].detach(), "bc_loss": bc_loss.detach(),
               "improve_loss": parts["improve"].detach(), "policy_loss": policy_loss.detach(),
               "q_mean": parts["q_mean"], "entropy": entropy.detach(), "eta": parts["eta"].detach()}
    return parts["critic"] + policy_loss + parts["eta_loss"], metrics
