"""The coordinatewise LSTMs of the ZO-LSTM optimizer (papers/002 sec. 3.1): UpdateRNN and QueryRNN.

Both are one LSTM layer (10 hidden units in the paper) followed by a linear head to one output. They
are *coordinatewise*: the d coordinates of the optimizee are the LSTM's batch, so every coordinate
shares the weights and keeps its own hidden state, and one network serves any dimension d.

Choices taken from the official ZO-L2L code, which the paper does not state: no input preprocessing
(the raw estimate goes in), no bias terms (so a zero input from a zero state gives a zero output: no
drift before the first informative estimate, and an untrained QueryRNN starts at the identity
covariance), and the head's initial weights scaled by 0.1 (small first updates).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: (h, c) of one LSTM, each [d, hidden]
LSTMState = tuple[torch.Tensor, torch.Tensor]


class CoordinatewiseLSTM(nn.Module):
    """An LSTM cell over the d coordinates as a batch, plus a linear head to one output each.

    Args:
        inputs: features per coordinate (1 for UpdateRNN, 2 for QueryRNN).
        hidden: LSTM hidden units (papers/002: 10).
    """

    def __init__(self, inputs: int, hidden: int = 10):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden={hidden} must be >= 1 (LSTM hidden units)")
        self.hidden = hidden
        self.cell = nn.LSTMCell(inputs, hidden, bias=False)
        self.head = nn.Linear(hidden, 1, bias=False)
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # small first outputs (official code)

    def initial_state(self, dim: int) -> LSTMState:
        """Zero (h, c) for a d-dimensional optimizee."""
        zeros = torch.zeros(dim, self.hidden, device=self.head.weight.device)
        return zeros, zeros.clone()

    def run(self, features: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """One step: ``features`` [d, inputs] -> (output [d], new state)."""
        h, c = self.cell(features, state)
        return self.head(h).squeeze(1), (h, c)


class UpdateRNN(CoordinatewiseLSTM):
    """Maps the ZO gradient estimate to the parameter update, coordinate by coordinate (eq. 2)."""

    def __init__(self, hidden: int = 10):
        super().__init__(inputs=1, hidden=hidden)

    def forward(self, grad: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """``grad`` [d] -> (update [d], new state); the step is x <- x + alpha * update."""
        return self.run(grad.unsqueeze(1), state)


class QueryRNN(CoordinatewiseLSTM):
    """Maps [previous estimate, previous update] to a per-coordinate sampling std (eq. 3).

    The head's output o gives the raw std ``1 + o`` (an untrained network, with o near 0, starts near
    the identity); its absolute value is rescaled by :func:`normalize_std`.

    Args:
        hidden: LSTM hidden units.
        sigma_norm: ``trace`` or ``frobenius``, see :func:`normalize_std`.
    """

    def __init__(self, hidden: int = 10, sigma_norm: str = "trace"):
        super().__init__(inputs=2, hidden=hidden)
        sigma_normalizer(sigma_norm)  # a clear error now, not at the first step
        self.sigma_norm = sigma_norm

    def forward(
        self, prev_grad: torch.Tensor, prev_update: torch.Tensor, state: LSTMState
    ) -> tuple[torch.Tensor, LSTMState]:
        """(previous estimate [d], previous update [d]) -> (std [d], new state); Sigma = diag(std^2)."""
        out, state = self.run(torch.stack([prev_grad, prev_update], dim=1), state)
        return normalize_std((1.0 + out).abs(), self.sigma_norm), state


def _trace_norm(std: torch.Tensor) -> torch.Tensor:
    return std * (std.shape[0] / std.pow(2).sum().clamp_min(1e-30)).sqrt()


def _frobenius_norm(std: torch.Tensor) -> torch.Tensor:
    return std * (std.shape[0] / std.pow(4).sum().clamp_min(1e-30)).pow(0.25)


#: how the QueryRNN's per-coordinate std s is rescaled so that Sigma = diag(s^2) has the norm of I_d
SIGMA_NORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "trace": _trace_norm,
    "frobenius": _frobenius_norm,
}


def normalize_std(std: torch.Tensor, sigma_norm: str = "trace") -> torch.Tensor:
    """Rescale a per-coordinate std s so that Sigma = diag(s^2) has the norm of I_d.

    ``trace`` (default) makes sum(s^2) = d, i.e. tr(Sigma) = tr(I) and ||Sigma^(1/2)||_F = ||I||_F: the
    expected squared query norm E||u||^2 = tr(Sigma) stays d, which is the paper's stated reason for
    normalizing (sec. 3.1) and what the official code does. ``frobenius`` makes sum(s^4) = d, i.e.
    ||Sigma||_F = ||I||_F, which shrinks E||u||^2 below d whenever Sigma is not isotropic.

    Args:
        std: nonnegative [d].
        sigma_norm: a key of :data:`SIGMA_NORMS`.
    """
    return sigma_normalizer(sigma_norm)(std)


def sigma_normalizer(sigma_norm: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The rescaling :data:`SIGMA_NORMS` names ``sigma_norm``; a ValueError lists the choices.

    Args:
        sigma_norm: ``trace`` or ``frobenius`` (see :func:`normalize_std`).
    """
    if sigma_norm not in SIGMA_NORMS:
        raise ValueError(f"sigma_norm={sigma_norm!r} must be one of {', '.join(SIGMA_NORMS)}")
    return SIGMA_NORMS[sigma_norm]


def sigma_penalty(std: torch.Tensor) -> torch.Tensor:
    """||Sigma - I||_F^2 for Sigma = diag(std^2): the meta-loss regularizer of eq. 4 (before lambda)."""
    return (std.pow(2) - 1.0).pow(2).sum()


def build_networks(hidden: int, sigma_norm: str, seed: int) -> tuple[UpdateRNN, QueryRNN]:
    """Fresh UpdateRNN and QueryRNN whose initial weights depend only on ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UpdateRNN(hidden), QueryRNN(hidden, sigma_norm)
