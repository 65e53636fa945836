"""FO-EAD: EAD (papers/001 Alg. 4) with true gradients. A white-box reference, not a black-box method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.fista import FistaOptimizer
from l2l.optimizers.core.registry import register_optimizer
from l2l.oracle import Oracle


@register_optimizer("fo_ead")
@dataclass
class FOEAD(FistaOptimizer):
    """EAD's FISTA on autograd gradients from ``oracle.value_and_grad``: WHITE-BOX (``white_box = True``).

    It shows what the same solver reaches with exact gradients; tables must not rank it among the
    black-box methods. One query per step (``value_and_grad`` counts one). Arguments: those of
    :class:`~l2l.optimizers.core.fista.FistaOptimizer`.
    """

    white_box: ClassVar[bool] = True

    def queries_per_step(self, dim: int) -> int:
        return 1

    def gradient(self, state: ZOState, oracle: Oracle, point: torch.Tensor) -> torch.Tensor:
        return oracle.value_and_grad(point)[1]
