"""NES-PGD (Ilyas et al., 2018; papers/004 app. D.4): antithetic Gaussian estimate, projected sign step."""

from __future__ import annotations

from dataclasses import dataclass

from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.zo_signsgd import ZOSignSGD


@register_optimizer("nes")
@dataclass
class NES(ZOSignSGD):
    """x <- Proj(x - (delta/d) * sign(g_hat)), g_hat the antithetic Gaussian (NES) estimate.

    NES estimates the gradient of the Gaussian-smoothed loss from q antithetic pairs x +- mu u_i,
    u_i ~ N(0, I) (2q queries, papers/004's batch H = 2q = 50), then takes the sign step of projected
    gradient descent (papers/004 eq. 22); the task's projection keeps the iterate feasible. It is
    ZO-signSGD with the antithetic estimator, so only the defaults differ.

    Args (those of :class:`GradientEstimateOptimizer`):
        delta: the sign step is delta/d per coordinate (papers/004: eta = 2/255, i.e. delta = 2d/255,
            about 6.1 on MNIST; the default is the value that worked best on mnist_attack_linf val).
        q: antithetic pairs per step (2q queries).
        mu: smoothing std sigma of the Gaussian search distribution (in pixel units).
        estimator: ``antithetic`` (NES); ``rademacher`` gives SPSA (see ``spsa``).

    On the order attack (``fashion_order_attack``), ``python -m eval.order_attack`` runs it with
    papers/004 app. D.4's settings (``eval.order_attack.paper_settings``): q = 25 (H = 50 queries per
    step), delta = 2d/255 (eta = 2/255) and mu = sigma = eps/0.5, i.e. 2 eps, read as the search
    distribution's standard deviation (the paper writes Sigma = sigma I; Ilyas et al.'s sigma is the
    std, and a variance of 2 eps would put the samples far outside the ball). The step is the sign of
    the NES estimate itself, as the paper writes (its public code takes the sign of an Adam step,
    whose bias correction divides by zero at the first step; not reproduced).
    """

    delta: float = 25.0
    q: int = 25
    mu: float = 0.03
    estimator: str = "antithetic"
