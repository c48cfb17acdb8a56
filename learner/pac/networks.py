"""The actor-critics: standardised observation features + a caption -> a state encoding -> policy and Q.

Both networks read the same inputs: the observation (schemas/observation.py) plus relative
positions, every float standardised with the training data's statistics, and the caption's frozen
sentence embedding centred on the training captions' mean (buffers, saved and loaded with the
weights). Both answer one interface, which losses.py uses: `encode(observation, caption) -> z`,
`policy_logits(z)` (logits over bins per action dimension), and the critic's: `q_bins(z)` (the
factorised critic's value of each bin per action dimension) or `q_logits(z, actions)` (the sampled
critic's return logits for K candidate actions per state, reusing one encoding of the state).

- `FiLMActorCritic` (torso "film", the CPU default): an MLP whose hidden layers the caption
  modulates (per-layer scale and shift); its inputs add the differences the skills act on (cube -
  hand, cube - set point, set point - hand, cube - cube). The critic is an MLP on z (factorised) or
  on (z, action) (sampled).
- `PerceiverActorCritic` (torso "perceiver", the paper's): each observation group and the caption
  become one token; learned latents cross-attend to them, self-attention blocks refine them; the
  policy decodes a learned query, the critic one query per encoded action (sampled) or its own
  learned query (factorised).
"""

from __future__ import annotations

import torch
from torch import nn

from learner.pac.config import PACConfig
from schemas import observation


def build(config: PACConfig) -> nn.Module:
    import math

    model = (FiLMActorCritic if config.torso == "film" else PerceiverActorCritic)(config)
    # The improvement's temperature (losses.py), learned with the weights and saved with them.
    model.log_eta = nn.Parameter(torch.tensor(math.log(config.eta)))
    return model


