"""Particle swarm optimization (Shi & Eberhart, 1998) as papers/004 app. D.3 runs it on the order attack."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.population import PopulationSearch
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.search_attack import AttackGeometry


@register_optimizer("pso")
@dataclass
class PSO(PopulationSearch):
    """H particles in the ball: v_i <- w v_i + phi_p U (p_i - y_i) + phi_g U (g - y_i), y_i <- clip(y_i + v_i)

    papers/004 eq. 16-18: p_i is particle i's best position so far, g the swarm's, U uniform in [0, 1];
    the particles are clipped into the L-inf ball (and the image box) after each move (eq. 18, the
    paper's only change to standard PSO). The particles represent the perturbation r (x0 = 0), which
    is the same as representing the adversarial query q + r.

    Choices where the paper is silent or its public code differs:

    - U is drawn per particle and per coordinate (standard vectorized PSO; the paper writes rand()).
    - The particles start uniform in the ball (clipped), the velocities at zero.
    - p_i is a *copy* of the position when it improves. The paper's public code stores a reference to
      the position array, so its "personal best" silently follows the particle (aliasing bug); this
      implements the paper's description.
    - The first step queries x0 and the H initial positions; each later step moves and queries them.

    ``state.x`` is the best sample seen (g, or x0 if nothing beat it).

    Args:
        inertia: w (papers/004 Table 10: 1.1).
        phi_p: weight of the particle's own best (0.57).
        phi_g: weight of the swarm's best (0.44).
        population_size: swarm size H (papers/004: 40).
    """

    inertia: float = 1.1
    phi_p: float = 0.57
    phi_g: float = 0.44
    population_size: int = 40

    def __post_init__(self) -> None:
        if min(self.inertia, self.phi_p, self.phi_g) < 0 or self.population_size < 1:
            raise ValueError(
                f"inertia={self.inertia}, phi_p={self.phi_p} and phi_g={self.phi_g} must be >= 0 and "
                f"population_size={self.population_size} >= 1"
            )

    def population(self) -> int:
        return self.population_size

    def sample(self, state: ZOState, geometry: AttackGeometry) -> torch.Tensor:
        s, H, d, rng = state.slots, self.population_size, geometry.dim, state.rng
        if "y" not in s:
            start = (torch.rand(H, d, generator=rng, device=rng.device) * 2 - 1) * geometry.ball.eps
            s["y"] = torch.stack([geometry.project(row) for row in start])
            s["v"] = torch.zeros(H, d, device=rng.device)
            return s["y"]
        pull_p = self.phi_p * torch.rand(H, d, generator=rng, device=rng.device) * (s["p"] - s["y"])
        pull_g = torch.rand(H, d, generator=rng, device=rng.device) * (s["g"].unsqueeze(0) - s["y"])
        pull_g = self.phi_g * pull_g
        s["v"] = self.inertia * s["v"] + pull_p + pull_g
        s["y"] = torch.stack([geometry.project(row) for row in s["y"] + s["v"]])
        return s["y"]

    def observe(self, state: ZOState, X: torch.Tensor, losses: torch.Tensor) -> None:
        s = state.slots
        if "p" not in s:
            s["p"], s["p_loss"] = X.clone(), losses.clone()
        else:
            better = losses < s["p_loss"]
            s["p"] = torch.where(better.unsqueeze(1), X, s["p"])  # a new tensor: no aliasing of y
            s["p_loss"] = torch.where(better, losses, s["p_loss"])
        best = int(s["p_loss"].argmin())
        s["g"] = s["p"][best].clone()
