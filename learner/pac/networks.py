"""The Perceiver actor-critic: entity tokens + a caption token -> latents -> policy and Q.

Each observation group (joints, velocities, gripper, end effector, each cube) and the caption's
frozen sentence embedding become one token; a cube's token also reads its position relative to
the hand (config.relative_groups), and every input float is standardised with the training data's
statistics (buffers, so they are saved and loaded with the weights). Learned latents cross-attend to the tokens, then a
stack of self-attention blocks refines them. Two decoders read the latents: the policy (a learned
query -> logits over bins per action dimension) and the distributional critic, whose queries are
encoded actions, so Q for many candidate actions reuses one latent encoding of the state.
"""

from __future__ import annotations

import torch
from torch import nn

from learner.pac.config import PACConfig


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


class PerceiverActorCritic(nn.Module):
    def __init__(self, config: PACConfig):
        super().__init__()
        self.config = c = config
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
        self.action_proj = nn.Linear(c.action_dim, d)
        self.q_decoder = _Block(d, c.heads, c.ff_mult, cross=True)
        self.q_head = nn.Linear(d, c.return_bins)
        self._splits = list(c.obs_groups)
        self._starts = [sum(c.obs_groups[:g]) for g in range(len(c.obs_groups))]
        # Standardisation of the features (identity until set_normalizer; normalizer_ready says if it was).
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))
        self.register_buffer("normalizer_ready", torch.zeros(()))
        # Captions are centred on the training captions' mean and scaled to unit RMS per dimension:
        # the encoder's vectors share most of their direction ("reach the red block" vs "... green
        # block": cosine 0.77), so the colour, which picks the cube, would be a small residue.
        self.register_buffer("caption_mean", torch.zeros(c.caption_dim))
        self.register_buffer("caption_scale", torch.ones(()))

    def features(self, observation: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) -> (B, feature_dim): the observation, then per relative group its xyz minus
        the anchor's (raw, not standardised)."""
        anchor = self._starts[self.config.anchor_group]
        rel = [observation[:, self._starts[g]:self._starts[g] + 3] - observation[:, anchor:anchor + 3]
               for g in self.config.relative_groups]
        return torch.cat([observation, *rel], -1)

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

    def encode(self, observation: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim), (B, caption_dim) -> latents (B, latents, d)."""
        c, n = self.config, self.config.obs_dim
        f = ((self.features(observation) - self.feature_mean) / self.feature_std).clamp(-10.0, 10.0)
        parts = list(torch.split(f[:, :n], self._splits, dim=-1))
        for i, g in enumerate(c.relative_groups):
            parts[g] = torch.cat([parts[g], f[:, n + 3 * i:n + 3 * i + 3]], -1)
        caption = ((caption - self.caption_mean) / self.caption_scale).clamp(-10.0, 10.0)
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

    def q_logits(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Actions (B, K, action_dim) -> return logits (B, K, return_bins), one query per action."""
        return self.q_head(self.q_decoder(self.action_proj(actions), z))
