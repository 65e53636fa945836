"""A learned guided sampler (papers/003's guided form): a policy network sets the mean of each step's
directions, and ZO-SGD steps along their forward-difference estimate (q + 1 queries per step).

Each step draws u_i = a + z_i, z_i ~ N(0, I), i = 1..q, estimates g = 1/(mu q) sum_i [f(x + mu u_i) -
f(x)] u_i and moves x <- proj(x - (delta / d) g), as ZO-Trend (:mod:`l2l.optimizers.zo_trend`) does.
What is learned is the mean a: from the trend m, the running mean (decay ``decay``) of the estimates'
fresh parts (:func:`l2l.estimators.update_trend`: unbiased for the gradient whatever a is, which is
what papers/003's trend work showed a guided policy should observe),

    a = strength * m / max|m| + net(m / max|m|, m / rms(m)),

with ``net`` a small coordinatewise MLP (so one policy steps optimizees of any dimension) whose output
layer starts at zero. So the untrained control is ZO-Trend with the same settings, and training can only
add to the trend copier that one-step credit (DDPG, imitation) never found. The sampler is meant to be
trained by ES on whole runs (``train.learned --optimizer guided_sampler --meta-grad es``), since a good
mean pays off only over a run; its differentiable step also lets truncated BPTT train it.

The defaults of the step's settings are ZO-Trend's tuned ones on ``binary_classification``
(l2l/optimizers/tuned.json: q 20, mu 0.01, delta 50, decay 0.99, strength 1), so a comparison with the
tuned ZO-Trend isolates the learned mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from l2l.common.config import doc_field
from l2l.estimators import (
    Estimate,
    Objective,
    check_mu,
    check_q,
    forward_difference,
    gaussian_directions,
    trend_mean,
    update_trend,
)
from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Project, Stage, TrainStep, register_learned
from l2l.optimizers.core.base import ZOState, lr_from_delta
from l2l.optimizers.zo_trend import ZOTrend
from l2l.oracle import Oracle

#: the policy's input features per coordinate (m / max|m|, m / rms(m)); the second is clipped to this
FEATURE_CLIP = 5.0


class MeanPolicy(nn.Module):
    """Coordinatewise MLP: features of the trend -> a correction of each coordinate's direction mean.

    Args:
        hidden: hidden units.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = nn.Linear(2, hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)  # untrained: no correction, i.e. ZO-Trend's mean
        nn.init.zeros_(self.out.bias)

    def forward(self, trend: torch.Tensor) -> torch.Tensor:
        """The correction [d] for the trend [d] (zeros while the trend is zero: the first step)."""
        top = trend.abs().max()
        if not float(top.detach()) > 0:
            return torch.zeros_like(trend)
        rms = trend.pow(2).mean().sqrt()
        features = torch.stack([trend / top, (trend / rms).clamp(-FEATURE_CLIP, FEATURE_CLIP)], dim=1)
        return self.out(torch.tanh(self.hidden(features))).squeeze(1)


@dataclass
class GuidedSamplerConfig(LearnedConfig):
    """Meta-train the guided sampler's mean policy (one stage)."""

    q: int = doc_field(20, "query directions per step (q + 1 queries)")
    mu: float = doc_field(0.01, "finite-difference smoothing radius")
    delta: float = doc_field(50.0, "step size: x <- x - (delta / d) g")
    decay: float = doc_field(0.99, "the trend's running-mean decay, in [0, 1)")
    strength: float = doc_field(1.0, "the trend term's largest entry (ZO-Trend's strength)")
    hidden: int = doc_field(8, "hidden units of the coordinatewise policy")
    meta_lr: float = doc_field(0.01, "Adam learning rate of the policy")

    def __post_init__(self) -> None:
        if self.hidden < 1 or not self.meta_lr > 0:
            raise ValueError(f"hidden={self.hidden} must be >= 1 and meta_lr={self.meta_lr!r} > 0")
        super().__post_init__()

    def new_optimizer(self) -> GuidedSampler:
        """The sampler this config describes (its policy's output layer at zero)."""
        return GuidedSampler(
            q=self.q, mu=self.mu, delta=self.delta, decay=self.decay, strength=self.strength,
            hidden=self.hidden, init_seed=self.seed,
        )  # fmt: skip


@register_learned("guided_sampler")
@dataclass
class GuidedSampler(ZOTrend, LearnedOptimizer):
    """ZO-SGD over u_i = a + z_i with a learned mean a (see the module docstring); q + 1 queries a step.

    Args (besides ZO-Trend's delta, q, mu, strength and decay):
        hidden: hidden units of the policy.
        init_seed: seed of the policy's initial weights.
    """

    delta: float = 50.0
    mu: float = 0.01
    hidden: int = 8
    init_seed: int = 0

    name: ClassVar[str] = "guided_sampler"  # not ZO-Trend's registry name, in messages
    title: ClassVar[str] = "guided sampler"
    config_class: ClassVar[type[LearnedConfig]] = GuidedSamplerConfig
    architecture: ClassVar[tuple[str, ...]] = ("hidden",)
    train_command: ClassVar[str] = (
        "python -m train.learned --optimizer <name> --task binary_classification --meta-grad es "
        "--meta-objective final_loss"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_q(self.q)
        check_mu(self.mu)
        if self.hidden < 1:
            raise ValueError(f"hidden={self.hidden} must be >= 1")
        with torch.random.fork_rng(devices=[]):  # weights depend only on init_seed
            torch.manual_seed(self.init_seed)
            self.policy = MeanPolicy(self.hidden)

    def modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    def initial_carry(self, dim: int) -> dict[str, torch.Tensor]:
        return {"trend": torch.zeros(dim, device=self.policy.out.weight.device)}

    init_slots = LearnedOptimizer.init_slots

    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        if not isinstance(config, GuidedSamplerConfig):
            raise TypeError(
                f"guided_sampler trains with a GuidedSamplerConfig, not a {type(config).__name__}"
            )
        return (Stage("policy", ("policy",), config.meta_lr),)

    def mean(self, trend: torch.Tensor) -> torch.Tensor:
        """The directions' mean a for the trend m: ZO-Trend's plus the policy's correction."""
        return trend_mean(trend, self.strength) + self.policy(trend)

    def _guided(self, f: Objective, x: torch.Tensor, carry: dict, rng: torch.Generator) -> Estimate:
        """One step's estimate over a + z_i; the carry's trend moves on with its fresh part."""
        mean = self.mean(carry["trend"])
        est = forward_difference(f, x, mean + gaussian_directions(self.q, x.shape[0], rng), self.mu)
        carry["trend"] = update_trend(carry["trend"], est, mean, self.decay)
        return est

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        with torch.no_grad():
            return self._guided(oracle, state.x, state.slots, state.rng)

    def train_step(
        self, x: torch.Tensor, carry: dict, f: Objective, rng: torch.Generator, project: Project
    ) -> TrainStep:
        est = self._guided(f, x, carry, rng)
        return TrainStep(x=project(x - lr_from_delta(self.delta, x.shape[0]) * est.grad))
