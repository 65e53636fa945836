"""FO-PGD: projected gradient descent on true gradients. A white-box reference, not a black-box method."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState, lr_from_delta
from l2l.optimizers.core.registry import register_optimizer
from l2l.oracle import Oracle


@register_optimizer("fo_pgd")
@dataclass
class FOPGD(ZOOptimizer):
    """x <- project(x - (delta/d) * direction), the direction fitting the task's ball (Madry et al.).

    On an L-inf ball the direction is sign(grad f(x)); on an L2 ball it is the normalized gradient
    grad f(x) / ||grad f(x)||_2 (so delta/d is the L2 length of a step); without a ball it is the
    gradient itself.

    WHITE-BOX (``white_box = True``): the gradient comes from ``oracle.value_and_grad`` (one query per
    step), so it is a first-order reference for what black-box methods could reach, never one of them.

    Args:
        delta: step-size constant; the step is delta / d (papers/002 convention).
        sign: step along the gradient's sign (True) or along the gradient (False); None picks the
            direction from the task's ball (``Task.ball``) as above.
    """

    white_box: ClassVar[bool] = True

    delta: float = 1.0
    sign: bool | None = None

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"delta={self.delta!r} must be > 0 (the step size is delta / d)")

    def queries_per_step(self, dim: int) -> int:
        return 1

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        fx, grad = oracle.value_and_grad(state.x)
        direction = self.direction(grad, oracle)
        state.x = oracle.project(state.x - lr_from_delta(self.delta, state.x.shape[0]) * direction)
        state.fx, state.step = fx, state.step + 1
        return state

    @property
    def evaluates_iterate(self) -> bool:
        return True

    def direction(self, grad: torch.Tensor, oracle: Oracle) -> torch.Tensor:
        """The step direction: the explicit ``sign`` choice, else the one the task's ball calls for."""
        ball = oracle.task.ball  # the feasible set is public knowledge
        if self.sign or (self.sign is None and ball is not None and ball.norm == "linf"):
            return grad.sign()
        if self.sign is None and ball is not None and ball.norm == "l2":
            norm = torch.linalg.vector_norm(grad)
            return grad / norm if norm > 0 else grad
        return grad

    def config(self) -> dict:
        return asdict(self)
