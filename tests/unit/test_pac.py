"""The actor-critics (the CPU's FiLM MLP, the paper's Perceiver; the factorised and the sampled critic)
on synthetic data: shapes, sizes, the C51 projection, the exact factorised improvement, BC learning a
mapping, and PAC beating BC where the data's actions are mostly bad but a reward says which are good."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learner extra (torch) is not installed")

from learner.pac.config import CONFIGS, get_config  # noqa: E402
from learner.pac.learning import PACLearner, distinct_rows, parameter_count  # noqa: E402
from learner.pac.losses import project, support, two_hot  # noqa: E402

TORSOS = ("tiny", "perceiver-tiny")
CRITICS = [(name, critic) for name in TORSOS for critic in ("factorised", "sampled")]


def _config(name: str, critic: str, **changes):
    return CONFIGS[name].replace(critic=critic, **changes)


def test_perceiver_tokens_are_the_environments_entities():
    from producers.sim.env import OBSERVATION_NAMES

    groups, names = [], list(OBSERVATION_NAMES)
    for name in names:
        entity = "dq" if name.startswith("dq") else "q" if name[0] == "q" and name[1:].isdigit() else name.split("_")[0]
        if not groups or groups[-1][0] != entity:
            groups.append([entity, 0])
        groups[-1][1] += 1
    assert tuple(n for _, n in groups) == CONFIGS["perceiver-tiny"].obs_groups
    assert CONFIGS["tiny"].replace(observation_version=1).obs_dim == 43


def test_sizes_tiny_for_the_cpu_base_the_papers():
    assert parameter_count(CONFIGS["tiny"]) < 1_000_000
    assert 120e6 < parameter_count(CONFIGS["base"]) < 160e6
    with pytest.raises(ValueError, match="choose one of tiny, perceiver-tiny, small, base"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown torso 'lstm'"):
        CONFIGS["tiny"].replace(torso="lstm")
    with pytest.raises(ValueError, match="unknown critic 'ddpg'; choose one of factorised, sampled"):
        CONFIGS["tiny"].replace(critic="ddpg")
    with pytest.raises(ValueError, match="observation version 9 is unknown"):
        CONFIGS["tiny"].replace(observation_version=9)


@pytest.mark.parametrize("name,critic", CRITICS)
def test_shapes_and_q_for_many_actions_from_one_encoding(name, critic):
    learner = PACLearner(_config(name, critic), device="cpu")
    c = learner.config
    z = learner.model.encode(torch.randn(5, c.obs_dim), torch.randn(5, c.caption_dim))
    assert z.shape == ((5, c.latents, c.d_model) if c.torso == "perceiver" else (5, c.hidden))
    assert learner.model.policy_logits(z).shape == (5, c.action_dim, c.action_bins)
    if critic == "factorised":  # one value per bin and dimension, every action's Q read from them
        assert learner.model.q_bins(z).shape == (5, c.action_dim, c.action_bins)
    else:
        assert learner.model.q_logits(z, torch.rand(5, 7, c.action_dim)).shape == (5, 7, c.return_bins)
    from learner.pac.losses import q_values

    assert q_values(learner.model, z, torch.rand(5, 7, c.action_dim) * 2 - 1, c).shape == (5, 7)
    captions = torch.randn(2, c.caption_dim)  # distinct captions and an index: the same encoding as every row's own
    index, obs = torch.tensor([1, 0, 1, 1, 0]), torch.randn(5, c.obs_dim)
    assert torch.allclose(learner.model.encode(obs, captions, index), learner.model.encode(obs, captions[index]), atol=1e-6)


def test_distinct_rows_index_each_caption_once():
    rows = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]], np.float32)
    unique, index = distinct_rows(rows)
    assert unique.tolist() == [[1, 2], [3, 4], [5, 6]] and index.tolist() == [0, 1, 0, 2, 1]


def test_a_two_hot_action_keeps_its_exact_value_as_the_mean():
    from learner.pac.losses import mean_action

    c = CONFIGS["tiny"]
    actions = torch.tensor([[-1.0, -0.37, 0.0, 1.0], [0.28, 0.95, -0.05, 0.5]])
    target = two_hot(actions, c)
    assert torch.allclose(target.sum(-1), torch.ones(2, 4))
    assert (target > 0).sum(-1).max() <= 2  # two neighbouring bins at most
    assert torch.allclose(mean_action(target.log(), c), actions, atol=1e-6)  # its mean is the action itself


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


@pytest.mark.parametrize("name", TORSOS)
def test_bc_learns_the_datasets_mapping(name):
    c = CONFIGS[name].replace(alpha=1.0, lr=3e-3, sampled_actions=4)
    learner, rng = PACLearner(c, device="cpu"), np.random.default_rng(0)
    caption = rng.normal(size=c.caption_dim).astype(np.float32)
    target = lambda obs: np.stack([np.sign(obs[:, 0]), -np.sign(obs[:, 1]), np.zeros(len(obs)), np.ones(len(obs))], 1)
    for _ in range(100):
        metrics = learner.step(_batch(rng, 32, c, caption, target))
    test = _batch(rng, 256, c, caption, target)
    predicted = learner.act(test["observation"], test["caption"])
    assert (np.sign(predicted.round(1)) == test["action"]).mean() > 0.9, metrics  # the mean action: its sign
    assert metrics["improve_loss"] == 0.0 and metrics["critic_loss"] == 0.0  # alpha = 1 is plain BC, no critic


def test_the_cpu_torso_tells_captions_apart_from_the_same_start():
    """A few demonstrations per caption from one state: "reach red" and "reach blue" must differ."""
    from learner.captions import CaptionEncoder

    c = CONFIGS["tiny"].replace(alpha=1.0)
    learner, rng = PACLearner(c, device="cpu"), np.random.default_rng(0)
    captions = CaptionEncoder().encode(["reach the red block", "reach the blue block"])
    start = rng.normal(size=c.obs_dim).astype(np.float32)
    moves = np.array([[1.0, -0.5, -1.0, 1.0], [-0.3, 1.0, -1.0, 1.0]], np.float32)  # towards red; towards blue
    for _ in range(150):
        which = rng.integers(0, 2, 64)
        obs = start + rng.normal(0, 0.01, (64, c.obs_dim)).astype(np.float32)  # a few nearby starts
        learner.step({"observation": obs, "next_observation": obs, "caption": captions[which],
                      "action": moves[which], "reward": np.zeros(64, np.float32), "discount": np.ones(64, np.float32)})
    acted = learner.act(np.stack([start, start]), captions)
    np.testing.assert_allclose(acted, moves, atol=0.05)  # each caption its own move


@pytest.mark.parametrize("critic", ("factorised", "sampled"))
def test_pac_finds_the_good_actions_in_mostly_bad_data_where_bc_copies_them(critic):
    """One-step tasks: the data's actions are uniform (mostly bad); the goal is reached when action[0] > 0.5.
    BC reproduces the data (about 2/11 good); PAC, with the critic, prefers the good ones."""
    rates = {}
    for alpha in (1.0, 0.1):
        c = _config("tiny", critic, action_bins=11, alpha=alpha, eta=0.05, lr=3e-3, discount=0.0, sampled_actions=8)
        learner, rng = PACLearner(c, device="cpu", seed=1), np.random.default_rng(1)
        caption = rng.normal(size=c.caption_dim).astype(np.float32)
        for _ in range(150):
            batch = _batch(rng, 32, c, caption, lambda obs: rng.uniform(-1, 1, size=(len(obs), 4)))
            bins = two_hot(torch.as_tensor(batch["action"]), c).argmax(-1).numpy()  # the nearest bin
            batch["reward"] = batch["success"] = (bins[:, 0] > (c.action_bins - 1) * 0.75).astype(np.float32)
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


def test_film_inputs_add_the_differences_the_skills_act_on():
    c = CONFIGS["tiny"].replace(step_features=0.0)
    model = PACLearner(c, device="cpu").model
    obs = torch.zeros(1, c.obs_dim)
    obs[0, 15:18] = torch.tensor([0.4, 0.1, 0.6])    # the hand
    obs[0, 22:25] = torch.tensor([0.5, 0.0, 0.45])   # red
    obs[0, 43:46] = torch.tensor([0.45, 0.1, 0.5])   # the set point
    features = dict(zip(c.relative_pairs, model.features(obs)[0, c.obs_dim:].view(-1, 3)))
    assert model.features(obs).shape == (1, c.feature_dim)
    assert torch.allclose(features[("red_xyz", "hand_xyz")], torch.tensor([0.1, -0.1, -0.15]))
    assert torch.allclose(features[("red_xyz", "setpoint_xyz")], torch.tensor([0.05, -0.1, -0.05]))
    assert torch.allclose(features[("setpoint_xyz", "hand_xyz")], torch.tensor([0.05, 0.0, -0.1]))
    v1 = PACLearner(c.replace(observation_version=1), device="cpu").model  # reads a v2 observation's v1 prefix
    assert v1.features(obs).shape == (1, 43 + 18) and torch.equal(v1.features(obs)[:, :43], obs[:, :43])
    # In the arm's step units (5 cm), clipped: 3 cm to go reads 0.6, 10 cm a full step.
    stepped = PACLearner(c.replace(step_features=0.05), device="cpu").model
    assert stepped.features(obs).shape == (1, c.replace(step_features=0.05).feature_dim) == (1, c.feature_dim + 30)
    in_steps = dict(zip(c.relative_pairs, stepped.features(obs)[0, c.feature_dim:].view(-1, 3)))
    assert torch.allclose(in_steps[("setpoint_xyz", "hand_xyz")], torch.tensor([1.0, 0.0, -1.0]))
    obs[0, 43:46] = torch.tensor([0.43, 0.1, 0.6])   # the set point 3 cm ahead of the hand
    assert torch.allclose(dict(zip(c.relative_pairs, stepped.features(obs)[0, c.feature_dim:].view(-1, 3)))[
        ("setpoint_xyz", "hand_xyz")], torch.tensor([0.6, 0.0, 0.0]), atol=1e-5)


def test_cube_tokens_read_the_cube_relative_to_the_hand():
    c = CONFIGS["perceiver-tiny"]
    model = PACLearner(c, device="cpu").model
    obs = torch.zeros(2, c.obs_dim)
    obs[:, 15:18] = torch.tensor([0.4, 0.1, 0.6])    # the hand (end-effector xyz)
    obs[1, 29:32] = torch.tensor([0.5, -0.1, 0.45])  # green's xyz
    features = model.features(obs)
    assert features.shape == (2, c.feature_dim) == (2, c.obs_dim + 9)
    assert torch.equal(features[:, :c.obs_dim], obs)
    assert torch.allclose(features[1, c.obs_dim + 3:c.obs_dim + 6], torch.tensor([0.1, -0.2, -0.15]))
    plain = PACLearner(c.replace(relative_groups=()), device="cpu").model
    assert plain.features(obs).shape == (2, c.obs_dim)


def test_the_first_batch_sets_the_input_statistics_and_they_travel_with_the_weights():
    c = CONFIGS["tiny"].replace(alpha=1.0)
    learner, rng = PACLearner(c, device="cpu"), np.random.default_rng(0)
    batch = _batch(rng, 64, c, np.zeros(c.caption_dim, np.float32), lambda obs: np.zeros((len(obs), 4)))
    captions = np.stack([np.full(c.caption_dim, 0.05), np.full(c.caption_dim, 0.05)]).astype(np.float32)
    captions[1, 0] = 0.15                                    # two captions that differ in one dimension
    batch["caption"] = captions[np.arange(64) % 2]
    batch["observation"] = batch["observation"] * 0.05 + 3.0  # metres-scale features far from 0
    batch["observation"][:, 40] = 1.0                        # a constant (a resting cube's quaternion)
    batch["next_observation"] = batch["observation"]
    assert not learner.model.normalizer_ready
    learner.step(batch)
    model = learner.model
    assert model.normalizer_ready and learner.target.normalizer_ready
    assert abs(model.feature_mean[0].item() - 3.0) < 0.05 and 0.03 < model.feature_std[0].item() < 0.07
    assert model.feature_std[40].item() == pytest.approx(1e-2)  # the floor, not 0
    standardised = (model.features(torch.as_tensor(batch["observation"])) - model.feature_mean) / model.feature_std
    assert standardised[:, :39].std().item() == pytest.approx(1.0, abs=0.2)
    centred = (torch.as_tensor(captions) - model.caption_mean) / model.caption_scale
    assert torch.allclose(centred[:, 1:], torch.zeros(2, c.caption_dim - 1), atol=1e-5)  # the shared part is gone
    assert centred[1, 0] - centred[0, 0] > 10  # the difference is what is left, at unit RMS over the dimensions
    copy = PACLearner(c, device="cpu", seed=5)
    copy.load_state_dict(learner.state_dict())
    assert torch.equal(copy.model.feature_std, model.feature_std) and copy.model.normalizer_ready
    assert np.array_equal(copy.act(batch["observation"], batch["caption"]), learner.act(batch["observation"], batch["caption"]))


def test_reaching_the_goal_is_worth_the_most_and_other_ends_only_their_reward():
    """A shaped reward paid while hovering near the goal must not be worth more than arriving."""
    from learner.pac.losses import critic_target, goal_rewards

    c = _config("tiny", "sampled", shaped_rewards=True)
    learner, n = PACLearner(c, device="cpu"), 4
    batch = {"observation": torch.randn(n, c.obs_dim), "next_observation": torch.randn(n, c.obs_dim),
             "caption": torch.randn(n, c.caption_dim), "reward": torch.tensor([0.6, 0.0, 0.3, 0.9]),
             "discount": torch.tensor([0.0, 0.0, 0.0, 1.0]), "success": torch.tensor([1.0, 1.0, 0.0, 0.0])}
    values = (critic_target(learner.target, batch, c) * support(c)).sum(-1)
    assert values[:2].tolist() == pytest.approx([1 / (1 - c.discount)] * 2)  # arrived, whatever the reward
    assert values[2].item() == pytest.approx(0.3, abs=1e-5)  # ended elsewhere: its reward, nothing after
    assert values[3].item() > 0.9  # goes on: the reward, then the discounted next value
    unshaped = (critic_target(learner.target, batch, c.replace(shaped_rewards=False)) * support(c)).sum(-1)
    assert unshaped[:3].tolist() == pytest.approx([10.0, 10.0, 0.0], abs=1e-5)  # only the goal pays
    # what the factorised critic is paid
    assert goal_rewards(batch, c).tolist() == pytest.approx([10.0, 10.0, 0.3, 0.9])
    assert goal_rewards(batch, c.replace(shaped_rewards=False)).tolist() == [10.0, 10.0, 0.0, 0.0]


def test_the_factorised_critic_regresses_on_the_goal_or_the_discounted_value_under_the_target_policy():
    """Target critic worth 3 per bin and an untrained online critic (0): a reached goal pays 10 and ends,
    any other step 0.9 x 3, whatever the target policy; the loss is the squared error in goal units."""
    from learner.pac.losses import factorised_critic

    c = _config("tiny", "factorised")
    learner = PACLearner(c, device="cpu")
    with torch.no_grad():
        for head, value in ((learner.target.q_head, 3.0), (learner.model.q_head, 0.0)):
            head.weight.zero_()
            head.bias.fill_(value)
    batch = {"observation": torch.randn(3, c.obs_dim), "next_observation": torch.randn(3, c.obs_dim),
             "caption": torch.randn(3, c.caption_dim), "action": torch.rand(3, 4) * 2 - 1,
             "reward": torch.tensor([1.0, 0.0, 0.4]), "success": torch.tensor([1.0, 0.0, 0.0]),
             "discount": torch.tensor([0.0, 1.0, 1.0])}
    z = learner.model.encode(batch["observation"], batch["caption"])
    parts = factorised_critic(learner.model, learner.target, batch, z, learner.model.policy_logits(z), c)
    targets = torch.tensor([10.0, 0.9 * 3.0, 0.9 * 3.0])  # the shaped 0.4 does not pay (shaped_rewards off)
    assert parts["critic"].item() == pytest.approx(((targets / 10) ** 2).mean().item(), rel=1e-5)
    assert parts["q_mean"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name,critic", CRITICS)
def test_the_critic_shapes_the_shared_encoder_only_when_asked(name, critic):
    from learner.pac.losses import factorised_critic, sampled_critic

    rng = np.random.default_rng(0)
    for shapes in (False, True):
        c = _config(name, critic, critic_shapes_encoder=shapes)
        learner = PACLearner(c, device="cpu")
        batch = _batch(rng, 8, c, np.zeros(c.caption_dim, np.float32), lambda obs: np.zeros((len(obs), 4)))
        tensors = {k: torch.as_tensor(v) for k, v in batch.items()}
        tensors.update(reward=torch.rand(8), success=torch.zeros(8))
        z = learner.model.encode(tensors["observation"], tensors["caption"])
        losses = (factorised_critic if critic == "factorised" else sampled_critic)(
            learner.model, learner.target, tensors, z, learner.model.policy_logits(z).detach(), c)
        losses["critic"].backward()
        first = learner.model.layers[0] if c.torso == "film" else learner.model.encoder
        encoder = [p.grad for p in first.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in encoder) == shapes
        assert learner.model.q_head.weight.grad.abs().sum() > 0


def test_a_support_too_small_for_a_reached_goal_is_refused():
    sampled = CONFIGS["tiny"]
    with pytest.raises(ValueError, match=r"v_max 10.0 is below 1 / \(1 - discount\) = 100"):
        PACLearner(sampled.replace(discount=0.99), device="cpu")
    with pytest.raises(ValueError, match=r"discount must be in \[0, 1\)"):
        PACLearner(CONFIGS["tiny"].replace(discount=1.0), device="cpu")
    PACLearner(sampled.replace(discount=0.99, v_max=100.0), device="cpu")
    PACLearner(_config("tiny", "factorised", discount=0.99), device="cpu")  # the factorised critic has no support


@pytest.mark.parametrize("critic", ("factorised", "sampled"))
def test_eta_follows_its_dual_sharper_where_the_critic_tells_actions_apart(critic):
    """MPO's temperature: with the KL bound fixed, a critic whose actions differ a lot needs a
    larger eta (softer weights) than one that rates them all alike."""
    import math

    from learner.pac.losses import bin_centres, pac_losses

    etas = {}
    for spread in (0.0, 5.0):
        c = _config("tiny", critic, eta=1.0, eta_epsilon=0.1, lr=0.05)
        learner = PACLearner(c, device="cpu")
        with torch.no_grad():  # Q = spread * the first action dimension: spread 0 rates every action alike
            learner.model.q_head.weight.zero_()
            learner.model.q_head.bias.zero_()
        rng = np.random.default_rng(0)
        batch = {k: torch.as_tensor(v) for k, v in _batch(rng, 64, c, np.zeros(c.caption_dim, np.float32),
                                                          lambda obs: np.zeros((len(obs), 4))).items()}
        batch.update(imitate=torch.zeros(64), success=torch.zeros(64))
        model = learner.model
        model.q_logits = lambda z, a: torch.stack([torch.zeros_like(a[..., 0])] * (c.return_bins - 1)
                                                  + [spread * a[..., 0] * 4], -1)
        first = torch.zeros(c.action_dim, c.action_bins)
        first[0] = spread * c.action_dim * bin_centres(c)  # Q(s, a) = spread * a[0]
        model.q_bins = lambda z: first.expand(len(z), -1, -1)
        optimizer = torch.optim.SGD([model.log_eta], lr=0.05)
        for _ in range(100):
            loss, metrics = pac_losses(model, learner.target, batch, c)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        etas[spread] = metrics["eta"].item()
    assert etas[0.0] < 0.9 and etas[5.0] > 2.0, etas  # from 1.0: down where nothing differs, up where much does
    assert not math.isnan(etas[5.0])
