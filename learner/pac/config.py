"""PAC configurations: documented dataclasses, CPU-sized `tiny` to the paper-sized `base`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# One input token per entity of the 43-float observation (producers.sim.env.OBSERVATION_NAMES):
# joint angles, joint velocities, gripper opening, end-effector pose, then each cube's pose.
# A test checks this against the environment, so the learner need not import the simulator.
PANDA_OBS_GROUPS = (7, 7, 1, 7, 7, 7, 7)


@dataclass(frozen=True)
class PACConfig:
    name: str = "tiny"
    # Model
    d_model: int = 64             # width of every token and latent
    latents: int = 8              # learned latent queries that cross-attend to the input tokens
    blocks: int = 2               # self-attention blocks over the latents
    heads: int = 4
    ff_mult: int = 4              # MLP width = ff_mult * d_model
    obs_groups: tuple[int, ...] = PANDA_OBS_GROUPS
    action_dim: int = 4
    caption_dim: int = 384        # the frozen sentence encoder's embedding size (all-MiniLM-L6-v2)
    # Relative positions: each of these groups' token also gets its xyz minus the `anchor_group`'s
    # (cube - hand): the quantity the skills act on, which the network otherwise has to learn to
    # subtract from two raw 5-cm-scale inputs mixed with constant ones. () turns it off.
    relative_groups: tuple[int, ...] = (4, 5, 6)
    anchor_group: int = 3
    # Inputs (observation + relative features, caption embedding) are standardised with statistics
    # of the training data (set from the first batch, stored as buffers: they travel in the
    # checkpoint); the raw floats span metres, radians and rad/s, constant quaternion entries swamp
    # a 5 cm offset, and captions differing only in a colour have cosine ~0.75.
    normalize: bool = True
    action_bins: int = 11         # the policy: a categorical over bins per action dimension in [-1, 1]
    return_bins: int = 51         # the critic: a categorical over returns in [v_min, v_max]
    v_min: float = 0.0
    v_max: float = 10.0           # 1 / (1 - discount): the return of a shaped reward of 1 every step
    # The critic reads the shared latents; False: without shaping them (its gradient stops there).
    # On the CPU budget the critic's TD loss over every skill swamped BC's gradient in the shared
    # encoder and BC on the same demonstrations learned several times less (benchmarks/README.md,
    # learning_quality). The paper trains both through one encoder, at scale.
    critic_shapes_encoder: bool = False
    # Objective
    discount: float = 0.9
    alpha: float = 0.5            # weight of BC on dataset actions; 1.0 is plain BC
    eta: float = 0.1              # temperature of softmax(Q / eta) over sampled actions (fixed, reported)
    sampled_actions: int = 16     # actions sampled from the policy per state (improvement and target)
    # Hindsight sampling. A sample's action demonstrates the drawn skill (`imitate`, the BC term's only
    # data) on the steps of a commanded segment up to that skill's first success in it (a misdirected
    # "reach red" that reached blue demonstrates "reach blue"); the rest teach the critic what does not
    # work. `demo_fraction` of every batch is drawn from the demonstrations alone (they are a few percent
    # of the (step, skill) pairs), the rest from all pairs, where a demonstrated skill is drawn
    # `achieved_boost` times as often as another.
    demo_fraction: float = 0.5
    achieved_boost: int = 6
    target_tau: float = 0.005     # Polyak rate of the target network
    # Optimisation
    lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 256
    grad_clip: float = 1.0

    @property
    def obs_dim(self) -> int:
        return sum(self.obs_groups)

    @property
    def feature_dim(self) -> int:
        """Network inputs per state: the observation, then 3 relative floats per relative group."""
        return self.obs_dim + 3 * len(self.relative_groups)

    @classmethod
    def from_dict(cls, saved: dict) -> "PACConfig":
        """The config a checkpoint recorded (dataclasses.asdict; its tuples come back as lists)."""
        tuples = {k: tuple(saved[k]) for k in ("obs_groups", "relative_groups") if k in saved}
        return cls(**{**saved, **tuples})

    def replace(self, **changes) -> "PACConfig":
        return dataclasses.replace(self, **changes)


CONFIGS = {
    # Trains in minutes on 2 CPU cores.
    "tiny": PACConfig(),
    # A larger CPU/GPU run.
    "small": PACConfig(name="small", d_model=256, latents=32, blocks=6, heads=8),
    # The paper's size, ~140M parameters, for a GPU (bf16 autocast).
    "base": PACConfig(name="base", d_model=1024, latents=64, blocks=8, heads=16, batch_size=512),
}


def get_config(name: str) -> PACConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name]
