"""Base steps: the hand-designed ZO-SGD and ZO-Adam steps that an update rule may take or correct.

A base step is ``lr * d`` with lr = base_delta / d_dim (papers/002's step-size convention) and d its
direction for the estimate g: g itself (ZO-SGD) or Adam's m_hat / (sqrt(v_hat) + 1e-8) (ZO-Adam).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import check_betas, lr_from_delta


@dataclass(frozen=True)
class BaseStep(abc.ABC):
    """A hand-designed step direction and its learning rate.

    Args:
        base_delta: the learning-rate constant, lr = base_delta / d (> 0).
    """

    base_delta: float

    #: options taken from a tuned baseline when unset: option -> (baseline, its parameter)
    tuned: ClassVar[dict[str, tuple[str, str]]] = {}

    def __post_init__(self) -> None:
        if not self.base_delta > 0:
            raise ValueError(f"base_delta={self.base_delta!r} must be > 0 (the base learning rate is it / d)")

    def lr(self, dim: int) -> float:
        """The learning rate on a ``dim``-dimensional optimizee."""
        return lr_from_delta(self.base_delta, dim)

    def initial_carry(self, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The base's statistics at the start of a run (default: none)."""
        return {}

    @abc.abstractmethod
    def direction(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """The descent direction d for the estimate ``grad`` (updates the statistics in ``carry``)."""


@dataclass(frozen=True)
class SGDBase(BaseStep):
    """ZO-SGD: d = g."""

    tuned: ClassVar[dict[str, tuple[str, str]]] = {"base_delta": ("zo_sgd", "delta")}

    def direction(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        return grad


@dataclass(frozen=True)
class AdamBase(BaseStep):
    """ZO-Adam: d = m_hat / (sqrt(v_hat) + 1e-8) with the base's decays.

    The moments use the detached estimate except m's newest term, so the meta-gradient of a learned
    correction reaches the estimate through (1 - beta1) g.

    Args:
        base_beta1: first-moment decay, in [0, 1).
        base_beta2: second-moment decay, in [0, 1).
    """

    base_beta1: float
    base_beta2: float

    tuned: ClassVar[dict[str, tuple[str, str]]] = {
        f"base_{k}": ("zo_adam", k) for k in ("delta", "beta1", "beta2")
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_betas(self.base_beta1, self.base_beta2)

    def initial_carry(self, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        zeros = torch.zeros(dim, device=device)
        return {"base_m": zeros, "base_v": zeros.clone(), "base_t": torch.zeros((), device=device)}

    def direction(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        b1, b2 = self.base_beta1, self.base_beta2
        carry["base_t"] = t = carry["base_t"] + 1
        carry["base_m"] = b1 * carry["base_m"].detach() + (1 - b1) * grad
        carry["base_v"] = b2 * carry["base_v"] + (1 - b2) * grad.detach() ** 2
        return carry["base_m"] / (1 - b1**t) / ((carry["base_v"] / (1 - b2**t)).sqrt() + 1e-8)


#: base name (the part of an ``update`` value before ``+rnn``) -> its step
BASE_STEPS: dict[str, type[BaseStep]] = {"sgd": SGDBase, "adam": AdamBase}
