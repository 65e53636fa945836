"""ZO-RL's agent: stable-baselines3's DDPG with Algorithm 2's Gaussian warm start and switch (papers/003).

Until the switch, every step of Algorithm 2 does two things at the current iterate x_k
(:meth:`envs.zo_env.ZOEnv.probe`, q + 1 queries):

- a q-direction Gaussian estimate g_hat (lines 4-5) and the policy's two-query estimate g_tilde (lines
  8-9), and their cosine similarity rho (line 11, eq. 3);
- the step itself moves along g_hat (line 6): the agent takes the action along g_hat, and that action,
  the one really taken, is what the replay buffer stores with its reward (line 15). The networks train
  on these transitions from ``learning_starts`` on (line 16), so the actor starts from good directions.

Once rho reaches ``switch_threshold`` the agent acts with its policy plus exploration noise, as plain
DDPG, for good (line 13). One rho is a noisy single sample (its std is about 1/sqrt(d) for a random
policy: 0.036 on MNIST), so the switch compares the *mean* rho of the last ``switch_window`` steps; a
window of 1 is Algorithm 2 as printed.

With ``imitate`` (our addition, not in papers/003) the actor learns the warm-start actions directly
until the switch: each gradient step regresses it onto the buffer's actions, which are all Gaussian
estimates' directions then, by least squares (behaviour cloning, as DDPG from demonstrations does), while
the critic learns by TD as usual. The least-squares fit is the mean warm-start action given the
observation, so where single estimates disagree (they are noisy: cos(g_hat, grad) ~ 0.16 on MNIST)
the mean action shrinks, and a guided policy's bias a of its directions a + z_i grows only as far as the
estimates agree. Why: the DDPG actor, driven by the critic alone, settled on one fixed direction that
does not track the gradient, while an offline regression on such black-box estimates tracked it on
held-out instances (docs/results/zo_rl.md, "Imitating the warm-start estimates"). After the switch the
actor follows the critic, as DDPG.

That shrinkage is what ``imitation_loss="cosine"`` avoids: it fits the direction by 1 - cos and the size
separately, to the warm-start actions' own norm (their largest entry is 1), so the policy's mean keeps
full strength however noisy the estimates are. Full strength pays only where the mean's error is fresh
at every step; one held from step to step costs more than the cosine gains (docs/results/zo_rl.md, "Cosine
imitation over whole runs").

Which threshold: g_hat itself is a noisy estimate, cos(g_hat, grad) ~ sqrt(q / (d + q)), so rho is
roughly cos(policy, grad) * sqrt(q / (d + q)). The default, :func:`default_switch_threshold`
= q / (d + q), switches when the policy's two-query direction is about as accurate as the q-direction
Gaussian estimate it replaces (0.025 for q = 20 on MNIST, 0.17 on binary classification, d = 100).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from stable_baselines3 import DDPG
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.save_util import recursive_getattr
from stable_baselines3.common.utils import polyak_update

from agents.networks import TARGETS
from l2l.common.io import atomic_write


def squares_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least squares: the fit is the mean target action given the observation."""
    return (predicted - target).pow(2).sum(dim=1).mean()


