"""PAC configurations: documented dataclasses, the CPU's FiLM MLP `tiny` to the paper-sized
Perceiver `base`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from schemas import observation

# The Perceiver's input tokens: one per entity of the observation (schemas/observation.py): joint
# angles, joint velocities, gripper opening, end-effector pose, each cube's pose; v2 adds the set point.
_ENTITY_GROUPS = {1: (7, 7, 1, 7, 7, 7, 7), 2: (7, 7, 1, 7, 7, 7, 7, 3)}
TORSOS = ("film", "perceiver")
CRITICS = ("factorised", "sampled")


@dataclass(frozen=True)
class PACConfig:
    name: str = "tiny"
    # What the model reads: episodes of this observation version (schemas/observation.py). A model
    # of v1 reads the first 43 floats of a v2 observation (versions only append).
    observation_version: int = observation.CURRENT
    # Model. "film": an MLP whose hidden layers the caption modulates (per-layer scale and shift, FiLM),
    # over the standardised observation plus the differences the skills act on (cube - hand, cube -
    # set point, set point - hand, cube - cube); fast on a CPU. "perceiver": the paper's model.
    torso: str = "film"
    hidden: int = 256             # film: width of each hidden layer
    layers: int = 3               # film: hidden layers
    film_dim: int = 64            # film: the caption is projected to this before each layer's scale and shift
    # film: width of the critic's hidden layers. 64 with 8 sampled actions trains ~1.8x faster than 128
    # with 16 (the critic's passes over sampled actions were most of a step; benchmarks/README.md).
    critic_hidden: int = 64
    # film: each relative pair also enters in units of the arm's step (the env's max_step_m, 5 cm),
    # clipped to +-1: the last centimetres to a goal, which the expert covers in one fractional step,
    # are then a large input, not a small fraction of the workspace-wide spread (0: off).
    step_features: float = 0.05
    d_model: int = 64             # perceiver: width of every token and latent
    latents: int = 8              # learned latent queries that cross-attend to the input tokens
    blocks: int = 2               # self-attention blocks over the latents
    heads: int = 4
    ff_mult: int = 4              # MLP width = ff_mult * d_model
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
    # The policy: a categorical over bins per action dimension in [-1, 1] (21: steps of 0.1, 5 mm of
    # motion; 11 bins left place's final approach 1 cm coarse).
    action_bins: int = 21
    return_bins: int = 51         # the sampled critic: a categorical over returns in [v_min, v_max]
    v_min: float = 0.0
    v_max: float = 10.0           # 1 / (1 - discount): the return of a shaped reward of 1 every step
    # The critic. "sampled" (the paper's): a distributional critic (C51 over returns) of (state, action),
    # one network pass per action. "factorised": Q(s, a) is the mean over action dimensions of
    # Q_d(s, a_d), one value per bin of the policy's (DecQN, Seyde et al. 2023): the target's expectation
    # under the policy is an exact sum over bins and a sampled action's Q is read from its bins, so
    # training runs ~1.2x faster on a CPU (29,800 against 24,100 samples/s); but bins the data never
    # shows (a gripper half open) get values nothing trained, and on make demo's small lake they misled
    # the improvement (grasp 0-5 of 10 against 7; benchmarks/README.md), so it is not the default. Both
    # improve the policy over `sampled_actions` actions drawn from it (MPO's E-step).
    critic: str = "sampled"
    # The critic reads the shared latents; False: without shaping them (its gradient stops there).
    # On the CPU budget the critic's TD loss over every skill swamped BC's gradient in the shared
    # encoder and BC on the same demonstrations learned several times less (benchmarks/README.md,
    # learning_quality). The paper trains both through one encoder, at scale.
    critic_shapes_encoder: bool = False
    # Objective
    discount: float = 0.9
    # The critic's reward: reaching the skill's goal (worth goal_return, losses.py) and nothing else, so
    # Q reads as how soon the goal comes; True adds the relabelled shaped rewards on the way (reach's
    # exp(-distance)), which also pay for hovering near a goal.
    shaped_rewards: bool = False
    # Weight of BC on dataset actions; 1.0 is plain BC. 0.9: on learning_quality's lake (validation
    # seeds, seed 0) PAC at 0.9 beat hindsight BC, most on place, and PAC at 0.5 fell below it.
    alpha: float = 0.9
    # The improvement's temperature: softmax(Q / eta) over sampled actions. Learned from MPO's dual so
    # that the reweighted policy stays within KL `eta_epsilon` of the current one (0: eta stays fixed).
    # A fixed small eta on returns of 0-10 made the weights an argmax over the critic's noise.
    eta: float = 1.0              # its initial (or fixed) value
    eta_epsilon: float = 0.1
    sampled_actions: int = 8      # actions drawn from the policy per state (improvement; the sampled critic's target)
    # Acting greedily: the policy's mean action, or (> 0, with a critic: alpha < 1) the best by Q
    # of the mean and this many actions sampled from the policy, MPO's improved policy at its sharpest.
    act_candidates: int = 0
    # Hindsight sampling. A sample's action demonstrates the drawn skill (`imitate`, the BC term's only
    # data) on the steps of a commanded segment up to that skill's first success in it (a misdirected
    # "reach red" that reached blue demonstrates "reach blue"); the rest teach the critic what does not
    # work. `demo_fraction` of every batch is drawn from the demonstrations alone (they are a few percent
    # of the (step, skill) pairs), the rest from all pairs, where a demonstrated skill is drawn
    # `achieved_boost` times as often as another.
    demo_fraction: float = 0.5
    achieved_boost: int = 6
    # Training data: each sample seen with the cubes' colours permuted at random, its skill recoloured
    # with them (learner/symmetry.py): every colour's demonstrations teach every other colour's skill.
    colour_symmetry: bool = True
    target_tau: float = 0.005     # Polyak rate of the target network
    # Optimisation (the learning rate decays to 0 over the run's steps on a cosine, train.py)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    grad_clip: float = 1.0

    @property
    def obs_dim(self) -> int:
        return observation.size(self.observation_version)

    @property
    def obs_groups(self) -> tuple[int, ...]:
        return _ENTITY_GROUPS[self.observation_version]

    @property
    def relative_pairs(self) -> tuple[tuple[str, str], ...]:
        """film: (a, b) observation fields whose difference a - b is an input feature."""
        names = dict(observation.fields(self.observation_version))
        cubes = [f"{c}_xyz" for c in observation.COLOURS]
        pairs = [(cube, "hand_xyz") for cube in cubes] + [(b, a) for i, a in enumerate(cubes) for b in cubes[i + 1:]]
        if "setpoint_xyz" in names:
            pairs += [(cube, "setpoint_xyz") for cube in cubes] + [("setpoint_xyz", "hand_xyz")]
        return tuple(pairs)

    @property
    def feature_dim(self) -> int:
        """Network inputs per state: the observation, then 3 relative floats per relative group (perceiver)
        or pair (film; and 3 more in step units with step_features)."""
        if self.torso == "film":
            return self.obs_dim + 3 * len(self.relative_pairs) * (2 if self.step_features else 1)
        return self.obs_dim + 3 * len(self.relative_groups)

    # Fields added since checkpoints were first written, and what their absence means.
    ABSENT_MEANS = {"critic": "sampled", "step_features": 0.0, "colour_symmetry": False}

    @classmethod
    def from_dict(cls, saved: dict) -> "PACConfig":
        """The config a checkpoint recorded (dataclasses.asdict; its tuples come back as lists)."""
        known = {**cls.ABSENT_MEANS, **{k: v for k, v in saved.items() if k in cls.__dataclass_fields__}}
        tuples = {k: tuple(known[k]) for k in ("relative_groups",) if k in known}
        return cls(**{**known, **tuples})

    def replace(self, **changes) -> "PACConfig":
        return dataclasses.replace(self, **changes)

    def __post_init__(self):
        if self.torso not in TORSOS:
            raise ValueError(f"unknown torso {self.torso!r}; choose one of {', '.join(TORSOS)}")
        if self.step_features < 0:
            raise ValueError(f"step_features is a length in metres (0: off), got {self.step_features}")
        if self.critic not in CRITICS:
            raise ValueError(f"unknown critic {self.critic!r}; choose one of {', '.join(CRITICS)}")
        observation.fields(self.observation_version)  # an unknown version names the known ones


# The Perceivers: their tokens add relative positions their own way (relative_groups).
_PAPERS = dict(torso="perceiver", step_features=0.0, sampled_actions=16)

CONFIGS = {
    # The CPU's: trains in minutes on one core (benchmarks/README.md, learner_throughput).
    "tiny": PACConfig(),
    # The Perceiver, small enough for a CPU test or a short GPU run.
    "perceiver-tiny": PACConfig(name="perceiver-tiny", **_PAPERS, lr=3e-4),
    "small": PACConfig(name="small", **_PAPERS, d_model=256, latents=32, blocks=6, heads=8, lr=3e-4),
    # The paper's size, ~140M parameters, for a GPU (bf16 autocast).
    "base": PACConfig(name="base", **_PAPERS, d_model=1024, latents=64, blocks=8, heads=16, batch_size=512, lr=3e-4),
}


def get_config(name: str) -> PACConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name]
