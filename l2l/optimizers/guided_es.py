"""Guided ES (Maheswaranathan et al., 2018; papers/002 app. B): search biased toward recent estimates."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.estimators import Estimate, forward_difference, guided_basis, guided_directions
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.zo_sgd import ZOSGD
from l2l.oracle import Oracle


@register_optimizer("guided_es")
@dataclass
class GuidedES(ZOSGD):
    """ZO-SGD whose q query directions come from N(0, alpha I + (1 - alpha) (d/k) U U^T).

    U [d, k] is an orthonormal basis (QR) of the last k gradient estimates, the surrogate gradients;
    see :func:`l2l.estimators.guided_directions` for the covariance and its normalization. The first
    step, with no surrogate yet, samples N(0, I). A step costs q+1 queries (forward differences).

    Args (besides those of :class:`GradientEstimateOptimizer`):
        alpha: weight of the full space against the guided subspace (papers/002: 0.5).
        k: surrogate gradients kept (papers/002: 2).
        estimator: ``gaussian`` (the only kind: the guided directions replace its sampler).
    """

    alpha: float = 0.5
    k: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha!r} must be in [0, 1] (the weight of the full space)")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k={self.k!r} must be an integer >= 1 (surrogate gradients kept)")
        if self.estimator != "gaussian":
            raise ValueError(f"estimator={self.estimator!r}: Guided ES samples its own Gaussian directions")

    def init_slots(self, state: ZOState) -> None:
        state.slots["surrogates"] = []

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        surrogates: list[torch.Tensor] = state.slots["surrogates"]
        basis = guided_basis(torch.stack(surrogates)) if surrogates else None
        dim = state.x.shape[0]
        directions = guided_directions(self.q, dim, state.rng, basis, self.alpha)
        est = forward_difference(oracle, state.x, directions, self.mu)
        state.slots["surrogates"] = [*surrogates, est.grad][-self.k :]
        return est
