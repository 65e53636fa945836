"""Transfer start, then a query search: the hand-designed way to use surrogate knowledge.

The methods sheet's "transfer start" (surrogate-based attacks; the hybrid attacks of the
field, e.g. Suya et al. 2020, TREMBA's use of a surrogate ensemble): PGD on the summed margin of the
surrogate ensemble (:class:`~l2l.optimizers.core.surrogates.SurrogateEnsemble`) within the target's
ball gives a perturbation at no query of the target. The search's first query is that perturbation: if
it already fools the target, the run ends there at 1 query. Otherwise the query attack goes on from it:

- ``transfer_signhunter``: SignHunter flips dyadic chunks of the transfer perturbation's signs (a zero
  coordinate counts as +1), instead of starting from all ones (L-inf).
- ``transfer_square``: Square Attack keeps the transfer perturbation as its best point, instead of the
  stripes (L-inf or L2).

Both are any search attack's cost: 1 query per step, the start included; the PGD is free. The
surrogates are the data set's zoo surrogates only (a held-out target is refused by name), so on a
held-out target this is a black-box attack. On a surrogate (e.g. the default ``cw`` target) the
ensemble leaves the attacked model out, so the attack never differentiates its target there either.

Settings: 20 PGD steps of eps / 8 (2.5 eps of travel in all, Madry et al.'s rule of 2.5 eps / steps;
the sheet asks for tens of steps and leaves the step to us).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.search_attack import AttackGeometry, Search
from l2l.optimizers.core.surrogates import ALL_SURROGATES, SurrogateEnsemble, check_surrogate_names
from l2l.optimizers.signhunter import SignHunter
from l2l.optimizers.square import Square


@dataclass
class TransferOptions:
    """The transfer start's settings, shared by the transfer attacks.

    Args:
        surrogates: the zoo surrogates to differentiate, comma-separated, or ``all`` (every surrogate of
            the attacked data set's zoo); a held-out target is an error.
        pgd_steps: PGD steps on the ensemble.
        pgd_step: each step's size as a fraction of eps (L-inf: per coordinate; L2: in norm).
    """

    surrogates: str = ALL_SURROGATES
    pgd_steps: int = 20
    pgd_step: float = 0.125

    requires: ClassVar[frozenset[str]] = frozenset({"ball", "image", "zoo"})

    def check_transfer(self) -> None:
        """Refuse bad settings at construction."""
        if not (isinstance(self.pgd_steps, int) and self.pgd_steps >= 1):
            raise ValueError(
                f"pgd_steps={self.pgd_steps!r} must be an int >= 1 (PGD steps on the surrogates)"
            )
        if not self.pgd_step > 0:
            raise ValueError(f"pgd_step={self.pgd_step!r} must be > 0 (a fraction of eps)")
        check_surrogate_names(self.surrogates)

    def transfer(self, geometry: AttackGeometry) -> torch.Tensor:
        """The transfer perturbation of this task's image (free: surrogates only), flat [d], feasible."""
        if geometry.image is None or geometry.label is None or geometry.zoo is None:
            raise ValueError(
                "a transfer attack needs a classifier attack from a family with a target-model zoo (its "
                "image, label and surrogates), e.g. mnist_attack_linf or fashion_attack_l2"
            )
        ensemble = SurrogateEnsemble(geometry.zoo, self.surrogates, exclude=geometry.target_model)
        return ensemble.pgd(
            geometry.image, geometry.label, geometry.ball, geometry.project, self.pgd_steps, self.pgd_step
        )


@register_optimizer("transfer_signhunter")
@dataclass
class TransferSignHunter(TransferOptions, SignHunter):
    """SignHunter from the signs of a transfer perturbation (module docstring). L-inf only."""

    def __post_init__(self) -> None:
        self.check_transfer()

    def search(self, state: ZOState, geometry: AttackGeometry) -> Search:
        signs = torch.where(self.transfer(geometry) < 0, -1.0, 1.0)
        return self.hunt(geometry, signs)


@register_optimizer("transfer_square")
@dataclass
class TransferSquare(TransferOptions, Square):
    """Square Attack from a transfer perturbation instead of its stripes (module docstring).

    Args: those of :class:`TransferOptions` and :class:`~l2l.optimizers.square.Square`.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_transfer()

    def start(self, state: ZOState, geometry: AttackGeometry) -> torch.Tensor:
        return self.transfer(geometry)
