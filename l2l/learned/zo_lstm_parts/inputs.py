"""Input transforms: what the UpdateRNN reads from the estimate g (the ``input_norm`` option).

papers/002 feeds the raw estimate. Our options normalize it by Adam's running statistics, for problems
where tuned ZO-Adam wins through that normalization as the gradients shrink (binary classification at
500 steps). The moments are computed from the detached estimate (so the meta-gradient flows through g
itself, or through the (1 - beta1) g of m's newest term), with Adam's bias correction; every transform
then multiplies by ``input_scale``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

#: the decays of the running first and second moments of ``rms`` / ``adam`` (Adam's defaults)
MOMENT_DECAY, RMS_DECAY = 0.9, 0.999


@dataclass(frozen=True)
class InputTransform(abc.ABC):
    """Maps the estimate g [d] to the UpdateRNN's input [d], keeping any statistics in the carry.

    Args:
        input_scale: the input is multiplied by it (1: papers/002). Where ZO estimates are small, a
            bias-free LSTM stays in its near-linear range and learns little more than a momentum-SGD
            filter; a larger scale puts its gates to work, as the input preprocessing of Andrychowicz et
            al. (2016) does.
    """

    input_scale: float

    def __post_init__(self) -> None:
        if not self.input_scale > 0:
            raise ValueError(f"input_scale={self.input_scale!r} must be > 0")

    def initial_carry(self, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The transform's statistics at the start of a run (default: none)."""
        return {}

    def __call__(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """The UpdateRNN's input for estimate ``grad``; updates the statistics in ``carry``."""
        features = self.normalize(grad, carry)
        return features if self.input_scale == 1.0 else features * self.input_scale  # 1: the same bits

    @abc.abstractmethod
    def normalize(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """The unscaled input for ``grad`` (updates the statistics in ``carry``)."""


@dataclass(frozen=True)
class PlainInput(InputTransform):
    """The estimate itself (papers/002: no preprocessing)."""

    def normalize(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        return grad


@dataclass(frozen=True)
class RMSInput(InputTransform):
    """g / (sqrt(v_hat) + 1e-8), v the running mean of g^2 (decay 0.999), per coordinate."""

    def initial_carry(self, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"update_v": torch.zeros(dim, device=device), "update_t": torch.zeros((), device=device)}

    def rms(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """sqrt(v_hat) + 1e-8 after this step's g (advances v and the step count)."""
        g = grad.detach()
        carry["update_v"] = RMS_DECAY * carry["update_v"] + (1 - RMS_DECAY) * g * g
        carry["update_t"] = t = carry["update_t"] + 1
        return (carry["update_v"] / (1 - RMS_DECAY**t)).sqrt() + 1e-8

    def normalize(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        return grad / self.rms(grad, carry)


@dataclass(frozen=True)
class AdamInput(RMSInput):
    """Adam's direction m_hat / (sqrt(v_hat) + 1e-8), m the running mean of g (decay 0.9)."""

    def initial_carry(self, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {**super().initial_carry(dim, device), "update_m": torch.zeros(dim, device=device)}

    def normalize(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        rms, t = self.rms(grad, carry), carry["update_t"]
        carry["update_m"] = MOMENT_DECAY * carry["update_m"].detach() + (1 - MOMENT_DECAY) * grad
        return carry["update_m"] / (1 - MOMENT_DECAY**t) / rms


#: ``input_norm`` option -> its transform
INPUT_TRANSFORMS: dict[str, type[InputTransform]] = {"none": PlainInput, "rms": RMSInput, "adam": AdamInput}