def cosine_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos(predicted, target), plus the squared relative error of the norm: direction and size apart."""
    cos = torch.nn.functional.cosine_similarity(predicted, target, dim=1, eps=1e-12)
    size = target.norm(dim=1).clamp_min(1e-12)
    return (1 - cos).mean() + ((predicted.norm(dim=1) - size) / size).pow(2).mean()


#: imitation losses by name (``ZORLAgent(imitation_loss=...)``)
IMITATION_LOSSES = {"squares": squares_loss, "cosine": cosine_loss}

#: the optimizers of stable-baselines3's DDPG, saved as ``<name>.pth`` entries of a zip
OPTIMIZERS = ("actor.optimizer", "critic.optimizer")


def default_switch_threshold(q: int, dim: int) -> float:
    """q / (d + q): rho of a policy as accurate as a q-direction Gaussian estimate (module docstring)."""
    return q / (dim + q)


class ZORLAgent(DDPG):
    """DDPG with the warm start and switch of papers/003 Algorithm 2 (see the module docstring).

    The environment must be a :class:`envs.zo_env.ZOEnv` (it answers ``probe``). Extra arguments:

    Args:
        switch_threshold: epsilon: act with the policy once the windowed mean rho reaches it; ``auto``:
            :func:`default_switch_threshold`; None switches at once (plain DDPG, no warm start).
        switch_window: rho values averaged for the switch test (1: Algorithm 2 as printed).
        probe_q: q, the Gaussian directions of the warm-start estimate.
        imitate: until the switch, the actor regresses onto the warm-start actions instead of following
            the critic (module docstring).
        imitation_loss: ``squares``: least squares onto the actions; ``cosine``: 1 - cos to each action
            plus the squared relative error of its norm (module docstring).
        **kwargs: stable-baselines3 ``DDPG`` arguments (policy, env, learning_rate, buffer_size, ...).
    """

    def __init__(
        self,
        *args: Any,
        switch_threshold: float | Literal["auto"] | None = "auto",
        switch_window: int = 50,
        probe_q: int = 20,
        imitate: bool = False,
        imitation_loss: Literal["squares", "cosine"] = "squares",
        **kwargs: Any,
    ):
        if switch_window < 1 or probe_q < 1:
            raise ValueError(f"switch_window={switch_window} and probe_q={probe_q} must both be >= 1")
        if imitation_loss not in IMITATION_LOSSES:
            raise ValueError(f"imitation_loss={imitation_loss!r}; choose one of {sorted(IMITATION_LOSSES)}")
        self.switch_threshold = switch_threshold
        self.switch_window = switch_window
        self.probe_q = probe_q
        self.imitate = imitate
        self.imitation_loss = imitation_loss
        self.switched = switch_threshold is None
        self.switch_step: int | None = 0 if self.switched else None
        self.rho_window: deque[float] = deque(maxlen=switch_window)
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.switch_threshold == "auto":  # the action space is known from here on
            self.switch_threshold = default_switch_threshold(
                self.probe_q, int(np.prod(self.action_space.shape))
            )

    @property
    def rho_mean(self) -> float | None:
        """Mean rho over the switch window (None before the first probe)."""
        return float(np.mean(self.rho_window)) if self.rho_window else None

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Algorithm 2 lines 3-11: the Gaussian warm-start action until the switch, then DDPG's.

        With the warm start, the Gaussian phase replaces stable-baselines3's uniform-random warm-up:
        once switched, the policy acts even before ``learning_starts`` (which then only delays training).
        """
        if self.switched:
            warmup = learning_starts if self.switch_threshold is None else 0
            return super()._sample_action(warmup, action_noise, n_envs)
        assert self.env is not None and self._last_obs is not None
        policy_actions, _ = self.predict(self._last_obs, deterministic=True)
        probes = [
            self.env.env_method("probe", policy_actions[i], self.probe_q, indices=[i])[0]
            for i in range(n_envs)
        ]
        self.rho_window.extend(probe["rho"] for probe in probes)
        self.logger.record("zo_rl/rho", float(np.mean([p["rho"] for p in probes])))
        self.logger.record("zo_rl/rho_mean", self.rho_mean)
        if len(self.rho_window) == self.switch_window and self.rho_mean >= self.switch_threshold:  # type: ignore[operator]
            self.switched, self.switch_step = True, self.num_timesteps
            return self._sample_action(learning_starts, action_noise, n_envs)
        # The warm-start action: the env steps along g_hat and the buffer stores exactly that action
        # (ZOEnv's action box is [-1, 1], where stable-baselines3's action scaling is the identity).
        warm = np.stack([p["gaussian_action"] for p in probes]).astype(np.float32)
        return warm, warm.copy()

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """DDPG's updates; before the switch with ``imitate``: the critic by TD, the actor by imitation."""
        if self.switched or not self.imitate:
            return super().train(gradient_steps, batch_size)
        delay, self.policy_delay = self.policy_delay, 2**62  # TD3's loop then leaves the actor alone
        try:
            super().train(gradient_steps, batch_size)
        finally:
            self.policy_delay = delay
        losses = [self._imitation_step(batch_size) for _ in range(gradient_steps)]
        self.logger.record("train/imitation_loss", float(np.mean(losses)))

    def _imitation_step(self, batch_size: int) -> float:
        """One ``imitation_loss`` step of the actor onto replayed warm-start actions; the target updates."""
        assert self.replay_buffer is not None
        batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
        loss = IMITATION_LOSSES[self.imitation_loss](self.actor(batch.observations), batch.actions)
        self.actor.optimizer.zero_grad()
        loss.backward()
        self.actor.optimizer.step()
        polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
        polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
        polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
        polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)
        return loss.item()

    def _on_step(self) -> None:
        super()._on_step()
        self.logger.record("zo_rl/switched", float(self.switched))

    #: saved policies for use only (:meth:`save_policy_only`) hold no optimizer moments or target networks
    policy_only = False

    def save_policy_only(self, path: str | os.PathLike) -> None:
        """Save the actor and critic alone: what ``zo_rl`` needs, a third of a full save on MNIST.

        The zip keeps stable-baselines3's layout, so ``stable_baselines3.DDPG.load`` reads it: the
        optimizer entries hold their settings without Adam's moments, and the policy's state leaves the
        target networks out (:meth:`agents.networks.ZORLPolicy.load_state_dict` starts them as copies of
        the networks, as DDPG's set-up does). Training can go on from such a file, but not exactly as
        before: the targets and Adam's moments start afresh.
        """
        previous, self.policy_only = self.policy_only, True
        try:
            self.save(path)
        finally:
            self.policy_only = previous

    def get_parameters(self) -> dict[str, dict]:
        params = super().get_parameters()
        if self.policy_only:
            params["policy"] = {k: v for k, v in params["policy"].items() if not k.startswith(TARGETS)}
            for name in OPTIMIZERS:
                params[name] = {"state": {}, "param_groups": params[name]["param_groups"]}
        return params

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: Any = "auto") -> None:
        if self.policy_only and isinstance(load_path_or_dict, dict):
            load_path_or_dict = self._complete_policy_only(load_path_or_dict)
        super().set_parameters(load_path_or_dict, exact_match, device)

    def _complete_policy_only(self, params: dict[str, Any]) -> dict[str, Any]:
        """A policy-only save's parameters, checked, with fresh optimizer states where the zip has none.

        Policy-only zips written before their optimizer entries existed (those shipped until issue 14's
        item 5; :func:`upgrade_policy_zip` adds them) hold ``policy`` alone.
        """
        saved, expected = set(params.get("policy", {})), set(self.policy.state_dict())
        missing = {k for k in expected - saved if not k.startswith(TARGETS)}
        wrong = sorted(missing | (saved - expected))
        if wrong:
            raise ValueError(f"a policy-only save does not match this agent's networks: {wrong[:5]}")
        absent = [name for name in OPTIMIZERS if name not in params]
        return {**params, **{name: recursive_getattr(self, name).state_dict() for name in absent}}


