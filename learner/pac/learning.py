"""The PAC learner: one gradient step at a time on batches of NumPy arrays (learner/dataset.py)."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from learner.pac.config import PACConfig
from learner.pac.losses import goal_return, mean_action, pac_losses, q_values, sample_actions
from learner.pac.networks import build

_KEYS = ("observation", "next_observation", "action", "reward", "discount", "caption")


class DeviceUnavailable(RuntimeError):
    pass


def pick_device(name: str = "auto") -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose one of auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("device cuda was asked for, but torch sees no CUDA device (use --device cpu)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


class PACLearner:
    def __init__(self, config: PACConfig, device: str = "auto", seed: int = 0):
        if not 0 <= config.discount < 1:
            raise ValueError(f"discount must be in [0, 1), got {config.discount}")
        if config.critic == "sampled" and config.v_max < goal_return(config) - 1e-6:
            raise ValueError(f"v_max {config.v_max} is below 1 / (1 - discount) = {goal_return(config):g}, "
                             "the return of a reached goal: the critic could not tell arriving from hovering")
        torch.manual_seed(seed)
        self.config, self.device = config, pick_device(device)
        self.model = build(config).to(self.device)
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        weights = [p for name, p in self.model.named_parameters() if name != "log_eta"]
        self.optimizer = torch.optim.AdamW([{"params": weights}, {"params": [self.model.log_eta], "weight_decay": 0.0}],
                                           lr=config.lr, weight_decay=config.weight_decay, fused=True)
        self.steps = 0

    def step(self, batch: dict[str, np.ndarray], lr_scale: float = 1.0) -> dict[str, float]:
        """One gradient step at `lr_scale` x the config's learning rate; `batch["caption"]` holds
        caption embeddings (B, caption_dim). Returns the losses, Q, entropy and samples/s of this step."""
        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * lr_scale
        arrays = {k: np.asarray(batch[k], dtype=np.float32) for k in _KEYS}
        for key, values in arrays.items():
            if not np.isfinite(values).all():
                raise ValueError(f"batch field {key} has non-finite values")
        arrays["caption"], index = distinct_rows(arrays["caption"])
        tensors = {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}
        tensors["caption_index"] = torch.as_tensor(index, device=self.device)
        # Absent: every action demonstrates its caption, and no step reached its skill's goal.
        for key, absent in (("imitate", 1.0), ("success", 0.0)):
            values = batch.get(key)
            tensors[key] = (torch.full_like(tensors["reward"], absent) if values is None else
                            torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device))
        if not self.model.normalizer_ready:  # the first batch's states and captions set the input statistics
            states = torch.cat([tensors["observation"], tensors["next_observation"]])
            captions = tensors["caption"][tensors["caption_index"]]
            self.model.set_normalizer(states, captions)
            self.target.set_normalizer(states, captions)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss, metrics = pac_losses(self.model, self.target, tensors, self.config)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.steps}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.model.parameters()), self.config.target_tau)
        self.steps += 1
        out = {k: float(v) for k, v in metrics.items()}
        out["samples_per_s"] = len(batch["observation"]) / (time.perf_counter() - started)
        return out

    def act(self, observation: np.ndarray, caption: np.ndarray, greedy: bool = True) -> np.ndarray:
        """Actions (B, action_dim) in [-1, 1] for observations (B, obs_dim) and caption embeddings:
        the policy's expected action (greedy; with `act_candidates`, the critic's pick among it and
        samples of the policy), or one sampled."""
        with torch.no_grad():
            obs = torch.as_tensor(np.asarray(observation, np.float32), device=self.device)
            cap = torch.as_tensor(np.asarray(caption, np.float32), device=self.device)
            z = self.model.encode(obs, cap)
            logits = self.model.policy_logits(z)
            if not greedy:
                return sample_actions(logits, 1, self.config)[1][:, 0].cpu().numpy()
            action = mean_action(logits, self.config)
            if self.config.act_candidates and self.config.alpha < 1.0:
                candidates = torch.cat([action[:, None], sample_actions(logits, self.config.act_candidates,
                                                                         self.config)[1]], 1)
                best = q_values(self.model, z, candidates, self.config).argmax(-1)
                action = candidates[torch.arange(len(best)), best]
            return action.cpu().numpy()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def forget_normalizer(self) -> None:
        """The next step sets the input statistics again (from its batch), as the first step did."""
        self.model.normalizer_ready.zero_()
        self.target.normalizer_ready.zero_()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]


def distinct_rows(captions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, index of each row among them): a batch's captions are a few skills' (exact
    copies), so the networks read each once. Hashing the rows' bytes is ~30x faster than np.unique."""
    seen: dict[bytes, int] = {}
    index = np.fromiter((seen.setdefault(row.tobytes(), len(seen)) for row in captions), np.int64, len(captions))
    return captions[np.unique(index, return_index=True)[1]], index


def parameter_count(config: PACConfig) -> int:
    """Parameters of the model for `config`, without allocating them (the meta device)."""
    with torch.device("meta"):
        model = build(config)
    return sum(p.numel() for p in model.parameters())
