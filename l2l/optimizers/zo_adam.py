"""ZO-Adam (Chen et al., 2017): Adam moments on the gradient estimate, with bias correction."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.estimators import Estimate
from l2l.optimizers.core.base import GradientEstimateOptimizer, ZOState, check_betas
from l2l.optimizers.core.registry import register_optimizer


@register_optimizer("zo_adam")
@dataclass
class ZOAdam(GradientEstimateOptimizer):
    """Adam on ZO gradient estimates.

    Args (besides those of :class:`GradientEstimateOptimizer`):
        beta1: decay of the first moment.
        beta2: decay of the second moment.
        eps: added to the root of the second moment.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_betas(self.beta1, self.beta2)

    def init_slots(self, state: ZOState) -> None:
        state.slots["m"] = torch.zeros_like(state.x)
        state.slots["v"] = torch.zeros_like(state.x)

    def update(self, state: ZOState, est: Estimate, lr: float) -> torch.Tensor:
        m, v, t = state.slots["m"], state.slots["v"], state.step + 1
        m.mul_(self.beta1).add_(est.grad, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(est.grad, est.grad, value=1 - self.beta2)
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return state.x - lr * m_hat / (v_hat.sqrt() + self.eps)
