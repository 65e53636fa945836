"""Rand: uniform random search in the L-inf ball (papers/004 app. D.1, Alg. 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.search_attack import AttackGeometry, Search, SearchAttack


@register_optimizer("rand")
@dataclass
class RandSearch(SearchAttack):
    """Sample r ~ U(-eps, +eps)^d, query clip(q + r), keep the best sample seen; 1 query per step.

    papers/004 Alg. 2: the best score starts at the clean query's (its first query, x0 = 0 here), and
    every later step draws an independent perturbation, clipped into the ball and the image box by the
    task's projection. ``state.x`` is the best sample seen (the method's answer). The paper batches
    H = 50 samples per call for GPU speed; one per step changes no decision (see
    :mod:`l2l.optimizers.core.search_attack`). Free of hyperparameters.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def search(self, state: ZOState, geometry: AttackGeometry) -> Search:
        yield torch.zeros(geometry.dim, device=state.rng.device)
        eps = geometry.ball.eps
        while True:
            unit = torch.rand(geometry.dim, generator=state.rng, device=state.rng.device)
            yield geometry.project((unit * 2 - 1) * eps)