class _Inputs(nn.Module):
    """Feature standardisation shared by the torsos (identity until `set_normalizer`)."""

    def _init_inputs(self, c: PACConfig) -> None:
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))
        self.register_buffer("normalizer_ready", torch.zeros(()))
        # Captions are centred on the training captions' mean and scaled to unit RMS per dimension:
        # the encoder's vectors share most of their direction ("reach the red block" vs "... green
        # block": cosine 0.77), so the colour, which picks the cube, would be a small residue.
        self.register_buffer("caption_mean", torch.zeros(c.caption_dim))
        self.register_buffer("caption_scale", torch.ones(()))

    @torch.no_grad()
    def set_normalizer(self, observations: torch.Tensor, captions: torch.Tensor, min_std: float = 1e-2) -> None:
        """Standardise with these observations' feature statistics (features that barely vary, a
        resting cube's quaternion, get `min_std`, so they stay near 0 instead of exploding) and
        these captions' mean and spread (one scale for all dimensions: a caption never seen in
        training keeps its geometry)."""
        if self.config.normalize:
            f = self.features(observations.float())
            self.feature_mean.copy_(f.mean(0))
            self.feature_std.copy_(f.std(0).nan_to_num(0.0).clamp_min(min_std))
            centred = captions.float() - captions.float().mean(0)
            self.caption_mean.copy_(captions.float().mean(0))
            self.caption_scale.copy_(centred.pow(2).mean().sqrt().clamp_min(1e-3))
        self.normalizer_ready.fill_(1.0)

    def standardised(self, observation: torch.Tensor, caption: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = ((self.features(observation) - self.feature_mean) / self.feature_std).clamp(-10.0, 10.0)
        return f, ((caption - self.caption_mean) / self.caption_scale).clamp(-10.0, 10.0)


class FiLMActorCritic(_Inputs):
    def __init__(self, config: PACConfig):
        super().__init__()
        self.config = c = config
        self._init_inputs(c)
        fields = observation.offsets(c.observation_version)
        self._pairs = [(fields[a].start, fields[b].start) for a, b in c.relative_pairs]
        h = c.hidden
        self.layers = nn.ModuleList(nn.Linear(c.feature_dim if i == 0 else h, h) for i in range(c.layers))
        # The caption, through a narrow projection, gives every layer a scale and a shift (cheap: the
        # caption's 384 floats would otherwise meet 2 x layers x hidden outputs per sample).
        self.film = nn.Sequential(nn.Linear(c.caption_dim, c.film_dim), nn.ReLU(),
                                  nn.Linear(c.film_dim, 2 * c.layers * h))
        self.policy_head = nn.Linear(h, c.action_dim * c.action_bins)
        q = c.critic_hidden
        if c.critic == "factorised":
            self.q_mlp = nn.Sequential(nn.Linear(h, q), nn.ReLU())
            self.q_head = nn.Linear(q, c.action_dim * c.action_bins)
        else:
            self.q_state, self.q_action = nn.Linear(h, q), nn.Linear(c.action_dim, q)
            self.q_mlp = nn.Sequential(nn.ReLU(), nn.Linear(q, q), nn.ReLU())
            self.q_head = nn.Linear(q, c.return_bins)

    def features(self, observation: torch.Tensor) -> torch.Tensor:
        """(B, >= obs_dim) -> (B, feature_dim): the observation, then a - b per relative pair (raw), then
        (step_features) the same in step units, clipped."""
        observation = observation[:, :self.config.obs_dim]
        rel = [observation[:, a:a + 3] - observation[:, b:b + 3] for a, b in self._pairs]
        if self.config.step_features:
            rel += [(r / self.config.step_features).clamp(-1.0, 1.0) for r in rel]
        return torch.cat([observation, *rel], -1)

    def encode(self, observation: torch.Tensor, caption: torch.Tensor,
               caption_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, obs_dim), (B, caption_dim) -> (B, hidden). With `caption_index` (B,), `caption` holds the
        batch's distinct captions (a few, one per skill) and each is turned into scales and shifts once."""
        x, caption = self.standardised(observation, caption)
        scale_shift = self.film(caption)
        if caption_index is not None:
            scale_shift = nn.functional.embedding(caption_index, scale_shift)  # its backward: ~2x faster than []'s
        # unbind, not one slice per use: each slice's backward filled a zero tensor of the whole (~20% of a step)
        film = scale_shift.view(x.shape[0], 2 * len(self.layers), -1).unbind(1)
        for i, layer in enumerate(self.layers):
            x = torch.relu(layer(x) * (1 + film[2 * i]) + film[2 * i + 1])
        return x

    def policy_logits(self, z: torch.Tensor) -> torch.Tensor:
        """-> (B, action_dim, action_bins)."""
        return self.policy_head(z).view(z.shape[0], self.config.action_dim, self.config.action_bins)

    def q_bins(self, z: torch.Tensor) -> torch.Tensor:
        """The factorised critic: -> (B, action_dim, action_bins), Q_d(s, b) per dimension and bin."""
        return self.q_head(self.q_mlp(z)).view(z.shape[0], self.config.action_dim, self.config.action_bins)

    def q_logits(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The sampled critic: actions (B, K, action_dim) -> return logits (B, K, return_bins); the state's
        part once per state."""
        return self.q_head(self.q_mlp(self.q_state(z)[:, None] + self.q_action(actions)))


class _Block(nn.Module):
    """Pre-norm attention (cross when a context is given, else self) + MLP, both residual."""

    def __init__(self, d: int, heads: int, ff_mult: int, cross: bool):
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm_q(x)
        kv = q if self.norm_kv is None else self.norm_kv(context)
        x = x + self.attn(q, kv, kv, need_weights=False)[0]
        return x + self.ff(self.norm_ff(x))


class PerceiverActorCritic(_Inputs):
    def __init__(self, config: PACConfig):
        super().__init__()
        self.config = c = config
        self._init_inputs(c)
        d = c.d_model
        self.obs_proj = nn.ModuleList(nn.Linear(n + 3 * (g in c.relative_groups), d)
                                      for g, n in enumerate(c.obs_groups))
        self.caption_proj = nn.Linear(c.caption_dim, d)
        self.token_type = nn.Parameter(torch.randn(len(c.obs_groups) + 1, d) * 0.02)
        self.latents = nn.Parameter(torch.randn(c.latents, d) * 0.02)
        self.encoder = _Block(d, c.heads, c.ff_mult, cross=True)
        self.blocks = nn.ModuleList(_Block(d, c.heads, c.ff_mult, cross=False) for _ in range(c.blocks))
        self.policy_query = nn.Parameter(torch.randn(1, d) * 0.02)
        self.policy_decoder = _Block(d, c.heads, c.ff_mult, cross=True)
        self.policy_head = nn.Linear(d, c.action_dim * c.action_bins)
        # Registered in the order the sampled critic's parameters always had (a checkpoint's optimiser
        # state lists them by position).
        if c.critic == "factorised":
            self.q_query = nn.Parameter(torch.randn(1, d) * 0.02)
        else:
            self.action_proj = nn.Linear(c.action_dim, d)
        self.q_decoder = _Block(d, c.heads, c.ff_mult, cross=True)
        self.q_head = nn.Linear(d, c.action_dim * c.action_bins if c.critic == "factorised" else c.return_bins)
        self._splits = list(c.obs_groups)
        self._starts = [sum(c.obs_groups[:g]) for g in range(len(c.obs_groups))]

    def features(self, observation: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) -> (B, feature_dim): the observation, then per relative group its xyz minus
        the anchor's (raw, not standardised)."""
        observation = observation[:, :self.config.obs_dim]
        anchor = self._starts[self.config.anchor_group]
        rel = [observation[:, self._starts[g]:self._starts[g] + 3] - observation[:, anchor:anchor + 3]
               for g in self.config.relative_groups]
        return torch.cat([observation, *rel], -1)

    def encode(self, observation: torch.Tensor, caption: torch.Tensor,
               caption_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, obs_dim), (B, caption_dim) or distinct captions and their `caption_index` -> latents (B, latents, d)."""
        c, n = self.config, self.config.obs_dim
        caption = caption if caption_index is None else caption[caption_index]
        f, caption = self.standardised(observation, caption)
        parts = list(torch.split(f[:, :n], self._splits, dim=-1))
        for i, g in enumerate(c.relative_groups):
            parts[g] = torch.cat([parts[g], f[:, n + 3 * i:n + 3 * i + 3]], -1)
        tokens = torch.stack([proj(p) for proj, p in zip(self.obs_proj, parts)] + [self.caption_proj(caption)], 1)
        tokens = tokens + self.token_type
        z = self.encoder(self.latents.expand(observation.shape[0], -1, -1), tokens)
        for block in self.blocks:
            z = block(z)
        return z

    def policy_logits(self, z: torch.Tensor) -> torch.Tensor:
        """-> (B, action_dim, action_bins)."""
        query = self.policy_decoder(self.policy_query.expand(z.shape[0], -1, -1), z)
        return self.policy_head(query[:, 0]).view(z.shape[0], self.config.action_dim, self.config.action_bins)

    def q_bins(self, z: torch.Tensor) -> torch.Tensor:
        """The factorised critic: -> (B, action_dim, action_bins), decoded from its own query."""
        query = self.q_decoder(self.q_query.expand(z.shape[0], -1, -1), z)
        return self.q_head(query[:, 0]).view(z.shape[0], self.config.action_dim, self.config.action_bins)

    def q_logits(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The sampled critic: actions (B, K, action_dim) -> return logits (B, K, return_bins), one query per action."""
        return self.q_head(self.q_decoder(self.action_proj(actions), z))
