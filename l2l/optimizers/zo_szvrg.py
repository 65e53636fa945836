"""ZO-SZVR-G (Liu et al., 2018; papers/002 app. C.4): ZO-SGD with an SVRG-style control variate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from l2l.estimators import Estimate, check_q, forward_estimate, forward_points
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.zo_sgd import ZOSGD
from l2l.oracle import Oracle


@register_optimizer("zo_szvrg")
@dataclass
class ZOSZVRG(ZOSGD):
    """Epochs of ``epoch`` ZO-SGD steps around a snapshot x~ whose gradient g~ uses q0 directions.

    Snapshot step (the first of each epoch): x~ = x, g~ from q0 Gaussian directions (q0+1 queries), and
    the step uses v = g~. Inner step: v = g(x; U) - g(x~; U) + g~ with the same q directions U at both
    points, so their shared noise cancels; x, x + mu U, x~ and x~ + mu U go in one call (2q+2
    queries: f(x~) is re-queried so that both sides share the step's minibatch on stochastic tasks).
    With papers/002's q = 20, q0 = 100, 10-step epochs: 101 then 9 x 42 queries.

    Args (besides those of :class:`GradientEstimateOptimizer`):
        q0: directions of the snapshot estimate (papers/002: 100).
        epoch: steps per epoch, snapshot step included (papers/002: 10).
        estimator: ``gaussian`` (forward differences; the only kind).
    """

    q0: int = 100
    epoch: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_q(self.q0)
        if not isinstance(self.epoch, int) or self.epoch < 1:
            raise ValueError(f"epoch={self.epoch!r} must be an integer >= 1 (steps per snapshot)")
        if self.estimator != "gaussian":
            raise ValueError(f"estimator={self.estimator!r}: ZO-SZVR-G uses Gaussian forward differences")

    def is_snapshot_step(self, state: ZOState) -> bool:
        return state.step % self.epoch == 0

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        return self.q0 + 1 if self.is_snapshot_step(state) else 2 * self.q + 2

    def queries_per_step(self, dim: int) -> int:
        """The mean over one epoch, rounded up (steps alternate between two costs)."""
        return math.ceil((self.q0 + 1 + (self.epoch - 1) * (2 * self.q + 2)) / self.epoch)

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        dim, mu = state.x.shape[0], self.mu
        if self.is_snapshot_step(state):
            directions = torch.randn(self.q0, dim, generator=state.rng, device=state.rng.device)
            est = forward_estimate(oracle(forward_points(state.x, directions, mu)), directions, mu)
            state.slots["snapshot"], state.slots["snapshot_grad"] = state.x.clone(), est.grad
            return est
        directions = torch.randn(self.q, dim, generator=state.rng, device=state.rng.device)
        points = torch.cat(
            [forward_points(state.x, directions, mu), forward_points(state.slots["snapshot"], directions, mu)]
        )
        values = oracle(points)
        here = forward_estimate(values[: self.q + 1], directions, mu)
        there = forward_estimate(values[self.q + 1 :], directions, mu)
        grad = here.grad - there.grad + state.slots["snapshot_grad"]
        return Estimate(grad=grad, fx=here.fx, directions=directions, queries=2 * self.q + 2)
