"""ZO-EAD: EAD's FISTA with elastic-net shrinkage (papers/001 Alg. 4) on ZO gradient estimates."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.estimators import EstimatorSpec
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.fista import FistaOptimizer
from l2l.optimizers.core.registry import register_optimizer
from l2l.oracle import Oracle


@register_optimizer("zo_ead")
@dataclass
class ZOEAD(FistaOptimizer):
    """Black-box EAD: the gradient of f at the slack point is a ZO estimate (q+1 queries for gaussian).

    Args (besides those of :class:`~l2l.optimizers.core.fista.FistaOptimizer`):
        q: query directions per step.
        mu: finite-difference smoothing radius.
        estimator: estimator kind (``gaussian``, ``sphere``, ``antithetic`` or ``coordinate``).
    """

    q: int = 20
    mu: float = 1e-4
    estimator: str = "gaussian"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.spec = EstimatorSpec(kind=self.estimator, q=self.q, mu=self.mu)

    def queries_per_step(self, dim: int) -> int:
        return self.spec.queries_per_step(dim)

    def gradient(self, state: ZOState, oracle: Oracle, point: torch.Tensor) -> torch.Tensor:
        # f(slack) is not f at the iterate, so state.fx stays None.
        return self.spec.estimate(oracle, point, state.rng).grad
