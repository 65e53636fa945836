"""Update rules: how a ZO-LSTM step turns the estimate g into the step added to the iterate.

The ``update`` option names one (:data:`UPDATE_RULES`):

- ``rnn``: alpha * UpdateRNN(input) (papers/002 eq. 2);
- ``sgd``, ``adam``: the base step alone, -lr * d (:mod:`.bases`; ``sgd`` is the ``no_update`` ablation);
- ``sgd+rnn``, ``adam+rnn`` (ours): lr * (alpha * UpdateRNN(input) - d), a learned correction in units of
  the base step. The UpdateRNN's head starts at zero, so the untrained rule *is* its base step and
  meta-training learns a correction to it, as learned_optimization's Adam-feature optimizers do.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch

from l2l.learned.networks import UpdateRNN
from l2l.learned.zo_lstm_parts.bases import BASE_STEPS, BaseStep
from l2l.learned.zo_lstm_parts.building import build_part, choose
from l2l.learned.zo_lstm_parts.inputs import INPUT_TRANSFORMS, InputTransform

#: the suffix of the rules that add the UpdateRNN's correction to a base step
CORRECTED = "+rnn"


class UpdateRule(abc.ABC):
    """One way to compute the step from the estimate (it queries nothing)."""

    #: whether it runs the UpdateRNN (so meta-training has something to train and its options stay)
    learned: ClassVar[bool] = False
    #: whether the UpdateRNN's output is a correction to a base step (its head then starts at zero)
    corrects_base: ClassVar[bool] = False

    def initial_carry(self, net: UpdateRNN, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The rule's recurrent state at the start of a run (default: none).

        Args:
            net: the optimizer's UpdateRNN.
            dim: the optimizee's dimension d.
            device: where the state lives.
        """
        return {}

    @abc.abstractmethod
    def step(self, net: UpdateRNN, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """The step [d] for the estimate ``grad`` [d]; updates the state in ``carry``.

        Args:
            net: the optimizer's UpdateRNN (rules that do not learn ignore it).
            grad: the step's estimate (carries the autograd graph in meta-training).
            carry: the recurrent state, updated in place.
        """


@dataclass(frozen=True)
class PlainBaseStep(UpdateRule):
    """The base step alone: -lr * d (no learned part).

    Args:
        base: the base step.
    """

    base: BaseStep

    def initial_carry(self, net: UpdateRNN, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        return self.base.initial_carry(dim, device)

    def step(self, net: UpdateRNN, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        return -self.base.lr(grad.shape[0]) * self.base.direction(grad, carry)


@dataclass(frozen=True)
class UpdateRNNStep(UpdateRule):
    """alpha * UpdateRNN(inputs(g)) (papers/002 eq. 2; alpha is the update scale of sec. 4.3).

    Args:
        alpha: the update scale, > 0.
        inputs: what the UpdateRNN reads.
    """

    alpha: float
    inputs: InputTransform

    learned: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"alpha={self.alpha!r} must be > 0")

    def initial_carry(self, net: UpdateRNN, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        h, c = net.initial_state(dim)
        return {"update_h": h, "update_c": c, **self.inputs.initial_carry(dim, device)}

    def correction(self, net: UpdateRNN, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """alpha * the UpdateRNN's output for ``grad`` (advances its state in ``carry``)."""
        out, (carry["update_h"], carry["update_c"]) = net(
            self.inputs(grad, carry), (carry["update_h"], carry["update_c"])
        )
        return self.alpha * out

    def step(self, net: UpdateRNN, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        return self.correction(net, grad, carry)


@dataclass(frozen=True)
class CorrectedBaseStep(UpdateRNNStep):
    """lr * (alpha * UpdateRNN(inputs(g)) - d): a learned correction on a base step (our option).

    Args:
        base: the base step it corrects (its tuned values are part of what the UpdateRNN learned on).
    """

    base: BaseStep

    corrects_base: ClassVar[bool] = True

    def initial_carry(self, net: UpdateRNN, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {**super().initial_carry(net, dim, device), **self.base.initial_carry(dim, device)}

    def step(self, net: UpdateRNN, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        out = self.correction(net, grad, carry)
        return self.base.lr(grad.shape[0]) * (out - self.base.direction(grad, carry))


def base_name(update: str) -> str | None:
    """The base step (a key of :data:`~.bases.BASE_STEPS`) of the ``update`` value, or None for ``rnn``."""
    name = update.removesuffix(CORRECTED)
    return None if name == "rnn" else name


def learns(update: str) -> bool:
    """Whether the ``update`` value's rule runs the UpdateRNN (``rnn`` and the ``<base>+rnn`` rules)."""
    return base_name(update) is None or update.endswith(CORRECTED)


def _plain_rule(base: str, options: Any) -> UpdateRule:
    return PlainBaseStep(build_part(BASE_STEPS[base], options))


def _rnn_rule(base: str | None, options: Any) -> UpdateRule:
    inputs = build_part(choose("input_norm", options.input_norm, INPUT_TRANSFORMS), options)
    if base is None:
        return UpdateRNNStep(options.alpha, inputs)
    return CorrectedBaseStep(options.alpha, inputs, build_part(BASE_STEPS[base], options))


#: ``update`` option -> a builder of its rule from the ZO-LSTM's options (``alpha``, ``input_norm``,
#: ``input_scale``, the base's ``base_*``); ``<base>`` takes the base step, ``<base>+rnn`` corrects it
UPDATE_RULES: dict[str, Callable[[Any], UpdateRule]] = {
    "rnn": partial(_rnn_rule, None),
    **{name: partial(_plain_rule, name) for name in BASE_STEPS},
    **{name + CORRECTED: partial(_rnn_rule, name) for name in BASE_STEPS},
}


def build_update_rule(options: Any) -> UpdateRule:
    """The update rule that ``options.update`` names, built from ``options`` (its parts check them).

    Args:
        options: an object with the ZO-LSTM's options as attributes.
    """
    return choose("update", options.update, UPDATE_RULES)(options)
