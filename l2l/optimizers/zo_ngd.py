"""ZO-NGD (papers/000): zeroth-order natural gradient descent with a damped rank-one Fisher matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.estimators import Estimate, forward_estimate, forward_points
from l2l.optimizers.core.base import GradientEstimateOptimizer, ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.oracle import Oracle


def check_gamma(gamma: float) -> float:
    if not gamma > 0:
        raise ValueError(f"gamma={gamma!r} must be > 0 (the Fisher damping; it keeps F invertible)")
    return float(gamma)


def damped_fisher_solve(grad: torch.Tensor, score: torch.Tensor, gamma: float) -> torch.Tensor:
    """F^-1 grad for the damped rank-one Fisher F = s s^T + gamma I (papers/000 eq. 18), in O(d).

    Sherman-Morrison (eq. 20-22): with c^2 = ||s||^2, F^-1 = ((c^2 + gamma)^-1 - gamma^-1) / c^2 s s^T
    + gamma^-1 I. The coefficient simplifies exactly to -1 / (gamma (c^2 + gamma)), which we use: it
    needs no special case at s = 0 and avoids the cancellation of two nearly equal inverses when
    c^2 << gamma (early in an attack log p_t is saturated and s is tiny). No d x d matrix is formed.
    """
    gamma = check_gamma(gamma)
    c2 = score.dot(score)
    return grad / gamma - score * (score.dot(grad) / (gamma * (c2 + gamma)))


@register_optimizer("zo_ngd")
@dataclass
class ZONGD(GradientEstimateOptimizer):
    """x <- Proj(x - (delta/d) F^-1 g_hat), F = s_hat s_hat^T + gamma I (papers/000 Algorithm 1).

    Each step queries x and x + mu u_j (j = 1..R, R = q): R+1 queries, from which the black box's
    scores give both the loss estimate g_hat (eq. 16) and the log-likelihood estimate s_hat of
    log p(t | x) (eq. 17), so the Fisher costs no extra query. Needs a score-based task
    (``Task.loss_and_log_likelihood``), e.g. ``mnist_attack_linf``.

    Both estimates use the estimator's unbiased scaling (``sphere`` multiplies eq. 16-17 by d, which
    the paper folds into lambda and gamma), so gamma means the same here as in the white-box ``fo_ngd``.

    Args (besides those of :class:`GradientEstimateOptimizer`):
        delta: the learning rate lambda is delta / d.
        q: R, directions per step (papers/000: 40).
        mu: smoothing radius (papers/000: 1 with unit-sphere directions).
        estimator: ``sphere`` (Algorithm 1) or ``gaussian`` (eq. 14-15); forward differences only.
        gamma: Fisher damping (papers/000: 0.01).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"likelihood"})

    delta: float = 10.0
    q: int = 40
    mu: float = 1.0
    estimator: str = "sphere"
    gamma: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_gamma(self.gamma)
        if not self.spec.evaluates_x:
            raise ValueError(
                f"estimator={self.estimator!r}: ZO-NGD needs forward differences (sphere or gaussian), "
                "whose R+1 queries include f(x) itself"
            )

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        dim = state.x.shape[0]
        directions = self.spec.directions(dim, state.rng)
        losses, log_likelihoods = oracle.query_with_likelihood(forward_points(state.x, directions, self.mu))
        scale = self.spec.scale(dim)
        state.slots["score"] = forward_estimate(log_likelihoods, directions, self.mu, scale).grad
        return forward_estimate(losses, directions, self.mu, scale)

    def update(self, state: ZOState, est: Estimate, lr: float) -> torch.Tensor:
        return state.x - lr * damped_fisher_solve(est.grad, state.slots["score"], self.gamma)
