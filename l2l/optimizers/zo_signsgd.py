"""ZO-signSGD (Liu et al., 2019): a step along the sign of the gradient estimate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.estimators import Estimate
from l2l.optimizers.core.base import GradientEstimateOptimizer, ZOState
from l2l.optimizers.core.registry import register_optimizer


@register_optimizer("zo_signsgd")
@dataclass
class ZOSignSGD(GradientEstimateOptimizer):
    """x <- x - (delta/d) * sign(g_hat)."""

    def update(self, state: ZOState, est: Estimate, lr: float) -> torch.Tensor:
        return state.x - lr * torch.sign(est.grad)
