"""ZOO-Newton (papers/001 Alg. 3): coordinatewise Newton steps from the eq. 13 Hessian estimate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.zoo import CoordinateEstimate, ZOOBase


@register_optimizer("zoo_newton")
@dataclass
class ZOONewton(ZOOBase):
    """y_i <- y_i - lr * g_i / h_i where the curvature estimate h_i > 0, else y_i - lr * g_i.

    Args (besides those of :class:`~l2l.optimizers.core.zoo.ZOOBase`):
        min_hessian: positive curvature estimates below it are raised to it, so a near-zero (often
            rounding-noise) h_i cannot blow the step up (the official ZOO code: 0.1).
    """

    min_hessian: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.min_hessian > 0:
            raise ValueError(
                f"min_hessian={self.min_hessian!r} must be > 0 (the floor on curvature estimates)"
            )

    def init_coordinate_state(self, state: ZOState, size: int) -> None:
        """Newton keeps no per-coordinate state."""

    def coordinate_update(
        self, state: ZOState, coords: torch.Tensor, est: CoordinateEstimate
    ) -> torch.Tensor:
        # A non-positive curvature carries no usable second-order information: take a gradient step.
        curvature = torch.where(
            est.hess <= 0, torch.ones_like(est.hess), est.hess.clamp_min(self.min_hessian)
        )
        return state.slots["y"][coords] - self.lr * est.grad / curvature
