"""SPSA (Uesato et al., 2018; papers/004 app. D.5): NES-PGD with Rademacher (+-1) directions."""

from __future__ import annotations

from dataclasses import dataclass

from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.nes import NES


@register_optimizer("spsa")
@dataclass
class SPSA(NES):
    """x <- Proj(x - (delta/d) * sign(g_hat)), g_hat antithetic along u_i in {-1, +1}^d.

    The only difference from NES (papers/004 app. D.5): the perturbations mu * u_i are Rademacher, so
    every coordinate moves by exactly +-mu (papers/004's delta = 2/255). 2q queries per step.

    Args (those of :class:`NES`):
        delta: the sign step is delta/d per coordinate (papers/004: eta = 2/255, delta = 2d/255; the
            default, NES's, worked better on mnist_attack_linf val).
        q: antithetic pairs per step (papers/004: batch H = 50, so q = 25).
        mu: perturbation size per coordinate (papers/004: 2/255).
        estimator: ``rademacher``.

    On the order attack, ``python -m eval.order_attack`` runs it with papers/004 app. D.5's settings:
    q = 25 (H = 50), delta = 2d/255 (eta = 2/255) and mu = 2/255 at every eps.
    """

    mu: float = 2 / 255
    estimator: str = "rademacher"
