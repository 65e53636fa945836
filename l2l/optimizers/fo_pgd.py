"""FO-PGD: projected gradient descent on true gradients. A white-box reference, not a black-box method."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from l2l.optimizers.base import ZOOptimizer, ZOState, lr_from_delta
from l2l.optimizers.registry import register_optimizer
from l2l.oracle import Oracle


@register_optimizer("fo_pgd")
@dataclass
class FOPGD(ZOOptimizer):
    """x <- project(x - (delta/d) * grad f(x)), or the L-inf step project(x - (delta/d) * sign(grad f(x))).

    WHITE-BOX (``white_box = True``): the gradient comes from ``oracle.value_and_grad`` (one query per
    step), so it is a first-order reference for what black-box methods could reach, never one of them.

    Args:
        delta: step-size constant; the step is delta / d (papers/002 convention).
        sign: step along the gradient's sign (PGD for L-inf-ball attacks, Madry et al.) or along the
            gradient; None picks the sign step exactly when the task has an L-inf radius (``task.eps``
            set, as on ``mnist_attack_linf``).
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
        direction = grad.sign() if self.uses_sign(oracle) else grad
        state.x = oracle.project(state.x - lr_from_delta(self.delta, state.x.shape[0]) * direction)
        state.fx, state.step = fx, state.step + 1
        return state

    @property
    def evaluates_iterate(self) -> bool:
        return True

    def uses_sign(self, oracle: Oracle) -> bool:
        """The explicit ``sign``, else whether the task is L-inf-bounded (its feasible set is public)."""
        if self.sign is not None:
            return self.sign
        return getattr(oracle.task, "eps", None) is not None

    def config(self) -> dict:
        return asdict(self)
