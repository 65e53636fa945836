"""Beta-Attack (papers/004 app. D.2): per-pixel Beta search distribution, score-function gradient ascent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.population import PopulationSearch
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.search_attack import AttackGeometry

#: z is kept this far from 0 and 1 inside log z and log(1 - z), which are -inf at the ends
Z_CLAMP = 1e-6


@register_optimizer("beta")
@dataclass
class BetaAttack(PopulationSearch):
    """Draw z_i ~ prod_j Beta(a_j, b_j), query r_i = clip(eps (2 z_i - 1)), ascend E[tau(z)] in (a, b).

    papers/004 eq. 6-15: the score-function (REINFORCE) estimate of the gradient of the expected
    objective over the H samples of a step,

        grad_a = mean_i T(z_i) [psi(a + b) - psi(a) + log z_i],
        grad_b = mean_i T(z_i) [psi(a + b) - psi(b) + log(1 - z_i)],

    with T = -loss (tau_S on the order attack) and no baseline, as eq. 14 has none; then
    theta <- theta + lr * grad (eq. 15). a = b = 1 at the start, where the Beta is uniform and the
    first batch is Rand's. Choices the paper leaves open: a and b are kept >= ``min_param`` after each
    update (a Beta needs them > 0), z is clamped to [1e-6, 1 - 1e-6] inside the logs, and the Beta
    samples come from numpy seeded from the run's generator (torch's Beta sampler takes no generator).
    ``state.x`` is the best sample seen. Costs H per step (H + 1 at the first, which also queries x0).

    Args:
        lr: learning rate eta of the parameters (papers/004 Table 9: 3.0 on Fashion-MNIST).
        population_size: samples H per step (papers/004: 50).
        min_param: floor on a and b after each update.
    """

    lr: float = 3.0
    population_size: int = 50
    min_param: float = 0.01

    def __post_init__(self) -> None:
        if self.lr < 0 or self.population_size < 1 or not self.min_param > 0:
            raise ValueError(
                f"lr={self.lr} must be >= 0, population_size={self.population_size} >= 1 and "
                f"min_param={self.min_param} > 0"
            )

    def population(self) -> int:
        return self.population_size

    def init_slots(self, state: ZOState) -> None:
        d = state.x.shape[0]
        state.slots["a"] = torch.ones(d, dtype=torch.float64, device=state.x.device)
        state.slots["b"] = torch.ones(d, dtype=torch.float64, device=state.x.device)

    def sample(self, state: ZOState, geometry: AttackGeometry) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=state.rng, device=state.rng.device))
        a, b = state.slots["a"].numpy(), state.slots["b"].numpy()
        z = np.random.default_rng(seed).beta(a, b, size=(self.population_size, len(a)))
        state.slots["z"] = z = torch.from_numpy(z).clamp(Z_CLAMP, 1 - Z_CLAMP)
        return torch.stack([geometry.project(row) for row in (geometry.ball.eps * (2 * z - 1)).float()])

    def observe(self, state: ZOState, X: torch.Tensor, losses: torch.Tensor) -> None:
        a, b, z = state.slots["a"], state.slots["b"], state.slots.pop("z")
        reward = -losses.double().unsqueeze(1)
        both = torch.special.digamma(a + b)
        grad_a = (reward * (both - torch.special.digamma(a) + z.log())).mean(dim=0)
        grad_b = (reward * (both - torch.special.digamma(b) + (1 - z).log())).mean(dim=0)
        state.slots["a"] = (a + self.lr * grad_a).clamp_min(self.min_param)
        state.slots["b"] = (b + self.lr * grad_b).clamp_min(self.min_param)
