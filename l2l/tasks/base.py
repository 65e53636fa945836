"""The two task interfaces: one problem instance (``Task``) and a family of them (``TaskFamily``)."""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

SPLITS = ("train", "val", "test")
NORMS = ("linf", "l2")


@dataclass(frozen=True)
class NormBall:
    """The perturbation constraint of an attack: ``||delta||_norm <= eps`` (inside the image box too).

    Optimizers that search the ball itself (Square, SignHunter, Bandits, ...) read it from
    :attr:`Task.ball`; the task's :meth:`Task.project` enforces it either way.
    """

    norm: Literal["linf", "l2"]
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} must be one of {', '.join(NORMS)}")
        if not self.eps > 0:
            raise ValueError(f"eps={self.eps!r} must be > 0 (the radius of the {self.norm} ball)")


class Task(abc.ABC):
    """One zeroth-order problem instance: minimize ``loss(x)`` over ``x`` in R^dim.

    ``loss`` is written in torch and is differentiable; evaluation code reaches it only through an
    :class:`l2l.oracle.Oracle`, which counts queries and blocks gradients. Learned optimizers use the
    autograd path at training time only.

    Stochastic tasks (minibatch losses) return a batch from :meth:`sample_batch`; all q+1 queries of
    one optimizer step share that batch. ``loss(X, batch=None)`` is the full objective, which is what
    trajectories report.
    """

    #: registry name of the family this instance belongs to ("" for a hand-built task)
    family: str = ""
    #: whether the task attacks a classifier: it then has ``model``, ``image``, ``label``,
    #: ``adversarial(X)`` (the attacked images) and a misclassification ``success``
    classifier_attack: ClassVar[bool] = False
    #: whether the variable perturbs an image: the task then has ``image`` (the clean image, of shape
    #: ``image_shape``) and ``adversarial(X)`` (the perturbed images, [B, *image_shape], in [0, 1]);
    #: every classifier attack does, and so do attacks on other models (the order attack's ranking model)
    perturbs_image: ClassVar[bool] = False
    #: whether ``loss_and_success(X)[0]`` equals ``loss(X)`` bit for bit from one shared pass; the
    #: oracle then answers a single-row query through it, and ``l2l.run`` reuses that row's loss and
    #: success when it records the same iterate (no second model pass for one-query-per-step attacks)
    exact_loss_and_success: ClassVar[bool] = False
    #: whether the task's protocol reports the best iterate seen rather than the last one (the order
    #: attack of papers/004 reports the best sample); ``eval.tune`` then scores a run by its lowest loss
    reports_best_seen: ClassVar[bool] = False

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """(channels, height, width) of the image the variable perturbs, or None for a plain vector.

        Image-aware optimizers (square windows, tiles, DCT bases) and CNN policies read it.
        """
        return None

    @property
    def ball(self) -> NormBall | None:
        """The norm ball the variable must stay in (see :class:`NormBall`), or None."""
        return None

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Number of optimization variables d."""

    @abc.abstractmethod
    def x0(self) -> torch.Tensor:
        """The starting point, a float32 tensor of shape [d] (a fresh copy on every call)."""

    @abc.abstractmethod
    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of each row of ``X`` [B, d] -> [B]; ``batch`` selects a minibatch on stochastic tasks."""

    def differentiable_loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """The differentiable torch objective that white-box references and meta-training use: [B, d] -> [B].

        It is :meth:`loss` itself on every task whose black-box loss is differentiable. A task whose
        black box returns a piecewise-constant value (the order attack's -tau_S, papers/004) overrides
        it with a white-box surrogate; :meth:`loss` stays what the oracle returns and what
        trajectories report. ``Oracle.value_and_grad``, ``l2l.diagnostics.true_gradient`` and the
        autograd optimizee gradient of meta-training call this method.

        Args:
            X: points [B, d].
            batch: the minibatch on stochastic tasks (None: the full objective).
        """
        return self.loss(X, batch)

    def success(self, X: torch.Tensor) -> torch.Tensor | None:
        """Whether each row of ``X`` solves the task (e.g. fools the classifier); None if undefined."""
        return None

    def loss_and_success(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full-objective loss and success of each row; tasks override it to share one model pass."""
        return self.loss(X), self.success(X)

    def stack_key(self) -> Hashable:
        """Tasks with equal keys may be evaluated together by one :meth:`loss_many` call.

        The default key is the task's class, whose :meth:`loss_many` loops over the instances: correct
        for any task, just not faster. A task that really stacks (one model forward for the rows of
        several instances, as :class:`~l2l.tasks.attack.AttackTask` does) puts into its key everything
        the stacked pass needs to share (the model object, the input shape, the device). A subclass that
        changes :meth:`loss` must override :meth:`loss_many` as well (or return to the looping one).
        """
        return (type(self),)

    @classmethod
    def loss_many(
        cls,
        tasks: Sequence[Task],
        rows: Sequence[torch.Tensor],
        batches: Sequence[torch.Tensor | None] | None = None,
    ) -> list[torch.Tensor]:
        """``[task.loss(X, batch) for ...]`` over instances with one :meth:`stack_key`, maybe in one pass.

        Called on the class of ``tasks[0]`` (``l2l.oracle.StackedOracle`` does that). A stacked override
        must return, for each instance, its own loss of its own rows, equal to :meth:`loss` up to float
        rounding (a forward over a different batch composition may round differently in the last bits).

        Args:
            tasks: the instances, all with the same :meth:`stack_key`.
            rows: each instance's query rows, [B_i, d].
            batches: each instance's minibatch (None: the full objective for all).
        """
        batches = check_blocks(tasks, rows, batches)
        return [task.loss(X, batch) for task, X, batch in zip(tasks, rows, batches, strict=True)]

    @classmethod
    def loss_and_success_many(
        cls, tasks: Sequence[Task], rows: Sequence[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``[task.loss_and_success(X) for ...]`` (full objective) over instances with one stack key.

        Stacked overrides follow the rule of :meth:`loss_many`.

        Args:
            tasks: the instances, all with the same :meth:`stack_key`.
            rows: each instance's rows, [B_i, d].
        """
        check_blocks(tasks, rows, None)
        return [task.loss_and_success(X) for task, X in zip(tasks, rows, strict=True)]

    @classmethod
    def loss_and_log_likelihood_many(
        cls,
        tasks: Sequence[Task],
        rows: Sequence[torch.Tensor],
        batches: Sequence[torch.Tensor | None] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[task.loss_and_log_likelihood(X, batch) for ...]`` over instances with one stack key.

        Stacked overrides follow the rule of :meth:`loss_many`.

        Args:
            tasks: the instances, all with the same :meth:`stack_key`.
            rows: each instance's rows, [B_i, d].
            batches: each instance's minibatch (None: the full objective for all).
        """
        batches = check_blocks(tasks, rows, batches)
        return [task.loss_and_log_likelihood(X, b) for task, X, b in zip(tasks, rows, batches, strict=True)]

    def loss_and_log_likelihood(
        self, X: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and the model's log-probability of the true class, log p(t | row), for each row of ``X``.

        Only score-based tasks, whose black box returns class probabilities (classifier attacks),
        define it; ZO-NGD reads both from the same queries (papers/000 eq. 16-17).
        """
        raise NotImplementedError(
            f"{type(self).__name__} exposes no log-likelihood output; only score-based tasks such as "
            "AttackTask do (optimizers like zo_ngd need one)"
        )

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest feasible point to ``x`` [d]; the identity for unconstrained tasks.

        The feasible set is public knowledge, so projecting costs no query.
        """
        return x

    def sample_batch(self, generator: torch.Generator) -> torch.Tensor | None:
        """A fresh minibatch (index tensor) for one optimizer step; None for deterministic tasks."""
        return None

    def describe(self) -> dict:
        """A JSON-friendly description of the instance, for logs and checkpoints."""
        return {"family": self.family, "dim": self.dim}

    @property
    def device(self) -> torch.device:
        """Where the task's tensors live, and so where ``x0`` and the run's iterates are made."""
        return getattr(self, "_device", torch.device("cpu"))

    def to(self, device: str | torch.device) -> Task:
        """Move the task's tensors and modules (a shared model moves for every task using it) to ``device``.

        Moves every tensor and ``nn.Module`` attribute, in place; returns self. A task that keeps tensors
        elsewhere (in a container) overrides it. On the task's own device it changes nothing.

        Args:
            device: a torch device, e.g. from :func:`l2l.common.device.resolve_device`.
        """
        device = torch.device(device)
        if device != self.device:
            move_attributes(self, device)
            self._device = device
        return self


class TaskFamily(abc.ABC):
    """A family of task instances with disjoint train / val / test splits.

    Model selection (learned-optimizer checkpoints, baseline learning rates) uses ``val``; ``test`` is
    only for final reports.
    """

    name: str = ""
    #: the number of optimizer steps a run of this family takes by default (training and evaluation)
    default_steps: ClassVar[int] = 200
    #: the splits that hold instances: all three, or ("test",) for a test-only track (ImageNet's 20
    #: images), where methods run with their papers' settings instead of values tuned on val
    splits: ClassVar[tuple[str, ...]] = SPLITS
    #: method name -> the parameters its paper publishes for this family's setting; tables run a method
    #: with them where no value was tuned on val for the family (a test-only track has nothing to tune on)
    paper_settings: ClassVar[dict[str, dict[str, Any]]] = {}
    #: where :meth:`instance` puts its tasks (``make_family(..., device=...)`` sets it)
    device: torch.device = torch.device("cpu")

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "instance" in cls.__dict__:
            cls.instance = _on_family_device(cls.__dict__["instance"])  # type: ignore[method-assign]

    @abc.abstractmethod
    def split_size(self, split: str) -> int:
        """Number of instances in ``split``."""

    @abc.abstractmethod
    def instance(self, split: str, index: int) -> Task:
        """Instance ``index`` of ``split``."""

    def instances(self, split: str, limit: int | None = None) -> list[Task]:
        """The first ``limit`` (default: all) instances of ``split``, in a fixed order."""
        if check_split(split) not in self.splits:
            raise ValueError(
                f"{self.name!r} has no {split!r} split: its instances are all in {', '.join(self.splits)} "
                f"(use --split {self.splits[0]}; methods run there with their papers' settings or defaults)"
            )
        n = self.split_size(split)
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit={limit} must be >= 1 (or None for the whole split)")
            if limit > n:
                raise ValueError(
                    f"limit={limit} exceeds the {n} instances of the {split!r} split of {self.name!r}; "
                    f"ask for at most {n}"
                )
            n = limit
        return [self.instance(split, i) for i in range(n)]

    def check_index(self, split: str, index: int) -> None:
        n = self.split_size(check_split(split))
        if not 0 <= index < n:
            raise IndexError(
                f"index={index} is outside the {split!r} split of {self.name!r}, which has {n} instances "
                f"(valid: 0..{n - 1})"
            )


def move_attributes(obj: object, device: torch.device) -> None:
    """Move every tensor and ``nn.Module`` attribute of ``obj`` to ``device`` (modules in place).

    Args:
        obj: a task or a family.
        device: the target device.
    """
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor | torch.nn.Module):
            setattr(obj, name, value.to(device))


def _on_family_device(instance: Callable[..., Task]) -> Callable[..., Task]:
    """Wrap a family's ``instance`` so that the task it builds lands on the family's device."""

    @functools.wraps(instance)
    def on_device(self: TaskFamily, split: str, index: int) -> Task:
        if self.device.type == "cpu":
            return instance(self, split, index)
        move_attributes(self, self.device)  # the family's data first: some tasks compute on it when built
        return instance(self, split, index).to(self.device)

    return on_device


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def check_rows(X: torch.Tensor, dim: int, what: str = "X") -> torch.Tensor:
    """Validate a batch of points: returns ``X`` as [B, dim], promoting a single [dim] vector."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(X).__name__}")
    if X.dim() == 1:
        X = X.unsqueeze(0)
    if X.dim() != 2 or X.shape[1] != dim:
        raise ValueError(f"{what} has shape {tuple(X.shape)}; expected [B, {dim}] or [{dim}] for this task")
    return X


def check_blocks(
    tasks: Sequence[Task], rows: Sequence[torch.Tensor], batches: Sequence[torch.Tensor | None] | None
) -> list[torch.Tensor | None]:
    """Check a stacked evaluation's inputs (one row block per task, one batch each); returns the batches.

    Args:
        tasks: the instances.
        rows: one [B_i, d] block per instance.
        batches: one minibatch (or None) per instance, or None for the full objective everywhere.
    """
    if not tasks:
        raise ValueError("a stacked evaluation needs at least one task; got none")
    if len(rows) != len(tasks):
        raise ValueError(f"got {len(rows)} row blocks for {len(tasks)} tasks; pass one block per task")
    if batches is None:
        return [None] * len(tasks)
    if len(batches) != len(tasks):
        raise ValueError(f"got {len(batches)} batches for {len(tasks)} tasks; pass one (or None) per task")
    return list(batches)


def split_counts(total: int, sizes: Sequence[int | None]) -> list[int]:
    """Resolve split sizes where ``None`` means 'all that remain'."""
    fixed = sum(s for s in sizes if s is not None)
    if fixed > total:
        raise ValueError(f"split sizes {list(sizes)} need {fixed} items but only {total} exist")
    return [total - fixed if s is None else s for s in sizes]
