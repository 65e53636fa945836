"""The meta-gradient estimator interface, its options and its registry.

A :class:`MetaGradient` fills the ``.grad`` of the parameters a stage trains (summed over the ranks of a
process group) for one meta-iteration of :class:`l2l.learned.meta.MetaTrainer`; the trainer then clips
it elementwise and takes the stage's Adam step. Estimators differ in what they run: truncated BPTT
(``tbptt``) differentiates windows of :meth:`LearnedOptimizer.train_step`; ``es`` and ``pes`` only run
the optimizer's evaluation step (``ZOOptimizer.step``) through the counted oracle with perturbed
meta-parameters, so they never differentiate the task and they train optimizers without a
differentiable path.
"""

from __future__ import annotations

import abc
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from l2l.common.config import doc_field
from l2l.common.registry import Registry

if TYPE_CHECKING:
    from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Stage
    from l2l.tasks.base import Task

#: the estimator every existing run used (and the default)
DEFAULT_ESTIMATOR = "tbptt"
#: the meta-objective every existing run used: sum_t t f(x_t) / sum_t t (differentiable)
DEFAULT_OBJECTIVE = "weighted_loss"


def derived_seed(name: str, seed: int, what: str, index: int = 0) -> int:
    """A 32-bit seed for stream ``what`` number ``index`` of a meta-training run of optimizer ``name``.

    Args:
        name: the learned optimizer's registry name.
        seed: the run's seed (``LearnedConfig.seed``).
        what: the stream (``directions``, ``es/<stage>/<iteration>``, ...).
        index: the stream's member (trajectory, population member).
    """
    return zlib.crc32(f"{name}/{seed}/{what}/{index}".encode())


@dataclass(frozen=True)
class MetaGradConfig:
    """How meta-gradients are estimated (``train.learned --meta-grad ...``); validated here only.

    Attributes:
        estimator: a registered estimator (:func:`estimator_names`): tbptt, es or pes.
        population: es / pes: antithetic pairs per meta-iteration (2 * population inner runs).
        sigma: es / pes: the perturbation scale; theta +- sigma * eps with eps ~ N(0, I).
        truncation: pes: inner steps per truncation (one truncation is one meta-iteration).
        objective: the meta-objective (:func:`l2l.learned.meta_grad.objectives.objective_names`).
        horizon: es / pes: the steps of an inner run (None: the config's ``steps``, the trajectory length
            truncated BPTT unrolls). Oracle-only estimators may run longer than the differentiable path
            reaches: ``signhunter_prior`` trains with steps 1 (its start), yet ES can score whole searches.
    """

    estimator: str = doc_field(DEFAULT_ESTIMATOR, "the meta-gradient estimator")
    population: int = doc_field(8, "antithetic pairs per meta-iteration (es, pes)")
    sigma: float = doc_field(0.01, "perturbation scale of es / pes")
    truncation: int = doc_field(20, "inner steps per pes truncation")
    objective: str = doc_field(DEFAULT_OBJECTIVE, "the meta-objective")
    horizon: int | None = doc_field(None, "steps of an es / pes inner run (none: the config's steps)")

    def __post_init__(self) -> None:
        from l2l.learned.meta_grad.objectives import objective_class  # registers the objectives

        cls = estimator_class(self.estimator)  # a KeyError listing the registered ones
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 1:
            raise ValueError(f"population={self.population!r} must be an integer >= 1 (antithetic pairs)")
        if not (isinstance(self.sigma, int | float) and self.sigma > 0 and self.sigma < float("inf")):
            raise ValueError(f"sigma={self.sigma!r} must be a finite number > 0")
        if isinstance(self.truncation, bool) or not isinstance(self.truncation, int) or self.truncation < 1:
            raise ValueError(f"truncation={self.truncation!r} must be an integer >= 1")
        if self.horizon is not None and (
            isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1
        ):
            raise ValueError(f"horizon={self.horizon!r} must be an integer >= 1 (or none)")
        if cls.differentiable and self.horizon is not None:
            raise ValueError(f"horizon applies to es / pes; {self.estimator} unrolls the config's steps")
        objective = objective_class(self.objective)
        if cls.differentiable and not objective.differentiable:
            raise ValueError(
                f"meta-objective {self.objective!r} is measured by the oracle alone; {self.estimator} "
                f"differentiates the meta-loss, so it needs {DEFAULT_OBJECTIVE} (or use es / pes)"
            )


