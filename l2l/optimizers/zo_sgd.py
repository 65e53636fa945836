"""ZO-SGD (Ghadimi & Lan, 2013): a plain step along the negative gradient estimate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.estimators import Estimate
from l2l.optimizers.core.base import GradientEstimateOptimizer, ZOState
from l2l.optimizers.core.registry import register_optimizer


@register_optimizer("zo_sgd")
@dataclass
class ZOSGD(GradientEstimateOptimizer):
    """x <- x - (delta/d) * g_hat."""

    def update(self, state: ZOState, est: Estimate, lr: float) -> torch.Tensor:
        return state.x - lr * est.grad
