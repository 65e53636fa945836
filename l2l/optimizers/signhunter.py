"""SignHunter (Al-Dujaili and O'Reilly; ICLR 2020): divide-and-conquer search over L-inf sign vectors.

Follows the paper (docs/references.md); see :class:`SignHunter`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.search_attack import AttackGeometry, Search, SearchAttack


def top_level(dim: int) -> int:
    """The last level, ceil(log2 dim): its chunks are single coordinates."""
    if dim < 1:
        raise ValueError(f"dim={dim} must be >= 1")
    return (dim - 1).bit_length()


def dyadic_chunks(dim: int, level: int) -> list[slice]:
    """The contiguous chunks of ``level``: length ceil(dim / 2^level), the last one possibly shorter.

    That is the paper's cut into 2^level chunks of equal length; where dim is not a power of two the
    trailing chunks would be empty and are left out (as the authors' code ends a level at the last
    coordinate), so no query is spent on an empty flip.
    """
    if not 0 <= level <= top_level(dim):
        raise ValueError(f"level={level} must be in 0 .. {top_level(dim)} for dim={dim}")
    length = math.ceil(dim / 2**level)
    return [slice(start, min(dim, start + length)) for start in range(0, dim, length)]


@register_optimizer("signhunter")
@dataclass
class SignHunter(SearchAttack):
    """SignHunter: flip dyadic chunks of a sign vector s, keeping a flip only if the loss falls.

    The candidate is proj(eps * s) (projection onto the L-inf ball and the image box). Start: s = all
    ones (the first step's query). Then level i = 0, 1, ... cuts the flattened perturbation into
    :func:`dyadic_chunks`; each step flips chunk j of the current level and queries; the flip stays if
    the loss is strictly lower, otherwise it is reverted. After the level with single-coordinate chunks
    (i = ceil(log2 d)) the next would be shorter than one coordinate, so the search starts again at
    level 0 from the current signs. 1 query per flip, plus the start.

    The authors' code also re-centres its search at the current adversarial image on a restart; here
    every candidate stays eps * s around the clean image (the sheet's version).

    L-inf only: a task with another ball is refused with a clear error. No hyperparameters besides the
    task's eps.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def search(self, state: ZOState, geometry: AttackGeometry) -> Search:
        return self.hunt(geometry, torch.ones(geometry.dim, device=state.rng.device))

    def hunt(self, geometry: AttackGeometry, signs: torch.Tensor) -> Search:
        """The search from the sign vector ``signs`` (its first query; flipped in place)."""
        dim, eps = geometry.dim, geometry.ball.eps
        best_loss = yield geometry.project(eps * signs)
        while True:
            for level in range(top_level(dim) + 1):
                for chunk in dyadic_chunks(dim, level):
                    signs[chunk] *= -1
                    loss = yield geometry.project(eps * signs)
                    if loss < best_loss:
                        best_loss = loss
                    else:
                        signs[chunk] *= -1