class Trainer(Protocol):
    """What an estimator reads and sets on ``l2l.learned.meta.MetaTrainer`` (which imports this package,
    so the estimators name it by this protocol rather than importing it).

    Attributes:
        config: the optimizer's config (procedure and options).
        tasks: the training instances (all families, concatenated).
        name: the learned optimizer's registry name (part of every derived seed).
        optimizer: the optimizer whose modules train.
        view: the optimizer with the current stage's options (sharing the modules).
        stage: the current stage's name.
        iteration: meta-iterations done in the stage.
        unrolls: tbptt's trajectories, one per slot.
        mine: the slots this rank unrolls (tbptt).
        meta_grad: the estimator's options.
    """

    config: LearnedConfig
    tasks: list[Task]
    name: str
    optimizer: LearnedOptimizer
    view: LearnedOptimizer
    stage: str | None
    iteration: int
    unrolls: list[Any]  # tbptt.Unroll (which imports this module)
    mine: list[int]
    meta_grad: MetaGradConfig

    def spec(self) -> Stage: ...
    def frozen(self) -> LearnedOptimizer: ...
    def trained_parameters(self) -> list[torch.nn.Parameter]: ...
    def inner_steps(self) -> int: ...
    def draw_task(self, slot: int) -> tuple[int, int]: ...
    def member_task(self, member: int, seed: int) -> int: ...


class MetaGradient(abc.ABC):
    """One meta-gradient estimator, bound to one trainer's run (it holds the estimator's own state).

    Args:
        config: the estimator's options.
    """

    #: its registry name (set by :func:`register_estimator`)
    name: ClassVar[str] = ""
    #: whether it backpropagates through :meth:`LearnedOptimizer.train_step` (needs a differentiable
    #: meta-objective) rather than running the optimizer through the oracle only
    differentiable: ClassVar[bool] = False

    def __init__(self, config: MetaGradConfig):
        self.config = config

    def begin_stage(self, trainer: Trainer) -> None:  # noqa: B027 - optional hook
        """Fresh per-stage state (trajectories, particles) once the trainer began a stage."""

    @abc.abstractmethod
    def gradient(self, trainer: Trainer) -> dict[str, float]:
        """Fill the trained parameters' ``.grad`` (the same on every rank) and return the step's numbers.

        Returns:
            ``meta_loss``, ``reg``, ``loss`` and ``trajectory_step`` (see ``MetaTrainer.meta_step``).
        """

    def advance(self, trainer: Trainer) -> None:  # noqa: B027 - optional hook
        """Called after the Adam step (e.g. truncate or replace finished trajectories)."""

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        """The estimator's state for a resume (a collective in a process group); merged into the trainer's."""
        return {}

    def load_state_dict(self, trainer: Trainer, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore :meth:`state_dict`'s part of a trainer state."""


_ESTIMATORS: Registry[type[MetaGradient]] = Registry("meta-gradient estimator", "meta-gradient estimators")


def register_estimator(name: str) -> Any:
    """Class decorator: register a :class:`MetaGradient` under ``name`` (``--meta-grad NAME``).

    Args:
        name: the registry name.
    """

    def named(cls: type[MetaGradient]) -> None:
        cls.name = name

    return _ESTIMATORS.decorator(name, named)


def estimator_names() -> list[str]:
    """The registered estimators."""
    return _ESTIMATORS.names()


def estimator_class(name: str) -> type[MetaGradient]:
    """The estimator registered as ``name`` (a KeyError lists the others)."""
    return _ESTIMATORS[name]


def trained_parameters(
    modules: dict[str, torch.nn.Module], trains: tuple[str, ...]
) -> list[torch.nn.Parameter]:
    """The parameters of the modules ``trains`` names, in stage order (the flattening order of theta).

    Args:
        modules: the optimizer's modules by name.
        trains: the stage's trained module names.
    """
    return [p for name in trains for p in modules[name].parameters()]


def set_gradient(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    """Write the flat meta-gradient ``flat`` into the ``.grad`` of ``params`` (its flattening order).

    Args:
        params: the trained parameters (see :func:`trained_parameters`).
        flat: one vector of their total size.
    """
    for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = part.view_as(p).to(p.dtype).clone()
