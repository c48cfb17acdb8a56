"""The Perceiver actor-critic: entity tokens + a caption token -> latents -> policy and Q.

Each observation group (joints, velocities, gripper, end effector, each cube) and the caption's
frozen sentence embedding become one token. Learned latents cross-attend to the tokens, then a
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
        self.obs_proj = nn.ModuleList(nn.Linear(n, d) for n in c.obs_groups)
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

    def encode(self, observation: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim), (B, caption_dim) -> latents (B, latents, d)."""
        parts = torch.split(observation, self._splits, dim=-1)
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
