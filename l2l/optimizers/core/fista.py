"""EAD's solver (papers/001 ch. 4, Alg. 4): FISTA with the elastic-net shrinkage-thresholding step.

Shared by ``zo_ead`` (ZO gradient estimates) and ``fo_ead`` (true gradients, white-box reference).
It minimizes ``f(x) + beta * ||x - x_start||_1 + l2 * ||x - x_start||_2^2`` over the task's feasible
set, where f is the task's loss (a black box to ``zo_ead``) and x_start the starting point (the clean
image in papers/001; the zero perturbation for ``AttackTask``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState, lr_from_delta
from l2l.oracle import Oracle


def shrink_threshold(
    z: torch.Tensor,
    center: torch.Tensor,
    beta: float,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """S_beta of eq. 18: shrink each z_i toward center_i by beta, zero it within beta, then project.

    With ``project`` the clamp to the box [0, 1]^p, this is eq. 18 exactly: min{z_i - beta, 1} above,
    center_i within beta, max{z_i + beta, 0} below. It is the proximal operator of
    beta * ||x - center||_1 plus the box's indicator (eq. 20); for a separable box, projecting the
    soft-thresholded point is exact.
    """
    if beta < 0:
        raise ValueError(f"beta={beta!r} must be >= 0 (the L1 shrinkage threshold)")
    diff = z - center
    out = center + diff.sign() * (diff.abs() - beta).clamp_min(0.0)
    return out if project is None else project(out)


@dataclass
class FistaOptimizer(ZOOptimizer):
    """FISTA for the elastic-net problem; subclasses say where the gradient of f comes from.

    Each step: x_{k+1} = S_beta(y_k - alpha_k * grad g(y_k)), y_{k+1} = x_{k+1} + k/(k+3) (x_{k+1} - x_k),
    with g = f + l2 * ||x - x_start||^2 (that term's gradient is computed, not queried). The slack
    point y is projected too, so every query stays feasible.

    As in eq. 17 and the official EAD code, the threshold is beta itself, not alpha_k * beta: the L1
    weight this adds to the objective is beta / alpha_k (papers/001: beta = 1e-3 at alpha = 0.01).

    Args:
        delta: step-size constant; alpha_0 = delta / d (papers/002 convention; papers/001's
            alpha_0 = 0.01 is delta = 7.84 on MNIST).
        beta: shrinkage threshold (papers/001: 1e-3); 0 makes the step a plain projection.
        l2: weight of ||x - x_start||_2^2 in g (papers/001: 1; default 0 because this framework's attack
            loss has no L2 term, so adding one would optimize a different objective).
        decay_steps: with K given, alpha_k = alpha_0 * sqrt(1 - min(k, K)/K), the official code's
            square-root decay to zero at step K (set it to the run's step count); None keeps alpha_0.
    """

    delta: float = 1.0
    beta: float = 1e-3
    l2: float = 0.0
    decay_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"delta={self.delta!r} must be > 0 (the step size is delta / d)")
        if not self.beta >= 0 or not self.l2 >= 0:
            raise ValueError(f"beta={self.beta!r} and l2={self.l2!r} must both be >= 0")
        if self.decay_steps is not None and (not isinstance(self.decay_steps, int) or self.decay_steps < 1):
            raise ValueError(f"decay_steps={self.decay_steps!r} must be an integer >= 1 (or None: no decay)")

    def init_slots(self, state: ZOState) -> None:
        state.slots["center"] = state.x.clone()
        state.slots["slack"] = state.x.clone()

    def step_size(self, k: int, dim: int) -> float:
        alpha = lr_from_delta(self.delta, dim)
        if self.decay_steps is None:
            return alpha
        return alpha * max(0.0, 1.0 - k / self.decay_steps) ** 0.5

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        k, center, slack = state.step, state.slots["center"], state.slots["slack"]
        grad = self.gradient(state, oracle, slack) + 2 * self.l2 * (slack - center)
        z = slack - self.step_size(k, slack.shape[0]) * grad
        x_next = shrink_threshold(z, center, self.beta, oracle.project)
        state.slots["slack"] = oracle.project(x_next + k / (k + 3) * (x_next - state.x))
        state.x = x_next
        state.step += 1
        return state

    @abc.abstractmethod
    def gradient(self, state: ZOState, oracle: Oracle, point: torch.Tensor) -> torch.Tensor:
        """The gradient (or its estimate) of the task loss at ``point``, through ``oracle``."""

    def config(self) -> dict:
        return asdict(self)
