"""The ZO optimizer protocol and the shared machinery of estimate-then-update optimizers."""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from l2l.common.device import generator_on
from l2l.estimators import Estimate, EstimatorSpec
from l2l.optimizers.core.surrogates import task_zoo
from l2l.oracle import Oracle
from l2l.tasks.base import Task

#: the task capabilities an optimizer can require (see :attr:`ZOOptimizer.requires`)
CAPABILITIES = {
    "ball": "a norm-ball constraint (Task.ball), as on mnist_attack_linf or mnist_attack_l2",
    "image": "an image-shaped variable (Task.image_shape), as on the attack families",
    "likelihood": "score-based outputs (Task.loss_and_log_likelihood), as on classifier attacks",
    "zoo": "a target-model zoo whose surrogates an attack may carry (the MNIST and Fashion-MNIST attacks)",
}


@dataclass
class ZOState:
    """Everything an optimizer carries between steps.

    Attributes:
        x: the current iterate, [d].
        rng: the generator that draws this run's query directions.
        step: number of steps taken.
        fx: f at the iterate before the last step, when the step evaluated it (else None).
        slots: optimizer-specific tensors (Adam moments, RNN states, ...).
    """

    x: torch.Tensor
    rng: torch.Generator
    step: int = 0
    fx: torch.Tensor | None = None
    slots: dict[str, Any] = field(default_factory=dict)


class ZOOptimizer(abc.ABC):
    """A zeroth-order optimizer: ``init(x0, seed) -> state``, then ``step(state, oracle) -> state``.

    ``step`` reaches the objective only through ``oracle`` (a counted black box), keeps the iterate
    feasible with ``oracle.project``, and spends exactly :meth:`next_step_queries` queries, so that
    ``l2l.run`` can stop before a budget is hit.
    """

    #: registry name, set by ``register_optimizer``
    name: str = ""
    #: True for first-order *reference* methods that read true gradients (``oracle.value_and_grad``);
    #: tables mark them, since they are not black-box attacks
    white_box: ClassVar[bool] = False
    #: task capabilities the optimizer needs (keys of :data:`CAPABILITIES`); ``l2l.run`` checks them
    requires: ClassVar[frozenset[str]] = frozenset()

    def init(self, x0: torch.Tensor, seed: int = 0) -> ZOState:
        """A fresh state at ``x0``; ``seed`` fixes every random choice of the run."""
        if x0.dim() != 1:
            raise ValueError(f"x0 must be a vector [d]; got shape {tuple(x0.shape)}")
        state = ZOState(x=x0.detach().clone(), rng=generator_on(x0.device, seed))
        self.init_slots(state)
        return state

    def init_slots(self, state: ZOState) -> None:  # noqa: B027 - optional hook
        """Fill ``state.slots``; optimizers without extra state need not override it."""

    @abc.abstractmethod
    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        """One optimization step through ``oracle``; returns the updated state."""

    @abc.abstractmethod
    def queries_per_step(self, dim: int) -> int:
        """Queries a typical step uses on a d-dimensional task (the figure tables report)."""

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        """Queries the next step from ``state`` will use; override when steps differ in cost."""
        return self.queries_per_step(dim)

    @property
    def evaluates_iterate(self) -> bool:
        """Whether every step queries f at its own starting iterate.

        Then the next step's first query reveals whether the current iterate already solves the task
        (a free success check). False, the default, is the conservative answer: query tables charge a
        separate check query per step.
        """
        return False

    #: what a lockstep step's rows return: ``loss`` (the oracle's call) or ``loss_and_likelihood``
    #: (``Oracle.query_with_likelihood``: the losses and log p(t | row) of the same queries)
    lockstep_values: ClassVar[str] = "loss"

    @property
    def lockstep(self) -> bool:
        """Whether :func:`l2l.run_many` steps several runs of this optimizer in lockstep.

        True: a step splits into :meth:`propose` (draw the rows to query, with the state's own rng,
        exactly as :meth:`step` would) and :meth:`conclude` (finish the step from their values), so the
        rows of many runs go to the oracle in one stacked call. False, the default: ``run_many`` runs
        each instance with ``l2l.run``, one after the other (same results, no speed-up).
        """
        return False

    def propose(self, state: ZOState, oracle: Oracle) -> tuple[torch.Tensor, Any]:
        """The rows [n, d] the next step from ``state`` queries (n = :meth:`next_step_queries`), and a plan.

        Only for :attr:`lockstep` optimizers; the plan is whatever :meth:`conclude` needs.

        Args:
            state: the run's state; its rng advances as the serial step's would.
            oracle: the run's own oracle, for what it tells for free (the task's projection, image shape
                and ball); proposing never queries it (``l2l.run_many`` checks the count).
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no lockstep step (its lockstep is False); l2l.run_many runs it "
            "one instance at a time through l2l.run"
        )

    def conclude(self, state: ZOState, values: torch.Tensor, plan: Any, oracle: Oracle) -> ZOState:
        """Finish the step that :meth:`propose` began, from the oracle's ``values`` of its rows.

        Args:
            state: the state :meth:`propose` saw.
            values: f at each proposed row, [n] (with :attr:`lockstep_values` ``loss_and_likelihood``:
                the pair (f [n], log p(t | row) [n])).
            plan: what :meth:`propose` returned with the rows.
            oracle: the run's own oracle, for its free projection only (the rows are already paid).
        """
        raise NotImplementedError(f"{type(self).__name__} has no lockstep step (its lockstep is False)")

    def config(self) -> dict:
        """The constructor arguments that reproduce this optimizer (JSON-friendly)."""
        return {}


def task_capabilities(task: Task) -> set[str]:
    """The keys of :data:`CAPABILITIES` that ``task`` offers."""
    offered = {
        "ball": task.ball is not None,
        "image": task.image_shape is not None,
        # a score-based task is one that implements the likelihood output
        "likelihood": type(task).loss_and_log_likelihood is not Task.loss_and_log_likelihood,
        "zoo": task_zoo(task) is not None,
    }
    return {name for name, ok in offered.items() if ok}


def check_compatible(optimizer: ZOOptimizer, task: Task) -> None:
    """Raise a clear error when ``task`` lacks a capability that ``optimizer`` requires."""
    missing = sorted(set(getattr(optimizer, "requires", ())) - task_capabilities(task))
    if missing:
        needs = "; ".join(f"{m}: {CAPABILITIES[m]}" for m in missing)
        label = optimizer.name or type(optimizer).__name__
        raise ValueError(f"optimizer {label!r} cannot run on {type(task).__name__}: it needs {needs}")


def check_betas(beta1: float, beta2: float) -> None:
    """Adam's moment decays must lie in [0, 1)."""
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= value < 1:
            raise ValueError(f"{name}={value!r} must be in [0, 1)")


