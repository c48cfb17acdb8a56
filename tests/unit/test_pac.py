"""The Perceiver-Actor-Critic on synthetic data: shapes, sizes, the C51 projection, BC learning a
mapping, and PAC beating BC where the data's actions are mostly bad but a reward says which are good."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learner extra (torch) is not installed")

from learner.pac.config import CONFIGS, PANDA_OBS_GROUPS, get_config  # noqa: E402
from learner.pac.learning import PACLearner, parameter_count  # noqa: E402
from learner.pac.losses import action_to_bins, project, support  # noqa: E402


def test_observation_groups_are_the_environments_entities():
    from producers.sim.env import OBSERVATION_NAMES

    groups, names = [], list(OBSERVATION_NAMES)
    for name in names:
        entity = "dq" if name.startswith("dq") else "q" if name[0] == "q" and name[1:].isdigit() else name.split("_")[0]
        if not groups or groups[-1][0] != entity:
            groups.append([entity, 0])
        groups[-1][1] += 1
    assert tuple(n for _, n in groups) == PANDA_OBS_GROUPS


def test_sizes_tiny_for_the_cpu_base_the_papers():
    assert parameter_count(CONFIGS["tiny"]) < 1_000_000
    assert 120e6 < parameter_count(CONFIGS["base"]) < 160e6
    with pytest.raises(ValueError, match="choose one of tiny, small, base"):
        get_config("huge")


def test_shapes_and_q_for_many_actions_from_one_encoding():
    learner = PACLearner(CONFIGS["tiny"], device="cpu")
    c = learner.config
    z = learner.model.encode(torch.randn(5, c.obs_dim), torch.randn(5, c.caption_dim))
    assert z.shape == (5, c.latents, c.d_model)
    assert learner.model.policy_logits(z).shape == (5, c.action_dim, c.action_bins)
    assert learner.model.q_logits(z, torch.rand(5, 7, c.action_dim)).shape == (5, 7, c.return_bins)


def test_the_projection_keeps_mass_and_a_terminal_reward_is_a_point():
    c = CONFIGS["tiny"]
    probs = torch.softmax(torch.randn(3, c.return_bins), -1)
    out = project(probs, torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.9, 0.9, 0.0]), c)
    assert torch.allclose(out.sum(-1), torch.ones(3))
    assert (out[2] * support(c)).sum().item() == pytest.approx(1.0, abs=1e-5)  # r = 1, nothing after


def _batch(rng, n, c, caption, action):
    obs = rng.normal(size=(n, c.obs_dim)).astype(np.float32)
    return {"observation": obs, "next_observation": obs, "caption": np.repeat(caption[None], n, 0),
            "action": action(obs).astype(np.float32), "reward": np.zeros(n, np.float32),
            "discount": np.ones(n, np.float32)}


def test_bc_learns_the_datasets_mapping():
    c = CONFIGS["tiny"].replace(alpha=1.0, lr=3e-3, sampled_actions=4)
    learner, rng = PACLearner(c, device="cpu"), np.random.default_rng(0)
    caption = rng.normal(size=c.caption_dim).astype(np.float32)
    target = lambda obs: np.stack([np.sign(obs[:, 0]), -np.sign(obs[:, 1]), np.zeros(len(obs)), np.ones(len(obs))], 1)
    for _ in range(100):
        metrics = learner.step(_batch(rng, 32, c, caption, target))
    test = _batch(rng, 256, c, caption, target)
    predicted = learner.act(test["observation"], test["caption"])
    assert np.isclose(predicted, test["action"], atol=1e-6).mean() > 0.9, metrics
    assert metrics["improve_loss"] == 0.0  # alpha = 1 is plain BC


def test_pac_finds_the_good_actions_in_mostly_bad_data_where_bc_copies_them():
    """One-step tasks: the data's actions are uniform (mostly bad); reward 1 when action[0] > 0.5.
    BC reproduces the data (about 2/11 good); PAC, with the critic, prefers the good ones."""
    rates = {}
    for alpha in (1.0, 0.1):
        c = CONFIGS["tiny"].replace(alpha=alpha, eta=0.05, lr=3e-3, discount=0.0, sampled_actions=8)
        learner, rng = PACLearner(c, device="cpu", seed=1), np.random.default_rng(1)
        caption = rng.normal(size=c.caption_dim).astype(np.float32)
        for _ in range(150):
            batch = _batch(rng, 32, c, caption, lambda obs: rng.uniform(-1, 1, size=(len(obs), 4)))
            bins = action_to_bins(torch.as_tensor(batch["action"]), c).numpy()
            batch["reward"] = (bins[:, 0] > (c.action_bins - 1) * 0.75).astype(np.float32)
            batch["discount"] = np.zeros(32, np.float32)  # every step ends its episode
            learner.step(batch)
        test = _batch(rng, 512, c, caption, lambda obs: np.zeros((len(obs), 4)))
        rates[alpha] = float((learner.act(test["observation"], test["caption"], greedy=False)[:, 0] > 0.5).mean())
    assert rates[1.0] < 0.4 and rates[0.1] > 2 * rates[1.0], rates


def test_a_nan_loss_stops_the_step_and_state_round_trips():
    c = CONFIGS["tiny"]
    learner, rng = PACLearner(c, device="cpu"), np.random.default_rng(0)
    batch = _batch(rng, 8, c, np.zeros(c.caption_dim, np.float32), lambda obs: np.zeros((len(obs), 4)))
    learner.step(batch)
    copy = PACLearner(c, device="cpu", seed=5)
    copy.load_state_dict(learner.state_dict())
    assert copy.steps == 1
    assert np.array_equal(copy.act(batch["observation"], batch["caption"]), learner.act(batch["observation"], batch["caption"]))
    with torch.no_grad():
        learner.model.q_head.weight.fill_(float("nan"))  # a diverged critic
    with pytest.raises(FloatingPointError, match="loss is nan"):
        learner.step(batch)
    batch["reward"][0] = np.nan
    with pytest.raises(ValueError, match="reward has non-finite values"):
        learner.step(batch)
