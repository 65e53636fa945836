"""White-box NGD (papers/000): the first-order reference for ZO-NGD, on true gradients."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from l2l.optimizers.core.base import ZOOptimizer, ZOState, lr_from_delta
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.zo_ngd import check_gamma, damped_fisher_solve
from l2l.oracle import Oracle


@register_optimizer("fo_ngd")
@dataclass
class FONGD(ZOOptimizer):
    """x <- Proj(x - (delta/d) F^-1 grad f), F = grad log p_t grad log p_t^T + gamma I (exact gradients).

    A white-box *reference*, not a black-box attack: it reads the true gradients of the loss and of
    log p(t | x) through ``oracle.value_and_grads_with_likelihood``, one forward (and backward) pass,
    counted as one query as papers/000 counts white-box queries.

    Args:
        delta: the learning rate lambda is delta / d.
        gamma: Fisher damping (papers/000: 0.01).
    """

    white_box: ClassVar[bool] = True
    requires: ClassVar[frozenset[str]] = frozenset({"likelihood"})

    delta: float = 30.0
    gamma: float = 0.01

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"delta={self.delta!r} must be > 0 (the learning rate is delta / d)")
        check_gamma(self.gamma)

    @property
    def evaluates_iterate(self) -> bool:
        return True

    def queries_per_step(self, dim: int) -> int:
        return 1

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        fx, grad, score = oracle.value_and_grads_with_likelihood(state.x)
        natural = damped_fisher_solve(grad, score, self.gamma)
        state.x = oracle.project(state.x - lr_from_delta(self.delta, state.x.shape[0]) * natural)
        state.fx = fx
        state.step += 1
        return state

    def config(self) -> dict:
        return asdict(self)