def lr_from_delta(delta: float, dim: int) -> float:
    """The papers/002 convention: a learning rate of delta / d."""
    return delta / dim


@dataclass
class GradientEstimateOptimizer(ZOOptimizer):
    """Estimate the gradient with an :class:`EstimatorSpec`, then apply :meth:`update`.

    Args:
        delta: step-size constant; the learning rate is delta / d (papers/002 sec. 4).
        q: query directions per step.
        mu: finite-difference smoothing radius.
        estimator: estimator kind (``gaussian``, ``sphere``, ``antithetic``, ``rademacher`` or
            ``coordinate``).
    """

    delta: float = 1.0
    q: int = 20
    mu: float = 1e-4
    estimator: str = "gaussian"

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"delta={self.delta!r} must be > 0 (the learning rate is delta / d)")
        self.spec = EstimatorSpec(kind=self.estimator, q=self.q, mu=self.mu)

    def queries_per_step(self, dim: int) -> int:
        return self.spec.queries_per_step(dim)

    @property
    def evaluates_iterate(self) -> bool:
        return self.spec.evaluates_x

    def estimate(self, state: ZOState, oracle: Oracle) -> Estimate:
        """The gradient estimate of one step; subclasses override it to draw or combine queries."""
        return self.spec.estimate(oracle, state.x, state.rng)

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        return self.apply_estimate(state, self.estimate(state, oracle), oracle)

    def apply_estimate(self, state: ZOState, est: Estimate, oracle: Oracle) -> ZOState:
        """Apply :meth:`update` with the estimate ``est``, project, and count the step (no query)."""
        state.x = oracle.project(self.update(state, est, lr_from_delta(self.delta, state.x.shape[0])))
        state.fx = est.fx
        state.step += 1
        return state

    @property
    def lockstep(self) -> bool:
        """Whether the class keeps this base's :meth:`estimate` and :meth:`step`.

        Then (zo_sgd, zo_signsgd, zo_adam, nes, spsa) :meth:`propose` and :meth:`conclude` are the
        serial step cut in two. A subclass that draws or combines its queries its own way (guided_es,
        zo_ngd, zo_szvrg) is False, and ``l2l.run_many`` runs it serially, until it defines its own split.
        """
        base = GradientEstimateOptimizer
        return type(self).estimate is base.estimate and type(self).step is base.step

    def propose(self, state: ZOState, oracle: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimator's rows at ``state.x`` and their directions (:meth:`EstimatorSpec.draw`)."""
        return self.spec.draw(state.x, state.rng)

    def conclude(self, state: ZOState, values: torch.Tensor, plan: torch.Tensor, oracle: Oracle) -> ZOState:
        """The estimate from ``values`` (:meth:`EstimatorSpec.combine`), then :meth:`apply_estimate`."""
        return self.apply_estimate(state, self.spec.combine(values, plan), oracle)

    @abc.abstractmethod
    def update(self, state: ZOState, est: Estimate, lr: float) -> torch.Tensor:
        """The next iterate from the current state and the gradient estimate."""

    def config(self) -> dict:
        return asdict(self)
