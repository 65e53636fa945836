"""The learned-optimizer protocol: what ``MetaTrainer``, checkpoints, the CLIs and ``eval.specs`` rely on.

In the spirit of learned_optimization's split between a ``LearnedOptimizer`` (meta-parameters and an
optimizer built from them) and a ``TruncatedStep`` (how a truncated unroll advances and is scored), a
learned ZO optimizer declares

- its meta-parameter modules (:meth:`LearnedOptimizer.modules`, by name: what is trained and saved);
- its recurrent carry (:meth:`LearnedOptimizer.initial_carry`, fresh for every run and every training
  trajectory; evaluation keeps it in ``ZOState.slots``);
- a differentiable step (:meth:`LearnedOptimizer.train_step`) that meta-training unrolls;
- a meta-loss regularizer (:meth:`LearnedOptimizer.regularizer`, one term per step, or None);
- its training stages (:meth:`LearnedOptimizer.stages`: names, trained modules, learning rate and the
  options the optimizer trains, validates and is saved with);
- its variants (ablations selectable as ``path#variant``) and its untrained control.

Its meta-training configuration is a :class:`LearnedConfig` subclass: the truncated-BPTT procedure
shared by every learned optimizer plus the optimizer's own options. :func:`register_learned` makes it
trainable by ``python -m train.learned --optimizer NAME`` and loadable from its checkpoint, whose
format marker is ``l2l.learned/NAME``.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from l2l.common.config import doc_field
from l2l.common.paths import shipped_file
from l2l.common.registry import Registry
from l2l.estimators import Objective
from l2l.learned.optimizee_grad import OPTIMIZEE_GRADS
from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.tasks.base import Task

#: how the meta-loss sum_t t f(x_t) is scaled: divided by sum_t t (``mean``) or as written (``sum``)
META_LOSS_SCALES = ("mean", "sum")
#: the variant name of every learned optimizer's untrained control (same options, fresh weights)
UNTRAINED = "untrained"
#: the prefix of a learned optimizer's checkpoint format marker
FORMAT_PREFIX = "l2l.learned/"

Project = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Stage:
    """One meta-training stage of a learned optimizer.

    Attributes:
        name: the stage's name (``update``, ``query``, ...), used in logs, history and resume files.
        trains: names of the modules (keys of :meth:`LearnedOptimizer.modules`) that this stage trains;
            the others are frozen (no gradient, no update).
        lr: the Adam learning rate of the stage.
        options: optimizer options in force while the stage trains, validates and saves.
    """

    name: str
    trains: tuple[str, ...]
    lr: float
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TrainStep:
    """What one differentiable step produced.

    Attributes:
        x: the new iterate (carries the autograd graph to the meta-parameters).
        aux: whatever the optimizer's :meth:`LearnedOptimizer.regularizer` reads (e.g. a covariance).
    """

    x: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict)


@dataclass
class LearnedConfig:
    """The truncated-BPTT procedure every learned optimizer is meta-trained with (papers/002 sec. 3.2).

    Subclasses add the optimizer's own options and implement :meth:`new_optimizer`.
    """

    steps: int = doc_field(200, "optimizee steps T per training trajectory")
    unroll: int = doc_field(20, "steps per truncated-BPTT window; one window is one meta-iteration")
    clip: float = doc_field(1.0, "meta-gradients are clipped elementwise to [-clip, clip]")
    meta_loss_scale: Literal["mean", "sum"] = doc_field(
        "mean",
        "mean: divide sum_t t f(x_t) by sum_t t (a t-weighted mean loss, so clipping only trims spikes); "
        "sum: as written (most meta-gradient elements then exceed the clip)",
    )
    trajectories: int = doc_field(
        1, "trajectories per meta-batch entry: the meta-batch unrolls meta_batch * trajectories of them"
    )
    meta_batch: int = doc_field(
        1,
        "K: tasks unrolled per meta-iteration (mean meta-loss, one Adam step); each new trajectory draws its "
        "task uniformly from the train split (of its family: slot j takes family j mod F)",
    )
    optimizee_grad: Literal["autograd", "zo-coordinate"] = doc_field(
        "autograd",
        "optimizee gradient for BPTT: autograd through the task's torch loss, or zo-coordinate "
        "(eq. 5 of papers/002, 2d evaluations per use)",
    )
    coord_mu: float = doc_field(1e-4, "smoothing radius of the eq.-5 estimator (zo-coordinate only)")
    seed: int = doc_field(0, "seed of the initial weights, the instance order and the query directions")

    def __post_init__(self) -> None:
        for name in ("steps", "unroll", "trajectories", "meta_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.clip > 0 or not self.coord_mu > 0:
            raise ValueError(f"clip={self.clip!r} and coord_mu={self.coord_mu!r} must both be > 0")
        if self.meta_loss_scale not in META_LOSS_SCALES:
            raise ValueError(
                f"meta_loss_scale={self.meta_loss_scale!r} must be one of {', '.join(META_LOSS_SCALES)}"
            )
        if self.optimizee_grad not in OPTIMIZEE_GRADS:
            raise ValueError(f"optimizee_grad={self.optimizee_grad!r} must be one of {OPTIMIZEE_GRADS}")

    def slots(self) -> int:
        """Trajectories unrolled per meta-iteration: ``meta_batch * trajectories``."""
        return self.meta_batch * self.trajectories

    def loss_divisor(self) -> float:
        """What the meta-loss is divided by: sum_{t=1}^T t for ``mean``, 1 for ``sum``."""
        return self.steps * (self.steps + 1) / 2 if self.meta_loss_scale == "mean" else 1.0

    def new_optimizer(self) -> LearnedOptimizer:
        """The optimizer this config describes, with random initial weights from ``seed``."""
        raise NotImplementedError(f"{type(self).__name__} must implement new_optimizer()")


class LearnedOptimizer(ZOOptimizer):
    """A ZO optimizer with meta-trained modules (see the module docstring for the protocol).

    Subclasses are dataclasses whose fields are their options (what :meth:`config` returns and a
    checkpoint stores); constructing one with the same options gives the same initial weights.
    """

    #: the learned-registry name (set by :func:`register_learned`); also the checkpoint format's suffix
    learned_name: ClassVar[str] = ""
    #: the meta-training config class (procedure + this optimizer's options)
    config_class: ClassVar[type[LearnedConfig]] = LearnedConfig
    #: the version of this optimizer's checkpoint layout (bump it when its options or modules change)
    format_version: ClassVar[int] = 1
    #: older layout versions that :meth:`from_config` still reads (their options renamed on loading)
    upgradable_versions: ClassVar[tuple[int, ...]] = ()
    #: variant name -> the options it changes (the ablations; ``untrained`` is the control)
    variants: ClassVar[dict[str, dict[str, Any]]] = {}
    #: options that define the modules' shapes and so cannot change on a built optimizer
    architecture: ClassVar[tuple[str, ...]] = ()
    #: its name in messages (e.g. ``ZO-LSTM``); the registry name when empty
    title: ClassVar[str] = ""
    #: task family -> shipped checkpoint file (under ``checkpoints/``), selectable by name in comparisons
    shipped_files: ClassVar[dict[str, str]] = {}
    #: the command that trains one (named in messages about missing checkpoints)
    train_command: ClassVar[str] = "python -m train.learned --optimizer <name>"
    #: the meta-objectives it may be meta-trained on (``train.learned --meta-objective``; see
    #: :mod:`l2l.learned.meta_grad.objectives`): every one by default, since ES and PES only run the
    #: optimizer's evaluation step; truncated BPTT takes only the differentiable ``weighted_loss``, and the
    #: success-based ones need an attack task (both checked when training starts)
    meta_objectives: ClassVar[tuple[str, ...]] = (
        "weighted_loss", "final_loss", "mean_log_loss", "queries_to_success", "success_auc", "tau_s",
    )  # fmt: skip

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The meta-parameter modules by name (the same objects on every call)."""

    @abc.abstractmethod
    def initial_carry(self, dim: int) -> dict[str, torch.Tensor]:
        """The recurrent state at the start of a run on a ``dim``-dimensional optimizee."""

    @abc.abstractmethod
    def train_step(
        self, x: torch.Tensor, carry: dict, f: Objective, rng: torch.Generator, project: Project
    ) -> TrainStep:
        """One differentiable step from ``x`` at meta-training time; ``carry`` is updated in place.

        Args:
            x: the iterate [d] (part of the autograd graph within a window).
            carry: the recurrent state, updated in place.
            f: the step's objective on rows [B, d] -> [B] (the queries of one estimate).
            rng: draws the step's randomness (query directions).
            project: maps the stepped iterate onto the task's feasible set.
        """

    def instance_carry(self, task: Task) -> dict[str, torch.Tensor]:
        """Public facts of a training instance that its trajectory's carry starts with (default: none).

        Meta-training merges them into :meth:`initial_carry`'s dict for each trajectory, so that
        :meth:`train_step` can read what an attacker knows about its instance (an attack's true label and
        radius), never the loss. At evaluation the optimizer reads the same facts from the oracle's task.

        Args:
            task: the training instance the trajectory optimizes.
        """
        return {}

    def regularizer(self, step: TrainStep, config: LearnedConfig) -> torch.Tensor | None:
        """The meta-loss term that ``step`` adds (before the scaling), or None for none."""
        return None

    @abc.abstractmethod
    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        """The meta-training stages, in order."""

    def init_slots(self, state: ZOState) -> None:
        self.to(state.x.device)  # the modules follow the iterate (a no-op where they already are)
        state.slots.update(self.initial_carry(state.x.shape[0]))

    def to(self: L, device: str | torch.device) -> L:
        """Move every module to ``device`` in place and return self.

        Args:
            device: the torch device the runs will use (e.g. the task's).
        """
        for module in self.modules().values():
            module.to(device)
        return self

    def config(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_config(cls: type[L], config: Mapping[str, Any]) -> L:
        """The optimizer (fresh weights) that a checkpoint's ``config`` describes.

        Subclasses whose options were renamed map the old names here, the one place checkpoints are read.

        Args:
            config: option name -> value, as :meth:`config` returned it when the checkpoint was written.
        """
        return cls(**config)

    def fixed_options(self, changes: Mapping[str, Any]) -> list[str]:
        """The options among ``changes`` that cannot change on this built optimizer (its architecture).

        Args:
            changes: the options about to change (see :meth:`with_options`).
        """
        return sorted(set(changes) & set(self.architecture))

    def with_options(self: L, **changes: Any) -> L:
        """The optimizer with some options changed that *shares* this one's modules (no copy)."""
        fixed = self.fixed_options(changes)
        if fixed:
            raise ValueError(
                f"cannot change {fixed} of an existing {self.learned_name}: they define its modules"
            )
        other = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        other.adopt_modules(self)
        return other

    def adopt_modules(self, other: LearnedOptimizer) -> None:
        """Use ``other``'s module objects as this optimizer's (both then train the same weights)."""
        for name in self.modules():
            setattr(self, _attribute(self, name), other.modules()[name])

    def frozen_copy(self: L, **changes: Any) -> L:
        """An independent, gradient-free copy (modules included), with ``changes`` to its options."""
        other = copy.deepcopy(self.with_options(**changes))
        for module in other.modules().values():
            module.eval().requires_grad_(False)
        return other

    def load_modules(self, states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Copy the weights of ``states`` (module name -> state_dict) into the modules."""
        missing = sorted(set(self.modules()) - set(states))
        if missing:
            raise ValueError(f"the weights of {self.learned_name} lack the modules {missing}")
        for name, module in self.modules().items():
            module.load_state_dict(states[name])

    def module_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """Detached copies of every module's weights (module name -> state_dict)."""
        return {
            name: {k: v.detach().clone() for k, v in module.state_dict().items()}
            for name, module in self.modules().items()
        }

    def make_variant(self: L, variant: str, task: str | None = None, **overrides: Any) -> L:
        """An independent copy with variant ``variant``'s options (see :attr:`variants`).

        ``""`` is the optimizer as it is; ``untrained`` (the control) keeps every option and redraws
        the weights; ``task`` lets a subclass read task-tuned values; ``overrides`` win over the
        variant's options.
        """
        if variant and variant not in self.variant_names():
            raise KeyError(
                f"unknown {self.learned_name} variant {variant!r}; choose one of "
                f"{', '.join(self.variant_names())}"
            )
        changes = {**self.variants.get(variant, {}), **overrides}
        if variant == UNTRAINED:
            fresh = dataclasses.replace(self, **changes)  # type: ignore[type-var]  # fresh weights
            for module in fresh.modules().values():
                module.eval().requires_grad_(False)
            return fresh
        return self.frozen_copy(**changes)

    @classmethod
    def shipped_checkpoint(cls, task: str) -> Path:
        """The shipped checkpoint of this optimizer trained on ``task`` (a KeyError names the others)."""
        what, command = f"{cls.title or cls.learned_name} checkpoint", cls.train_command
        return shipped_file(what, cls.shipped_files, task, command.replace("<name>", cls.learned_name))

    @classmethod
    def variant_names(cls) -> list[str]:
        """Every variant a checkpoint of this optimizer can be loaded as (the control included)."""
        return [*cls.variants, UNTRAINED] if UNTRAINED not in cls.variants else list(cls.variants)


L = TypeVar("L", bound=LearnedOptimizer)


def _attribute(optimizer: LearnedOptimizer, name: str) -> str:
    """The attribute that holds module ``name`` (a subclass may map names via ``module_attributes``)."""
    return getattr(optimizer, "module_attributes", {}).get(name, name)


_LEARNED: Registry[type[LearnedOptimizer]] = Registry("learned optimizer", "learned optimizers")


def register_learned(name: str) -> Callable[[type[L]], type[L]]:
    """Class decorator: register a learned optimizer under ``name`` (format ``l2l.learned/<name>``).

    Args:
        name: the registry name (``train.learned --optimizer NAME``).
    """

    def named(cls: type[L]) -> None:
        cls.learned_name = name

    return _LEARNED.decorator(name, named)  # type: ignore[arg-type, return-value]


def learned_names() -> list[str]:
    """The registered learned optimizers."""
    return _LEARNED.names()


def learned_class(name: str) -> type[LearnedOptimizer]:
    """The learned optimizer registered as ``name``."""
    return _LEARNED[name]
