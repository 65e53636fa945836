"""ZO-Trend (our design): ZO-SGD whose directions lean towards the trend of its unbiased estimates."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.estimators import Estimate, trend_estimate
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.zo_sgd import ZOSGD
from l2l.oracle import Oracle


@register_optimizer("zo_trend")
@dataclass
class ZOTrend(ZOSGD):
    """ZO-SGD over the q directions a + z_i, z_i ~ N(0, I), around the mean a = s m / max|m|.

    m is the running mean (decay ``decay``) of the steps' fresh parts, :func:`l2l.estimators.fresh_part`:
    the part of each estimate that comes from the noise z_i alone, unbiased for the gradient whatever
    a is. The step is ZO-SGD's x - lr * sum_i s_i u_i over all q directions, so the mean direction gets
    a step sized by the slope measured along it, and a mean that has drifted off the gradient gets a
    small one.

    This is the hand-made counterpart of a guided ZO-RL policy (papers/003 sec. 3 draws a step's
    directions as the policy's output plus N(0, I)) that observes the trend (``observe="iterate_trend"``,
    :mod:`envs.mdp`): "copy the trend channel" is what such a policy would have to learn, so it is the
    baseline that policy must beat. Why the fresh part and not the estimate: the estimate over
    a + z_i has mean (I + a a^T) g, so a mean of estimates leans towards its own past means
    (``eval.policy_bound``'s ``ema`` rows follow one). It costs q + 1 queries per step.

    Args (besides those of :class:`~l2l.optimizers.core.base.GradientEstimateOptimizer`):
        strength: s, the mean's largest entry (0 gives ZO-SGD's directions).
        decay: the trend's decay per step, in [0, 1).
        estimator: ``gaussian`` (the only kind: the mean shifts Gaussian directions).
    """

    strength: float = 1.0
    decay: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.strength >= 0:
            raise ValueError(f"strength={self.strength!r} must be >= 0 (the mean direction's largest entry)")
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay={self.decay!r} must be in [0, 1) (the trend's running-mean decay)")
        if self.estimator != "gaussian":
            raise ValueError(f"estimator={self.estimator!r}: ZO-Trend shifts Gaussian directions only")

    def init_slots(self, state: ZOState) -> None:
        state.slots["trend"] = torch.zeros_like(state.x)

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        est, state.slots["trend"] = trend_estimate(
            oracle, state.x, state.slots["trend"], self.q, self.mu, self.strength, self.decay, state.rng
        )
        return est
