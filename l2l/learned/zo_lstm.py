"""The ZO-LSTM optimizer (papers/002): UpdateRNN updates from ZO estimates along QueryRNN directions.

One step at iterate x (q + 1 queries):

1. draw the Bernoulli coin X ~ Ber(P) (``query_prob``) from the run's generator;
2. QueryRNN([previous estimate, previous update]) -> std s (Sigma = diag(s^2), ||Sigma|| = ||I||); the
   directions are u_i = s * z_i when X = 1, else u_i = z_i, with z_i ~ N(0, I) (q of them);
3. the forward-difference estimate g = 1/(mu q) sum_i [f(x + mu u_i) - f(x)] u_i (eq. 1);
4. x <- x + alpha * UpdateRNN(g) (eq. 2; alpha is the update scale of sec. 4.3), projected onto the
   task's feasible set (the identity for unconstrained tasks).

Steps 2-3 and 4 are parts that the options pick (:mod:`l2l.learned.zo_lstm_parts`): the direction
sampler (``directions``: query, gaussian, guided_es, trend), the update rule (``update``: the UpdateRNN
step, a ZO-SGD / ZO-Adam base step, or a learned correction on one) and the UpdateRNN's input transform
(``input_norm``). With ``update='sgd+rnn'`` and ``directions='trend'`` the untrained optimizer is
ZO-Trend (see :class:`ZOLSTM`).

The ablations of sec. 4.4 are variants of the same class (see :data:`VARIANTS`): standard Gaussian
directions (``no_query``), a ZO-SGD update with QueryRNN directions (``no_update``), Guided-ES directions
from the last estimate and update (``guided_es``), and the same configuration with random initial
weights (``untrained``, the control of every comparison with a learned optimizer).

:func:`upgrade_options` is the one place that reads the option names of older checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from l2l.common.config import doc_field
from l2l.common.device import module_device
from l2l.estimators import Estimate, Objective, gaussian_directions
from l2l.learned.networks import build_networks, sigma_penalty
from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Project, Stage, TrainStep, register_learned
from l2l.learned.zo_lstm_parts import (
    BASE_STEPS,
    CORRECTED,
    DIRECTIONS,
    DirectionSampler,
    UpdateRule,
    base_name,
    build_part,
    build_update_rule,
    choose,
    learns,
)
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.tuned import tuned_params
from l2l.oracle import Oracle

#: the learning-rate constant of the ``no_update`` ablation's ZO-SGD step when no task's tuned ZO-SGD
#: delta is given (lr = 4 / d; the former ``sgd_delta`` default, which every trained checkpoint carries)
NO_UPDATE_DELTA = 4.0

#: ablation name -> the options it changes; ``zo_lstm_untrained`` also redraws the weights
VARIANTS: dict[str, dict[str, Any]] = {
    "zo_lstm": {},
    "zo_lstm_no_query": {"directions": "gaussian"},
    "zo_lstm_no_update": {"update": "sgd", "base_delta": NO_UPDATE_DELTA},
    "zo_lstm_guided_es": {"directions": "guided_es", "guided_alpha": 0.5},
    "zo_lstm_untrained": {},
}

#: the update rule's options: what the UpdateRNN was trained with, free once a rule drops the UpdateRNN
UPDATE_OPTIONS = ("update", "input_scale", "input_norm", "base_delta", "base_beta1", "base_beta2")
#: options that define the networks' shapes or what they were trained on, so cannot change on a trained one
ARCHITECTURE = ("hidden", "sigma_norm", *UPDATE_OPTIONS, "trend_strength", "trend_decay")

#: the ``update`` value of a legacy ``update_base`` (format version 2 and earlier, with ``update='rnn'``)
LEGACY_UPDATE_BASES = {"none": "rnn", **{name: name + CORRECTED for name in BASE_STEPS}}


def upgrade_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """ZO-LSTM options (of an optimizer or its meta-training config) in today's names.

    Until checkpoint format version 2 two fields overlapped: ``update`` (``rnn``, or ``sgd``: a plain
    ZO-SGD step with its own ``sgd_delta``) and ``update_base`` (``none``, ``adam`` or ``sgd``: the step
    that the UpdateRNN's output corrects). They are one field now: ``update='sgd'`` stays ``sgd`` with
    ``base_delta = sgd_delta``; otherwise ``update_base`` X becomes ``update`` ``X+rnn`` (``none``:
    ``rnn``). An ``rnn`` optimizer's ``sgd_delta`` only set its ``no_update`` ablation's step, which
    takes :data:`NO_UPDATE_DELTA` (that field's default) now. Options in today's names pass unchanged.

    Args:
        values: option name -> value, as a checkpoint's ``config`` or a training record stores them.
    """
    upgraded = dict(values)
    if "update_base" not in upgraded and "sgd_delta" not in upgraded:
        return upgraded
    base, sgd_delta = upgraded.pop("update_base", "none"), upgraded.pop("sgd_delta", NO_UPDATE_DELTA)
    if upgraded.get("update") == "sgd":
        upgraded["base_delta"] = sgd_delta
    else:
        upgraded["update"] = choose("update_base", base, LEGACY_UPDATE_BASES)
    return upgraded


@dataclass
class ZOLSTMConfig(LearnedConfig):
    """The ZO-LSTM and its meta-training procedure (papers/002 sec. 3-4; official-code defaults).

    Two stages, for stability (sec. 3.3): ``update`` trains the UpdateRNN with standard Gaussian query
    directions; ``query`` freezes it and trains the QueryRNN, whose covariance every training step then
    samples along (the Bernoulli mix with the identity is a test-time device). The meta-loss adds eq.
    4's ``lambda ||Sigma_t - I||^2`` to the t-weighted losses. The optimizer's options are checked by
    the :class:`ZOLSTM` they build (its parts); this class checks only the meta-training ones.
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
    update: Literal["rnn", "adam+rnn", "sgd+rnn"] = doc_field(
        "rnn",
        "rnn: x <- x + alpha * UpdateRNN (papers/002); adam+rnn: x <- x - lr * (d - alpha * UpdateRNN), d "
        "the ZO-Adam direction m_hat / sqrt(v_hat) and lr = base_delta / d_dim, a learned correction that "
        "starts at exactly ZO-Adam; sgd+rnn: the same with d = g, starting at ZO-SGD (our options)",
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
        super().__post_init__()
        for name in ("update_lr", "query_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if self.reg_lambda < 0:
            raise ValueError(f"reg_lambda={self.reg_lambda!r} must be >= 0")
        self.new_optimizer()  # checks every option of the optimizer, in the parts that use them
        if not learns(self.update):
            raise ValueError(f"update={self.update!r} has no UpdateRNN to meta-train; use rnn or <base>+rnn")

    def tuned_sources(self) -> dict[str, tuple[str, str]]:
        """The base and trend options this configuration uses: option -> (tuned baseline, its parameter)."""
        sampler: type[DirectionSampler] = DIRECTIONS[self.directions]
        base = base_name(self.update)
        sources = {} if base is None else dict(BASE_STEPS[base].tuned)
        if base == "sgd" and sampler.sgd_baseline is not None:
            sources["base_delta"] = (sampler.sgd_baseline, "delta")
        return {**sources, **sampler.tuned}

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
            input_norm=self.input_norm, update=self.update, **set_values,
        )  # fmt: skip


#: the config's name before it moved out of :mod:`l2l.learned.meta` (``l2l.learned.MetaConfig``)
MetaConfig = ZOLSTMConfig


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
    the carry holds both LSTM states, the parts' statistics and the previous estimate and update. The
    options pick its parts (:mod:`l2l.learned.zo_lstm_parts`), which check them: ``direction_sampler``
    (from ``directions``) and ``update_rule`` (from ``update``, with its input transform).

    Args:
        q: query directions per step (q + 1 queries).
        mu: finite-difference smoothing radius.
        query_prob: P, the chance that a step samples along the QueryRNN covariance (else identity).
        alpha: update scale, x <- x + alpha * UpdateRNN(g) (papers/002 sec. 4.3).
        directions: ``query`` (QueryRNN), ``gaussian`` (N(0, I)), ``guided_es`` (app. B), or ``trend``
            (our option): N(0, I) around ZO-Trend's mean of the estimates' unbiased parts, with no
            QueryRNN to train (:class:`~l2l.learned.zo_lstm_parts.TrendDirections`). Every step still
            draws the QueryRNN coin first, so the direction streams of all modes line up under one seed
            (and the trend stream differs from ``zo_trend``'s).
        update: ``rnn`` (papers/002: the UpdateRNN's output is the step); ``sgd`` or ``adam``: the base
            step alone, -lr d (``sgd`` is the ``no_update`` ablation); ``sgd+rnn`` or ``adam+rnn`` (ours):
            lr * (alpha * UpdateRNN(...) - d), d ZO-SGD's estimate or ZO-Adam's m_hat / (sqrt(v_hat) +
            1e-8) on the same estimates and lr = base_delta / d_dim. The UpdateRNN's head then starts at
            zero, so the untrained optimizer *is* its base (with its directions: ZO-Trend for ``sgd+rnn``
            over trend directions) and meta-training learns a correction in units of base steps, for
            families where a tuned baseline beats the plain UpdateRNN (binary classification at 500
            steps). See :mod:`l2l.learned.zo_lstm_parts.updates`.
        guided_alpha: Guided-ES weight of the full space (``guided_es`` only).
        sigma_norm: ``trace`` or ``frobenius`` normalization of Sigma (see ``normalize_std``).
        hidden: LSTM hidden units of both networks.
        init_seed: seed of the random initial weights (meta-training starts from the same ones, so
            the untrained control is exactly the starting point of training).
        input_scale: the UpdateRNN reads ``input_scale * input`` (1: papers/002's eq. 2; see
            :class:`~l2l.learned.zo_lstm_parts.InputTransform`).
        input_norm: what the UpdateRNN reads: ``none`` (the estimate, papers/002), ``rms`` (it over
            Adam's running RMS) or ``adam`` (Adam's direction); see :mod:`l2l.learned.zo_lstm_parts.inputs`.
        base_delta: base learning-rate constant (lr = base_delta / d) of the ``sgd`` and ``adam`` bases.
        base_beta1: ZO-Adam base first-moment decay.
        base_beta2: ZO-Adam base second-moment decay.
        trend_strength: the largest entry of the trend mean (``directions='trend'``).
        trend_decay: the trend's decay per step, in [0, 1) (``directions='trend'``).

    ``update``, ``input_scale``, ``input_norm``, the ``base_*`` options, ``hidden``, ``sigma_norm`` and the
    trend options are part of the architecture: a trained optimizer keeps them, except that an ablation
    may drop the UpdateRNN (an update rule that does not learn frees the update options).
    """

    q: int = 20
    mu: float = 1e-4
    query_prob: float = 0.5
    alpha: float = 1.0
    directions: str = "query"
    update: str = "rnn"
    guided_alpha: float = 0.5
    sigma_norm: str = "trace"
    hidden: int = 10
    init_seed: int = 0
    input_scale: float = 1.0
    input_norm: str = "none"
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
    config_class: ClassVar[type[LearnedConfig]] = ZOLSTMConfig
    #: format 1 is the layout of the shipped files (marker ``l2l-zo-lstm``); 1 and 2 hold the options of
    #: before ``update`` was one field, which :func:`upgrade_options` renames
    format_version: ClassVar[int] = 3
    upgradable_versions: ClassVar[tuple[int, ...]] = (2,)
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        name.removeprefix("zo_lstm_"): changes for name, changes in VARIANTS.items() if name != "zo_lstm"
    }
    architecture: ClassVar[tuple[str, ...]] = ARCHITECTURE
    module_attributes: ClassVar[dict[str, str]] = {"update_rnn": "update_net", "query_rnn": "query_net"}

    def __post_init__(self) -> None:
        if not 0.0 <= self.query_prob <= 1.0:
            raise ValueError(f"query_prob={self.query_prob!r} must be in [0, 1]")
        self.direction_sampler: DirectionSampler = build_part(
            choose("directions", self.directions, DIRECTIONS), self
        )
        self.update_rule: UpdateRule = build_update_rule(self)
        self.update_net, self.query_net = build_networks(self.hidden, self.sigma_norm, self.init_seed)
        if self.update_rule.corrects_base:
            with torch.no_grad():
                self.update_net.head.weight.zero_()  # no correction yet: the untrained step is the base's

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ZOLSTM:
        """The optimizer that a checkpoint's options describe, older names too (:func:`upgrade_options`)."""
        return cls(**upgrade_options(config))

    def fixed_options(self, changes: Mapping[str, Any]) -> list[str]:
        """The architecture options among ``changes``, less the update options when the new rule drops the
        UpdateRNN (as the ``no_update`` ablation does: nothing of its training is left to keep)."""
        fixed = super().fixed_options(changes)
        if learns(changes.get("update", self.update)):
            return fixed
        return [name for name in fixed if name not in UPDATE_OPTIONS]

    def queries_per_step(self, dim: int) -> int:
        return self.direction_sampler.queries_per_step()

    @property
    def evaluates_iterate(self) -> bool:
        # every step's forward difference queries f at the step's own iterate (the "+1" of q + 1)
        return True

    def modules(self) -> dict[str, nn.Module]:
        return {"update_rnn": self.update_net, "query_rnn": self.query_net}

    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        """Train the UpdateRNN, then the QueryRNN if the directions use one (sec. 3.3).

        With QueryRNN directions the UpdateRNN trains on standard Gaussian ones (stage 1) and the
        QueryRNN then on its own; other directions (trend) have no QueryRNN to train, so the UpdateRNN
        trains on the directions it is used with, in one stage (train.zo_lstm refuses query iterations).
        """
        if not isinstance(config, ZOLSTMConfig):
            raise TypeError(f"the ZO-LSTM trains with a ZOLSTMConfig, not a {type(config).__name__}")
        if not self.direction_sampler.uses_query_rnn:
            return (Stage("update", ("update_rnn",), config.update_lr, {"directions": self.directions}),)
        return (
            Stage("update", ("update_rnn",), config.update_lr, {"directions": "gaussian"}),
            Stage("query", ("query_rnn",), config.query_lr, {"directions": self.directions}),
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
        """Zero 'previous' estimate and update, and the parts' zero states, for a d-dimensional optimizee."""
        device = module_device(self.update_net)
        carry = {"prev_grad": torch.zeros(dim, device=device), "prev_update": torch.zeros(dim, device=device)}
        carry.update(self.update_rule.initial_carry(self.update_net, dim, device))
        carry.update(self.direction_sampler.initial_carry(self, dim, device))
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
        est, std = self.direction_sampler.estimate(self, x.detach(), f, carry, rng, use_query)
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
        updated in place (the update rule's state, and the previous estimate and update)."""
        new_x = x + self.update_rule.step(self.update_net, grad, carry)
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

    def sample_directions(
        self, x: torch.Tensor, f: Objective, rng: torch.Generator, std: torch.Tensor | None
    ) -> torch.Tensor:
        """The q query directions of a step at iterate ``x``: N(0, diag(std^2)), or N(0, I) without ``std``.

        The Gaussian and QueryRNN samplers draw through it; it is the hook for other direction samplers:
        ZO-RL-LSTM (papers/003 sec. 3.3, ``agents.zo_rl``) overrides it to take a direction from a
        trained sampling policy. ``f`` is the step's objective (an oracle at evaluation time), for
        samplers that read public parts of its task.
        """
        return gaussian_directions(self.q, x.shape[0], rng, std)

    def make_variant(self, variant: str, task: str | None = None, **overrides: Any) -> ZOLSTM:
        """An ablation (see :data:`VARIANTS`, without the ``zo_lstm_`` prefix); ``no_update`` takes
        ``task``'s tuned ZO-SGD delta as ``base_delta`` unless that is overridden."""
        if variant == "no_update" and task is not None and "base_delta" not in overrides:
            delta = tuned_params("zo_sgd", task).get("delta")
            if delta is not None:
                overrides = {**overrides, "base_delta": float(delta)}
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
        task: a task family whose tuned ``zo_sgd`` delta becomes ``base_delta`` of ``zo_lstm_no_update``
            (unless ``base_delta`` is overridden); None: :data:`NO_UPDATE_DELTA`.
        **overrides: options that win over the variant's (e.g. ``q=20``).
    """
    if variant not in VARIANTS:
        raise KeyError(f"unknown ZO-LSTM variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    short = "" if variant == "zo_lstm" else variant.removeprefix("zo_lstm_")
    return optimizer.make_variant(short, task, **overrides)
