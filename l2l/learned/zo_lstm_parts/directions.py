"""Direction samplers: how a ZO-LSTM step picks its q query directions and forms its estimate.

Every sampler costs q + 1 queries per step (q directions and f(x), papers/002 eq. 1) and draws from the
run's generator only, so a step is reproducible from the seed. The ``directions`` option picks one from
:data:`DIRECTIONS`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from l2l.estimators import Estimate, Objective, check_mu, check_q, forward_difference, trend_estimate
from l2l.learned.networks import QueryRNN
from l2l.learned.sampling import guided_es_directions


class Host(Protocol):
    """What a sampler asks of the ZO-LSTM it serves (:class:`~l2l.learned.zo_lstm.ZOLSTM`)."""

    query_net: QueryRNN

    def query_std(self, carry: dict) -> torch.Tensor:
        """The QueryRNN's std for the coming step (advances its state in ``carry``)."""
        ...

    def sample_directions(
        self, x: torch.Tensor, f: Objective, rng: torch.Generator, std: torch.Tensor | None
    ) -> torch.Tensor:
        """q directions N(0, diag(std^2)) (N(0, I) without ``std``); ZO-RL-LSTM overrides it."""
        ...


@dataclass(frozen=True)
class DirectionSampler(abc.ABC):
    """One way to pick the query directions of a step.

    Args:
        q: directions per step (a step costs q + 1 queries).
        mu: finite-difference smoothing radius of the estimate.
    """

    q: int
    mu: float

    #: whether the QueryRNN drives it (its state is in the carry, and it has a meta-training stage)
    uses_query_rnn: ClassVar[bool] = False
    #: options this sampler takes from a tuned baseline when unset: option -> (baseline, its parameter)
    tuned: ClassVar[dict[str, tuple[str, str]]] = {}
    #: the baseline whose tuned delta an SGD base step takes over these directions (None: zo_sgd's)
    sgd_baseline: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        check_q(self.q)
        check_mu(self.mu)

    def queries_per_step(self) -> int:
        """Queries of one step: the q directions and the iterate itself."""
        return self.q + 1

    def initial_carry(self, host: Host, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The sampler's recurrent state at the start of a run (default: none).

        Args:
            host: the optimizer (its QueryRNN, for samplers that run it).
            dim: the optimizee's dimension d.
            device: where the state lives (the networks' device).
        """
        return {}

    @abc.abstractmethod
    def estimate(
        self, host: Host, x: torch.Tensor, f: Objective, carry: dict, rng: torch.Generator, use_query: bool
    ) -> tuple[Estimate, torch.Tensor | None]:
        """The step's estimate at ``x`` and the QueryRNN std its directions used (None: none).

        Args:
            host: the optimizer (its QueryRNN and its direction hook).
            x: the iterate [d], detached.
            f: the step's objective on rows [B, d] -> [B].
            carry: the recurrent state, updated in place (reads the previous estimate and update).
            rng: draws the directions.
            use_query: this step's coin: sample along the QueryRNN covariance (QueryRNN sampler only).
        """


@dataclass(frozen=True)
class GaussianDirections(DirectionSampler):
    """Standard Gaussian directions N(0, I) (the ``no_query`` ablation, and stage 1 of training)."""

    def estimate(
        self, host: Host, x: torch.Tensor, f: Objective, carry: dict, rng: torch.Generator, use_query: bool
    ) -> tuple[Estimate, torch.Tensor | None]:
        return forward_difference(f, x, host.sample_directions(x, f, rng, None), self.mu), None


@dataclass(frozen=True)
class QueryRNNDirections(DirectionSampler):
    """N(0, diag(s^2)) with s the QueryRNN's std when the step's coin says so, else N(0, I) (papers/002).

    The QueryRNN runs every step, whether or not the step uses its std, as in training, so its state
    does not depend on the coins.
    """

    uses_query_rnn: ClassVar[bool] = True

    def initial_carry(self, host: Host, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        h, c = host.query_net.initial_state(dim)
        return {"query_h": h, "query_c": c}

    def estimate(
        self, host: Host, x: torch.Tensor, f: Objective, carry: dict, rng: torch.Generator, use_query: bool
    ) -> tuple[Estimate, torch.Tensor | None]:
        std = host.query_std(carry)  # every step, used or not
        std = std if use_query else None
        return forward_difference(f, x, host.sample_directions(x, f, rng, std), self.mu), std


@dataclass(frozen=True)
class GuidedESDirections(DirectionSampler):
    """Guided-ES directions around the previous estimate and update (papers/002 app. B).

    Args:
        guided_alpha: the weight of the full space against the guided subspace, in [0, 1].
    """

    guided_alpha: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.guided_alpha <= 1.0:
            raise ValueError(f"guided_alpha={self.guided_alpha!r} must be in [0, 1]")

    def estimate(
        self, host: Host, x: torch.Tensor, f: Objective, carry: dict, rng: torch.Generator, use_query: bool
    ) -> tuple[Estimate, torch.Tensor | None]:
        surrogates = torch.stack([carry["prev_grad"], carry["prev_update"]], dim=1)
        directions = guided_es_directions(self.q, rng, surrogates, self.guided_alpha)
        return forward_difference(f, x, directions, self.mu), None


@dataclass(frozen=True)
class TrendDirections(DirectionSampler):
    """ZO-Trend's directions: N(0, I) around the trend of the unbiased estimates (our option).

    The mean is a = trend_strength * m / max|m|, m the running mean (decay ``trend_decay``) of the
    estimates' unbiased parts, as :class:`~l2l.optimizers.zo_trend.ZOTrend` samples. The trend is kept
    detached, so no meta-gradient flows through the directions (there is no QueryRNN to train).

    Args:
        trend_strength: the largest entry of the mean, >= 0.
        trend_decay: the trend's decay per step, in [0, 1).
    """

    trend_strength: float
    trend_decay: float

    tuned: ClassVar[dict[str, tuple[str, str]]] = {
        "trend_strength": ("zo_trend", "strength"),
        "trend_decay": ("zo_trend", "decay"),
    }
    # ZO-SGD over ZO-Trend's directions is ZO-Trend
    sgd_baseline: ClassVar[str | None] = "zo_trend"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.trend_strength >= 0 or not 0 <= self.trend_decay < 1:
            raise ValueError(
                f"trend_strength={self.trend_strength!r} must be >= 0 and trend_decay={self.trend_decay!r} "
                "in [0, 1)"
            )

    def initial_carry(self, host: Host, dim: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"trend": torch.zeros(dim, device=device)}

    def estimate(
        self, host: Host, x: torch.Tensor, f: Objective, carry: dict, rng: torch.Generator, use_query: bool
    ) -> tuple[Estimate, torch.Tensor | None]:
        est, trend = trend_estimate(
            f, x, carry["trend"], self.q, self.mu, self.trend_strength, self.trend_decay, rng
        )
        carry["trend"] = trend.detach()
        return est, None


#: ``directions`` option -> its sampler
DIRECTIONS: dict[str, type[DirectionSampler]] = {
    "gaussian": GaussianDirections,
    "query": QueryRNNDirections,
    "guided_es": GuidedESDirections,
    "trend": TrendDirections,
}
