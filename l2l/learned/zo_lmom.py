"""ZO-LMom: a learned per-coordinate step size and momentum over the ZO gradient estimate.

The second learned optimizer of the protocol (:mod:`l2l.learned.protocol`), small on purpose. One step
at iterate x (q + 1 queries):

1. the forward-difference estimate g along q standard Gaussian directions (eq. 1 of papers/002);
2. a coordinatewise MLP maps the features [g_i / s, m_i / s] (s = RMS of g over coordinates, so the
   features do not depend on the loss's scale; m the momentum buffer) to two numbers (a_i, b_i);
3. beta_i = sigmoid(logit(beta) + a_i), m_i <- beta_i m_i + (1 - beta_i) g_i;
4. x <- x - (delta / d) exp(2 tanh(b_i)) m_i, projected onto the feasible set.

With the MLP's output at zero this is ZO-SGD with heavy-ball momentum ``beta`` and step ``delta / d``
(the ZO-SGD convention of :func:`l2l.optimizers.core.base.lr_from_delta`); the head's initial weights are
scaled by 0.1, so an untrained ZO-LMom (the control) stays near that. The learned step size is bounded
to [e^-2, e^2] times the base one, which keeps early meta-training from diverging. This is our design
(no paper), in the family of the coordinatewise learned optimizers of Andrychowicz et al. (2016), with
an MLP over the estimate and momentum rather than an LSTM. As in the ZO-LSTM, the estimate is taken at
``x.detach()`` (no second-derivative path) and the features are detached; the momentum buffer itself
carries the meta-gradient through the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from l2l.common.config import doc_field
from l2l.common.device import module_device
from l2l.estimators import Objective, check_mu, check_q, forward_difference, gaussian_directions
from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Project, Stage, TrainStep, register_learned
from l2l.optimizers.core.base import ZOState
from l2l.oracle import Oracle


class CoordinatewiseMLP(nn.Module):
    """[d, 2] features -> [d, 2] outputs, the same small MLP for every coordinate.

    Args:
        hidden: hidden units.
    """

    def __init__(self, hidden: int = 8):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden={hidden} must be >= 1 (MLP hidden units)")
        self.body = nn.Sequential(nn.Linear(2, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 2)
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # start near the hand-designed momentum step
            self.head.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` [d, 2] -> (a, b) as [d, 2]."""
        return self.head(self.body(features))


@dataclass
class ZOLMomConfig(LearnedConfig):
    """Meta-train ZO-LMom: one stage that trains its MLP (no regularizer)."""

    q: int = doc_field(20, "query directions per optimizee step (a step costs q + 1 queries)")
    mu: float = doc_field(1e-4, "finite-difference smoothing radius of the ZO estimate")
    hidden: int = doc_field(8, "hidden units of the coordinatewise MLP")
    delta: float = doc_field(0.5, "base step size: x <- x - (delta / d) * learned scale * m")
    beta: float = doc_field(0.9, "base momentum, in (0, 1): beta_i = sigmoid(logit(beta) + a_i)")
    meta_lr: float = doc_field(1e-2, "Adam learning rate of the MLP")

    def __post_init__(self) -> None:
        check_q(self.q)
        check_mu(self.mu)
        if self.hidden < 1 or not self.delta > 0 or not self.meta_lr > 0 or not 0 < self.beta < 1:
            raise ValueError(
                f"hidden={self.hidden} must be >= 1, delta={self.delta!r} and meta_lr={self.meta_lr!r} > 0, "
                f"and beta={self.beta!r} in (0, 1)"
            )
        super().__post_init__()

    def new_optimizer(self) -> ZOLMom:
        """The ZO-LMom this config describes, with random initial weights from ``seed``."""
        return ZOLMom(
            q=self.q, mu=self.mu, hidden=self.hidden, delta=self.delta, beta=self.beta, init_seed=self.seed
        )


@register_learned("zo_lmom")
@dataclass
class ZOLMom(LearnedOptimizer):
    """Learned per-coordinate momentum and step size over the ZO estimate (see the module docstring).

    Args:
        q: query directions per step (q + 1 queries).
        mu: finite-difference smoothing radius.
        hidden: hidden units of the MLP.
        delta: base step size (learning rate delta / d).
        beta: base momentum.
        init_seed: seed of the MLP's initial weights (meta-training starts from them).
    """

    q: int = 20
    mu: float = 1e-4
    hidden: int = 8
    delta: float = 0.5
    beta: float = 0.9
    init_seed: int = 0

    title: ClassVar[str] = "ZO-LMom"
    config_class: ClassVar[type[LearnedConfig]] = ZOLMomConfig
    architecture: ClassVar[tuple[str, ...]] = ("hidden",)

    def __post_init__(self) -> None:
        check_q(self.q)
        check_mu(self.mu)
        if not self.delta > 0 or not 0 < self.beta < 1:
            raise ValueError(f"delta={self.delta!r} must be > 0 and beta={self.beta!r} in (0, 1)")
        with torch.random.fork_rng(devices=[]):  # weights depend only on init_seed
            torch.manual_seed(self.init_seed)
            self.net = CoordinatewiseMLP(self.hidden)

    def queries_per_step(self, dim: int) -> int:
        return self.q + 1

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def initial_carry(self, dim: int) -> dict[str, torch.Tensor]:
        return {"momentum": torch.zeros(dim, device=module_device(self.net))}

    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        if not isinstance(config, ZOLMomConfig):
            raise TypeError(f"ZO-LMom trains with a ZOLMomConfig, not a {type(config).__name__}")
        return (Stage("train", ("net",), config.meta_lr),)

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        with torch.no_grad():
            out = self.train_step(state.x, state.slots, oracle, state.rng, oracle.project)
        state.x, state.fx = out.x, out.aux["fx"]
        state.step += 1
        return state

    def train_step(
        self, x: torch.Tensor, carry: dict, f: Objective, rng: torch.Generator, project: Project
    ) -> TrainStep:
        """One step (the same at evaluation, under no_grad); ``carry['momentum']`` is updated in place."""
        dim = x.shape[0]
        est = forward_difference(f, x.detach(), gaussian_directions(self.q, dim, rng), self.mu)
        grad, momentum = est.grad.detach(), carry["momentum"]
        scale = grad.pow(2).mean().sqrt().clamp_min(1e-12)
        a, b = self.net(torch.stack([grad / scale, momentum.detach() / scale], dim=1)).unbind(dim=1)
        beta = torch.sigmoid(math.log(self.beta / (1 - self.beta)) + a)
        momentum = beta * momentum + (1 - beta) * grad
        new_x = project(x - (self.delta / dim) * torch.exp(2 * torch.tanh(b)) * momentum)
        carry["momentum"] = momentum
        return TrainStep(x=new_x, aux={"fx": est.fx})