def upgrade_policy_zip(path: str | os.PathLike) -> bool:
    """Rewrite a policy-only zip without optimizer entries so that ``stable_baselines3.DDPG.load`` reads it.

    Zips saved by :meth:`ZORLAgent.save_policy_only` before it wrote optimizer entries (the ZO-RL zips
    shipped until issue 14's item 5) hold ``policy.pth`` alone, and stable-baselines3's ``load``
    insists on every state dict the algorithm saves. This adds ``actor.optimizer.pth`` and
    ``critic.optimizer.pth`` with the optimizers' settings and no moments, what a policy-only save now
    writes. Every other entry is copied byte for byte, so the networks and the loaded optimizer stay
    bit-identical. The file is replaced atomically.

    Args:
        path: the policy zip, rewritten in place.

    Returns:
        Whether the file was rewritten (False: it has its optimizer entries already).

    Raises:
        ValueError: the file is not a policy-only zip of a :class:`ZORLAgent`.
    """
    path = Path(path)
    names, data = _zip_contents(path)
    if "policy.pth" not in names or data.get("policy_only") is not True:
        raise ValueError(
            f"{str(path)!r} is not a policy-only ZO-RL zip (one that ZORLAgent.save_policy_only or "
            "train.ddpg_policy writes); nothing else is upgraded"
        )
    absent = [name for name in OPTIMIZERS if f"{name}.pth" not in names]
    if not absent:
        return False
    params = ZORLAgent.load(path, device="cpu", buffer_size=1).get_parameters()
    atomic_write(path, lambda tmp: _copy_zip(path, tmp, {f"{name}.pth": params[name] for name in absent}))
    return True


def _zip_contents(path: Path) -> tuple[list[str], dict[str, Any]]:
    """The entry names of the stable-baselines3 zip at ``path`` and its ``data`` (JSON; {} without)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not a zip file (missing, corrupt or truncated)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = json.loads(archive.read("data")) if "data" in names else {}
    return names, data


def _copy_zip(source: Path, target: Path, extra: dict[str, Any]) -> None:
    """Write ``source``'s entries unchanged (names, dates, compression) and ``extra`` as torch files."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, mode="w") as new:
        for info in old.infolist():
            new.writestr(info, old.read(info))
        for name, obj in extra.items():
            with new.open(name, mode="w", force_zip64=True) as file:  # as stable-baselines3 writes them
                torch.save(obj, file)
