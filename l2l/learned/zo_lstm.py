"""The ZO-LSTM optimizer (papers/002): UpdateRNN updates from ZO estimates along QueryRNN directions.

One step at iterate x (q + 1 queries):

1. draw the Bernoulli coin X ~ Ber(P) (``query_prob``) from the run's generator;
2. QueryRNN([previous estimate, previous update]) -> std s (Sigma = diag(s^2), ||Sigma|| = ||I||); the
   directions are u_i = s * z_i when X = 1, else u_i = z_i, with z_i ~ N(0, I) (q of them);
3. the forward-difference estimate g = 1/(mu q) sum_i [f(x + mu u_i) - f(x)] u_i (eq. 1);
4. x <- x + alpha * UpdateRNN(g) (eq. 2; alpha is the update scale of sec. 4.3), projected onto the
   task's feasible set (the identity for unconstrained tasks). With ``update_base='adam'`` or ``'sgd'``
   (our options) the UpdateRNN's output is a learned correction to a ZO-Adam or ZO-SGD step instead;
   with ``directions='trend'`` as well, the untrained optimizer is ZO-Trend (see :class:`ZOLSTM`).

The ablations of sec. 4.4 are options of the same class (see :data:`VARIANTS`): standard Gaussian
directions (``no_query``), a ZO-SGD update with QueryRNN directions (``no_update``), Guided-ES directions
from the last estimate and update (``guided_es``), and the same configuration with random initial
weights (``untrained``, the control of every comparison with a learned optimizer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from l2l.common.config import doc_field
from l2l.common.device import module_device
from l2l.estimators import (
    Estimate,
    Objective,
    check_mu,
    check_q,
    forward_difference,
    gaussian_directions,
    trend_estimate,
)
from l2l.learned.networks import SIGMA_NORMS, build_networks, sigma_penalty
from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Project, Stage, TrainStep, register_learned
from l2l.learned.sampling import DIRECTION_MODES, guided_es_directions
from l2l.optimizers.core.base import ZOState, check_betas, lr_from_delta
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.tuned import tuned_params
from l2l.oracle import Oracle

UPDATE_MODES = ("rnn", "sgd")

#: ablation name -> the options it changes; ``zo_lstm_untrained`` also redraws the weights
VARIANTS: dict[str, dict[str, Any]] = {
    "zo_lstm": {},
    "zo_lstm_no_query": {"directions": "gaussian"},
    "zo_lstm_no_update": {"update": "sgd"},
    "zo_lstm_guided_es": {"directions": "guided_es", "guided_alpha": 0.5},
    "zo_lstm_untrained": {},
}

#: options that define the networks' shapes or what they were trained on, so cannot change on a trained one
ARCHITECTURE = (
    "hidden", "sigma_norm", "input_scale", "input_norm",
    "update_base", "base_delta", "base_beta1", "base_beta2", "trend_strength", "trend_decay",
)  # fmt: skip
#: what the UpdateRNN reads: the estimate (papers/002), it over Adam's running RMS, or Adam's direction
INPUT_NORMS = ("none", "rms", "adam")
#: the decays of the running first and second moments of ``input_norm`` rms / adam (Adam's defaults)
MOMENT_DECAY, RMS_DECAY = 0.9, 0.999
#: what the UpdateRNN's output is added to: nothing (papers/002), or a ZO-Adam or ZO-SGD step (ours)
UPDATE_BASES = ("none", "adam", "sgd")


@dataclass
class MetaConfig(LearnedConfig):
    """The ZO-LSTM and its meta-training procedure (papers/002 sec. 3-4; official-code defaults).

    Two stages, for stability (sec. 3.3): ``update`` trains the UpdateRNN with standard Gaussian query
    directions; ``query`` freezes it and trains the QueryRNN, whose covariance every training step then
    samples along (the Bernoulli mix with the identity is a test-time device). The meta-loss adds eq.
    4's ``lambda ||Sigma_t - I||^2`` to the t-weighted losses.
    """

    q: int = doc_field(20, "query directions per optimizee step (a step costs q + 1 queries)")
    mu: float = doc_field(1e-4, "finite-difference smoothing radius of the ZO estimate")
    hidden: int = doc_field(10, "LSTM hidden units of the UpdateRNN and the QueryRNN")
    alpha: float = doc_field(1.0, "update scale: x <- x + alpha * UpdateRNN(g)")
    input_scale: float = doc_field(
        1.0, "the UpdateRNN reads input_scale * g (1: papers/002; larger lets its gates act on small g)"
    )
    input_norm: Literal["none", "rms", "adam"] = doc_field(
        "none",
        "none: the UpdateRNN reads the estimate g (papers/002); rms: g divided by Adam's bias-corrected "
        "running RMS of g, per coordinate; adam: Adam's direction m_hat / RMS (our options)",
    )
    update_base: Literal["none", "adam", "sgd"] = doc_field(
        "none",
        "none: x <- x + alpha * UpdateRNN (papers/002); adam: x <- x - lr * (d - alpha * UpdateRNN), d the "
        "ZO-Adam direction m_hat / sqrt(v_hat) and lr = base_delta / d_dim, a learned correction that "
        "starts at exactly ZO-Adam; sgd: the same with d = g, starting at ZO-SGD (our options)",
    )
    directions: Literal["query", "trend"] = doc_field(
        "query",
        "query: QueryRNN covariance (papers/002); trend: N(0, I) around the trend of the unbiased "
        "estimates, ZO-Trend's directions, with no QueryRNN to train (our option; --query-iterations 0)",
    )
    trend_strength: float | None = doc_field(
        None, "trend directions: the mean's largest entry (none: the task's tuned zo_trend strength)"
    )
    trend_decay: float | None = doc_field(
        None, "trend directions: the trend's decay per step (none: the task's tuned zo_trend decay)"
    )
    base_delta: float | None = doc_field(
        None,
        "base learning rate base_delta / d (none: the task's tuned delta of zo_adam; of zo_sgd, or of "
        "zo_trend with trend directions, for the sgd base)",
    )
    base_beta1: float | None = doc_field(None, "ZO-Adam base: first-moment decay (none: the task's tuned)")
    base_beta2: float | None = doc_field(None, "ZO-Adam base: second-moment decay (none: the task's tuned)")
    query_prob: float = doc_field(
        0.5, "P: chance that a test-time step samples along the QueryRNN covariance (training: always)"
    )
    sigma_norm: Literal["trace", "frobenius"] = doc_field(
        "trace",
        "Sigma normalization: trace (E||u||^2 = d, paper's intent) or frobenius (||Sigma||_F = ||I||_F)",
    )
    reg_lambda: float = doc_field(0.005, "lambda of the ||Sigma_t - I||^2 term of the meta-loss")
    update_lr: float = doc_field(1e-3, "Adam learning rate of stage 1 (UpdateRNN)")
    query_lr: float = doc_field(5e-3, "Adam learning rate of stage 2 (QueryRNN)")

    def __post_init__(self) -> None:
        check_q(self.q)
        check_mu(self.mu)
        check_mu(self.coord_mu)
        if self.hidden < 1:
            raise ValueError(f"hidden={self.hidden} must be >= 1")
        for name in ("alpha", "input_scale", "update_lr", "query_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if self.reg_lambda < 0 or not 0 <= self.query_prob <= 1:
            raise ValueError(
                f"reg_lambda={self.reg_lambda!r} must be >= 0 and query_prob={self.query_prob!r} in [0, 1]"
            )
        if self.sigma_norm not in SIGMA_NORMS:
            raise ValueError(f"sigma_norm={self.sigma_norm!r} must be one of {SIGMA_NORMS}")
        _check_choice("input_norm", self.input_norm, INPUT_NORMS)
        _check_choice("update_base", self.update_base, UPDATE_BASES)
        _check_choice("directions", self.directions, ("query", "trend"))
        super().__post_init__()

    def tuned_sources(self) -> dict[str, tuple[str, str]]:
        """The base and trend options this configuration uses: option -> (tuned baseline, its parameter)."""
        sources: dict[str, tuple[str, str]] = {}
        if self.update_base == "adam":
            sources = {f"base_{k}": ("zo_adam", k) for k in ("delta", "beta1", "beta2")}
        elif self.update_base == "sgd":
            sources["base_delta"] = ("zo_trend" if self.directions == "trend" else "zo_sgd", "delta")
        if self.directions == "trend":
            sources.update(trend_strength=("zo_trend", "strength"), trend_decay=("zo_trend", "decay"))
        return sources

    def fill_base(self, task: str) -> None:
        """Take the unset base and trend options (None) from ``task``'s tuned baselines.

        :meth:`tuned_sources` names them; a baseline not tuned on ``task`` leaves the :class:`ZOLSTM` default.
        """
        for option, (baseline, param) in self.tuned_sources().items():
            if getattr(self, option) is None:
                setattr(self, option, float(tuned_params(baseline, task).get(param, getattr(ZOLSTM, option))))

    def new_optimizer(self) -> ZOLSTM:
        """The ZOLSTM this config describes, with random initial weights from ``seed``."""
        names = ("base_delta", "base_beta1", "base_beta2", "trend_strength", "trend_decay")
        set_values = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        return ZOLSTM(
            q=self.q, mu=self.mu, query_prob=self.query_prob, alpha=self.alpha, directions=self.directions,
            sigma_norm=self.sigma_norm, hidden=self.hidden, init_seed=self.seed, input_scale=self.input_scale,
            input_norm=self.input_norm, update_base=self.update_base, **set_values,
        )  # fmt: skip


@dataclass
class Advance:
    """What one ZO-LSTM step produced.

    Attributes:
        x: the new iterate (carries the autograd graph during meta-training).
        est: the gradient estimate, with its f(x) and directions.
        update: the step taken, x_new - x (after any projection onto the feasible set).
        std: the QueryRNN std the directions used, or None when they did not use one.
    """

    x: torch.Tensor
    est: Estimate
    update: torch.Tensor
    std: torch.Tensor | None


@register_learned("zo_lstm")
@dataclass
class ZOLSTM(LearnedOptimizer):
    """The learned ZO optimizer; a new instance has random weights until a checkpoint's are loaded.

    Its meta-parameters are ``update_rnn`` and ``query_rnn`` (attributes ``update_net``, ``query_net``);
    the carry holds both LSTM states and the previous estimate and update.

    Args:
        q: query directions per step (q + 1 queries).
        mu: finite-difference smoothing radius.
        query_prob: P, the chance that a step samples along the QueryRNN covariance (else identity).
        alpha: update scale, x <- x + alpha * UpdateRNN(g) (papers/002 sec. 4.3).
        directions: ``query`` (QueryRNN), ``gaussian`` (N(0, I)), ``guided_es`` (app. B), or ``trend``
            (our option): N(0, I) around the mean a = trend_strength * m / max|m|, m the running mean
            (decay ``trend_decay``) of the estimates' unbiased parts, as
            :class:`~l2l.optimizers.zo_trend.ZOTrend` samples. The trend is computed from detached
            estimates, so no meta-gradient flows through the directions, and there is no QueryRNN to
            train. Every step still draws the QueryRNN coin first, so the direction stream differs
            from ``zo_trend``'s under the same seed.
        update: ``rnn`` (UpdateRNN) or ``sgd`` (x <- x - (sgd_delta / d) g, the no-update ablation).
        sgd_delta: step-size constant of the ``sgd`` update (learning rate sgd_delta / d).
        guided_alpha: Guided-ES weight of the full space (``guided_es`` only).
        sigma_norm: ``trace`` or ``frobenius`` normalization of Sigma (see ``normalize_std``).
        hidden: LSTM hidden units of both networks.
        init_seed: seed of the random initial weights (meta-training starts from the same ones, so
            the untrained control is exactly the starting point of training).
        input_scale: the UpdateRNN reads ``input_scale * g``. 1 is papers/002's eq. 2. Our addition:
            where ZO estimates are small (about 0.04 per coordinate on binary_classification), a
            bias-free LSTM stays in its near-linear range and learns little more than a momentum-SGD
            filter, and no post-hoc alpha makes that adaptive; a larger scale puts its gates to work,
            as the input preprocessing of Andrychowicz et al. (2016) does. Part of the architecture: a
            trained optimizer keeps the scale it was trained with.
        input_norm: ``none`` (papers/002: no preprocessing); ``rms``: the UpdateRNN reads
            g / (sqrt(v_hat) + 1e-8), v the running mean of g^2 with decay 0.999 and Adam's bias
            correction v_hat = v / (1 - 0.999^t), per coordinate; ``adam``: it reads Adam's direction
            m_hat / (sqrt(v_hat) + 1e-8), m the running mean of g with decay 0.9, bias-corrected. Our
            additions, for problems where tuned ZO-Adam wins through that normalization as the
            gradients shrink (binary classification at 500 steps, docs/results.md). The moments are
            computed from the detached estimate; with ``rms`` the meta-gradient flows through g, with
            ``adam`` through (1 - 0.9) g in m. Part of the architecture.
        update_base: ``none`` (papers/002: the UpdateRNN's output is the step) or ``adam``: the step
            is lr * (alpha * UpdateRNN(...) - d), where d = m_hat / (sqrt(v_hat) + 1e-8) is ZO-Adam's
            direction on the same estimates and lr = base_delta / d_dim. The UpdateRNN's head starts at
            zero, so the untrained optimizer *is* ZO-Adam (with QueryRNN directions) and meta-training
            learns a correction in units of Adam steps. Our addition, not papers/002's: a learned
            optimizer on top of a hand-designed one, as learned_optimization's Adam-feature optimizers
            are, for families where tuned ZO-Adam beats the plain UpdateRNN (binary classification at
            500 steps, docs/results.md). The moments use the detached estimate except m's newest term,
            as ``input_norm='adam'`` does. Part of the architecture, with its base values.
            ``sgd`` is the same with d = g, the estimate itself, so that the untrained optimizer is
            ZO-SGD over its directions; with ``directions='trend'`` it is ZO-Trend, the strongest
            gradient-estimate baseline on binary classification (docs/results.md).
        base_delta: base learning-rate constant (lr = base_delta / d); ``update_base`` adam or sgd.
        base_beta1: ZO-Adam base first-moment decay.
        base_beta2: ZO-Adam base second-moment decay.
        trend_strength: the largest entry of the trend mean (``directions='trend'``).
        trend_decay: the trend's decay per step, in [0, 1) (``directions='trend'``).
    """

    q: int = 20
    mu: float = 1e-4
    query_prob: float = 0.5
    alpha: float = 1.0
    directions: str = "query"
    update: str = "rnn"
    sgd_delta: float = 4.0
    guided_alpha: float = 0.5
    sigma_norm: str = "trace"
    hidden: int = 10
    init_seed: int = 0
    input_scale: float = 1.0
    input_norm: str = "none"
    update_base: str = "none"
    base_delta: float = 2.0
    base_beta1: float = 0.9
    base_beta2: float = 0.999
    trend_strength: float = 1.0
    trend_decay: float = 0.99

    title: ClassVar[str] = "ZO-LSTM"
    shipped_files: ClassVar[dict[str, str]] = {
        "mnist_attack": "zo_lstm_mnist.pt",
        "binary_classification": "zo_lstm_binary.pt",
    }
    train_command: ClassVar[str] = "python -m train.zo_lstm"
    config_class: ClassVar[type[LearnedConfig]] = MetaConfig
    #: format 1 is the layout of the shipped files (marker ``l2l-zo-lstm``), read as this format
    format_version: ClassVar[int] = 2
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        name.removeprefix("zo_lstm_"): changes for name, changes in VARIANTS.items() if name != "zo_lstm"
    }
    architecture: ClassVar[tuple[str, ...]] = ARCHITECTURE
    module_attributes: ClassVar[dict[str, str]] = {"update_rnn": "update_net", "query_rnn": "query_net"}

    def __post_init__(self) -> None:
        check_q(self.q)
        check_mu(self.mu)
        _check_choice("directions", self.directions, DIRECTION_MODES)
        _check_choice("update", self.update, UPDATE_MODES)
        _check_choice("sigma_norm", self.sigma_norm, SIGMA_NORMS)
        _check_choice("input_norm", self.input_norm, INPUT_NORMS)
        _check_choice("update_base", self.update_base, UPDATE_BASES)
        if not self.base_delta > 0:
            raise ValueError(f"base_delta={self.base_delta!r} must be > 0 (the base learning rate is it / d)")
        check_betas(self.base_beta1, self.base_beta2)
        if not self.trend_strength >= 0 or not 0 <= self.trend_decay < 1:
            raise ValueError(
                f"trend_strength={self.trend_strength!r} must be >= 0 and trend_decay={self.trend_decay!r} "
                "in [0, 1)"
            )
        for name in ("query_prob", "guided_alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1]")
        if not self.alpha > 0 or not self.sgd_delta > 0 or not self.input_scale > 0:
            raise ValueError(
                f"alpha={self.alpha!r}, sgd_delta={self.sgd_delta!r} and input_scale={self.input_scale!r} "
                "must all be > 0"
            )
        self.update_net, self.query_net = build_networks(self.hidden, self.sigma_norm, self.init_seed)
        if self.update_base != "none":
            with torch.no_grad():
                self.update_net.head.weight.zero_()  # no correction yet: the untrained step is the base's

    def queries_per_step(self, dim: int) -> int:
        return self.q + 1

    @property
    def evaluates_iterate(self) -> bool:
        # every step's forward difference queries f at the step's own iterate (the "+1" of q + 1)
        return True

    def modules(self) -> dict[str, nn.Module]:
        return {"update_rnn": self.update_net, "query_rnn": self.query_net}

    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        if not isinstance(config, MetaConfig):
            raise TypeError(f"the ZO-LSTM trains with a MetaConfig, not a {type(config).__name__}")
        if self.directions == "trend":
            # trend directions replace the QueryRNN's: the UpdateRNN trains on the directions it is
            # used with, and there is no QueryRNN stage (train.zo_lstm refuses its iterations)
            return (Stage("update", ("update_rnn",), config.update_lr, {"directions": "trend"}),)
        return (
            Stage("update", ("update_rnn",), config.update_lr, {"directions": "gaussian"}),
            Stage("query", ("query_rnn",), config.query_lr, {"directions": "query"}),
        )

    def train_step(
        self, x: torch.Tensor, carry: dict, f: Objective, rng: torch.Generator, project: Project
    ) -> TrainStep:
        """:meth:`advance` with the QueryRNN covariance on every step (sec. 3.3: training always uses it)."""
        out = self.advance(x, carry, f, rng, use_query=True, project=project)
        return TrainStep(x=out.x, aux={"std": out.std})

    def regularizer(self, step: TrainStep, config: LearnedConfig) -> torch.Tensor | None:
        """lambda ||Sigma_t - I||^2 of eq. 4, for steps that sampled along the QueryRNN covariance."""
        std = step.aux.get("std")
        return None if std is None else config.reg_lambda * sigma_penalty(std)  # type: ignore[attr-defined]

    def initial_carry(self, dim: int) -> dict[str, torch.Tensor]:
        """Zero LSTM states and zero 'previous' estimate and update for a d-dimensional optimizee."""
        device = module_device(self.update_net)
        carry = {"prev_grad": torch.zeros(dim, device=device), "prev_update": torch.zeros(dim, device=device)}
        carry["update_h"], carry["update_c"] = self.update_net.initial_state(dim)
        if self.input_norm != "none":
            carry["update_v"] = torch.zeros(dim, device=device)  # Adam's second moment, and its step count
            carry["update_t"] = torch.zeros((), device=device)
        if self.input_norm == "adam":
            carry["update_m"] = torch.zeros(dim, device=device)  # Adam's first moment
        if self.update_base == "adam":
            for name in ("base_m", "base_v"):
                carry[name] = torch.zeros(dim, device=device)
            carry["base_t"] = torch.zeros((), device=device)
        if self.directions == "query":
            carry["query_h"], carry["query_c"] = self.query_net.initial_state(dim)
        if self.directions == "trend":
            carry["trend"] = torch.zeros(dim, device=device)
        return carry

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        # Every variant draws the coin, so the direction streams of variants line up under one seed
        # (query_prob = 0 reproduces the no-query variant bit for bit).
        use_query = bool(torch.rand((), generator=state.rng, device=state.rng.device) < self.query_prob)
        with torch.no_grad():
            out = self.advance(state.x, state.slots, oracle, state.rng, use_query, project=oracle.project)
        state.x, state.fx = out.x, out.est.fx
        state.step += 1
        return state

    def advance(
        self,
        x: torch.Tensor,
        carry: dict,
        f: Objective,
        rng: torch.Generator,
        use_query: bool,
        project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Advance:
        """One step from ``x``, the same for evaluation (an oracle ``f``) and meta-training.

        ``carry`` (the LSTM states and the previous estimate and update) is updated in place.

        What is detached, and why: the estimate is taken at ``x.detach()``, so no meta-gradient flows
        through the estimate back into the iterate (the second-derivative path that Andrychowicz et
        al. drop by detaching the gradient input). The directions are *not* detached: u = s * z keeps
        its path to the QueryRNN's std s, both as the multiplier u_i and through the f-values
        f(x + mu u_i), which is how the QueryRNN learns (reparameterization, sec. 3.3). The QueryRNN's
        inputs, the previous estimate and update, are detached, as in the official code.

        Args:
            x: the iterate [d].
            carry: the recurrent state (from :meth:`initial_carry`), updated in place.
            f: the objective on rows [B, d] -> [B].
            rng: draws the directions.
            use_query: sample along the QueryRNN covariance (ignored unless ``directions='query'``).
            project: maps the stepped iterate onto the feasible set (``oracle.project`` or
                ``task.project``); None for unconstrained problems.
        """
        if self.directions == "trend":
            est, trend = trend_estimate(
                f, x.detach(), carry["trend"], self.q, self.mu, self.trend_strength, self.trend_decay, rng
            )
            carry["trend"], std = trend.detach(), None
        else:
            directions, std = self._directions(x.detach(), f, carry, rng, use_query)
            est = forward_difference(f, x.detach(), directions, self.mu)
        new_x, update = self.apply_update(x, est.grad, carry, project)
        return Advance(x=new_x, est=est, update=update, std=std)

    def apply_update(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        carry: dict,
        project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step from ``x`` for the estimate ``grad``: (new iterate, the update taken); ``carry`` is
        updated in place (the UpdateRNN's state, and the previous estimate and update)."""
        new_x = x + self._update(grad, carry)
        if project is not None:
            new_x = project(new_x)
        update = new_x - x  # the step actually taken: the QueryRNN's and Guided-ES's "previous update"
        carry["prev_grad"], carry["prev_update"] = grad.detach(), update.detach()
        return new_x, update

    def query_std(self, carry: dict) -> torch.Tensor:
        """The QueryRNN's std [d] for the coming step from the previous estimate and update (advances
        its state in ``carry``)."""
        state = (carry["query_h"], carry["query_c"])
        std, (carry["query_h"], carry["query_c"]) = self.query_net(
            carry["prev_grad"], carry["prev_update"], state
        )
        return std

    def _directions(
        self, x: torch.Tensor, f: Objective, carry: dict, rng: torch.Generator, use_query: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.directions == "guided_es":
            surrogates = torch.stack([carry["prev_grad"], carry["prev_update"]], dim=1)
            return guided_es_directions(self.q, rng, surrogates, self.guided_alpha), None
        std = None
        if self.directions == "query":
            # the QueryRNN runs every step (as in training), whether or not this step uses its std
            std = self.query_std(carry)
            std = std if use_query else None
        return self.sample_directions(x, f, rng, std), std

    def sample_directions(
        self, x: torch.Tensor, f: Objective, rng: torch.Generator, std: torch.Tensor | None
    ) -> torch.Tensor:
        """The q query directions of a step at iterate ``x``: N(0, diag(std^2)), or N(0, I) without ``std``.

        The hook for other direction samplers: ZO-RL-LSTM (papers/003 sec. 3.3, ``agents.zo_rl``)
        overrides it to take a direction from a trained sampling policy. ``f`` is the step's objective
        (an oracle at evaluation time), for samplers that read public parts of its task.
        """
        return gaussian_directions(self.q, x.shape[0], rng, std)

    def _update(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        if self.update == "sgd":
            return -(self.sgd_delta / grad.shape[0]) * grad
        features = grad if self.input_norm == "none" else self._normalized(grad, carry)
        features = features if self.input_scale == 1.0 else features * self.input_scale  # 1: the same bits
        out, (carry["update_h"], carry["update_c"]) = self.update_net(
            features, (carry["update_h"], carry["update_c"])
        )
        if self.update_base == "none":
            return self.alpha * out
        lr = lr_from_delta(self.base_delta, grad.shape[0])
        base = grad if self.update_base == "sgd" else self._adam_direction(grad, carry)
        return lr * (self.alpha * out - base)

    def _adam_direction(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """ZO-Adam's m_hat / (sqrt(v_hat) + 1e-8) with the base's decays; updates its moments in ``carry``."""
        b1, b2 = self.base_beta1, self.base_beta2
        carry["base_t"] = t = carry["base_t"] + 1
        carry["base_m"] = b1 * carry["base_m"].detach() + (1 - b1) * grad
        carry["base_v"] = b2 * carry["base_v"] + (1 - b2) * grad.detach() ** 2
        return carry["base_m"] / (1 - b1**t) / ((carry["base_v"] / (1 - b2**t)).sqrt() + 1e-8)

    def _normalized(self, grad: torch.Tensor, carry: dict) -> torch.Tensor:
        """The ``rms`` or ``adam`` input of the UpdateRNN (see ``input_norm``); updates the moments."""
        g = grad.detach()
        carry["update_v"] = RMS_DECAY * carry["update_v"] + (1 - RMS_DECAY) * g * g
        carry["update_t"] = t = carry["update_t"] + 1
        rms = (carry["update_v"] / (1 - RMS_DECAY**t)).sqrt() + 1e-8
        if self.input_norm == "rms":
            return grad / rms
        carry["update_m"] = MOMENT_DECAY * carry["update_m"].detach() + (1 - MOMENT_DECAY) * grad
        return carry["update_m"] / (1 - MOMENT_DECAY**t) / rms

    def make_variant(self, variant: str, task: str | None = None, **overrides: Any) -> ZOLSTM:
        """An ablation (see :data:`VARIANTS`, without the ``zo_lstm_`` prefix); ``no_update`` takes
        ``task``'s tuned ZO-SGD delta as ``sgd_delta`` unless that is overridden."""
        if variant == "no_update" and task is not None and "sgd_delta" not in overrides:
            delta = tuned_params("zo_sgd", task).get("delta")
            if delta is not None:
                overrides = {**overrides, "sgd_delta": float(delta)}
        return super().make_variant(variant, task, **overrides)


@register_optimizer("zo_lstm_untrained")
@dataclass
class UntrainedZOLSTM(ZOLSTM):
    """The ZO-LSTM with random initial weights (from ``init_seed``): the control for a learned one."""


def make_variant(optimizer: ZOLSTM, variant: str, task: str | None = None, **overrides: Any) -> ZOLSTM:
    """An ablation of ``optimizer`` (an independent copy; see :data:`VARIANTS`).

    Args:
        optimizer: usually a loaded checkpoint.
        variant: one of :data:`VARIANTS`; ``zo_lstm_untrained`` redraws the weights from ``init_seed``.
        task: a task family whose tuned ``zo_sgd`` delta becomes ``sgd_delta`` of ``zo_lstm_no_update``
            (unless ``sgd_delta`` is overridden); None keeps the optimizer's.
        **overrides: options that win over the variant's (e.g. ``q=20``).
    """
    if variant not in VARIANTS:
        raise KeyError(f"unknown ZO-LSTM variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    short = "" if variant == "zo_lstm" else variant.removeprefix("zo_lstm_")
    return optimizer.make_variant(short, task, **overrides)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(choices)}")
