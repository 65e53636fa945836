"""Meta-objectives measured by the oracle alone: what a run scored, from its recorded trajectory.

Each objective maps a trajectory (the losses f(x_0..x_k) the run recorded, its cumulative queries and
its first success) to one number, lower is better. ``es`` scores whole runs; ``pes`` scores prefixes of
one run, so every objective is defined on a prefix of a run of ``steps`` steps, and a truncation's loss
is the objective's change over it (the changes telescope to the whole run's value, less the constant
value at x_0). Only ``weighted_loss`` is also differentiable (the truncated-BPTT meta-loss).

On tasks that report the best iterate seen (the order attack: ``Task.reports_best_seen``), f(x_t) is
read as the best loss up to step t, as validation reads it. The order attack's oracle loss is already
-tau_S, so its ``final_loss`` is -(best tau_S); ``tau_s`` is that same objective under its own name,
refusing other tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from l2l.common.registry import Registry
from l2l.tasks.base import Task

#: queries_to_success of a run that never succeeds: this many times the run's query budget
FAILURE_FACTOR = 2.0
#: mean_log_loss reads log(max(f, LOG_FLOOR)), so a loss of 0 (or below) counts as a finite best
LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class Horizon:
    """What an objective knows of the whole run besides its prefix.

    Attributes:
        steps: the run's steps T.
        budget: the queries a whole run spends (the success curve's range; the failure penalty's unit).
    """

    steps: int
    budget: int


class MetaObjective:
    """A meta-objective: :meth:`value` of a (prefix of a) run; subclasses set the flags and ``value``."""

    #: its registry name
    name: ClassVar[str] = ""
    #: also differentiable (as truncated BPTT's meta-loss), not only measured
    differentiable: ClassVar[bool] = False
    #: needs a task that defines success (attacks)
    needs_success: ClassVar[bool] = False

    @classmethod
    def check(cls, task: Task) -> None:
        """Raise a ValueError if ``task`` cannot be scored by this objective.

        Args:
            task: a training instance.
        """
        if cls.needs_success and task.success(task.x0().unsqueeze(0)) is None:
            raise ValueError(f"meta-objective {cls.name!r} needs a task that defines success (an attack)")

    @classmethod
    def value(
        cls, losses: Sequence[float], queries: Sequence[int], success_query: int | None, horizon: Horizon
    ) -> float:
        """The objective of a run's prefix.

        Args:
            losses: f(x_0), ..., f(x_k) (best so far on best-seen tasks).
            queries: cumulative queries at each of those iterates.
            success_query: the queries spent when the run first succeeded, or None.
            horizon: the whole run's steps and query budget.
        """
        raise NotImplementedError


_OBJECTIVES: Registry[type[MetaObjective]] = Registry("meta-objective", "meta-objectives")


def _register(cls: type[MetaObjective]) -> type[MetaObjective]:
    return _OBJECTIVES.register(cls.name, cls)


@_register
class WeightedLoss(MetaObjective):
    """sum_t t f(x_t) / sum_{t<=T} t: the t-weighted mean loss, truncated BPTT's meta-loss (its f part)."""

    name = "weighted_loss"
    differentiable = True

    @classmethod
    def value(cls, losses, queries, success_query, horizon):  # type: ignore[no-untyped-def]
        total = sum(t * f for t, f in enumerate(losses) if t > 0)
        return total / (horizon.steps * (horizon.steps + 1) / 2)


@_register
class FinalLoss(MetaObjective):
    """f(x_k): the loss where the run (prefix) ends."""

    name = "final_loss"

    @classmethod
    def value(cls, losses, queries, success_query, horizon):  # type: ignore[no-untyped-def]
        return float(losses[-1])


@_register
class TauS(FinalLoss):
    """The order attack's -tau_S (its oracle loss), best seen: ``final_loss`` on the order attack only."""

    name = "tau_s"

    @classmethod
    def check(cls, task: Task) -> None:
        if not task.reports_best_seen:
            raise ValueError("meta-objective 'tau_s' is the order attack's loss; use final_loss elsewhere")


@_register
class MeanLogLoss(MetaObjective):
    """sum_{t=1..k} log max(f(x_t), LOG_FLOOR) / T: the mean log-loss over the run."""

    name = "mean_log_loss"

    @classmethod
    def value(cls, losses, queries, success_query, horizon):  # type: ignore[no-untyped-def]
        return sum(math.log(max(float(f), LOG_FLOOR)) for f in losses[1:]) / horizon.steps


@_register
class QueriesToSuccess(MetaObjective):
    """The queries spent at the first success; FAILURE_FACTOR * budget for a run that never succeeds."""

    name = "queries_to_success"
    needs_success = True

    @classmethod
    def value(cls, losses, queries, success_query, horizon):  # type: ignore[no-untyped-def]
        return float(success_query) if success_query is not None else FAILURE_FACTOR * horizon.budget


@_register
class SuccessAUC(MetaObjective):
    """1 - the area under the success-against-queries curve on [0, budget], normalised (1 = never).

    A run's success curve is 0 before its first success and 1 after, so its area is
    (budget - success_query) / budget; over instances, the mean is the area under the success-rate curve.
    """

    name = "success_auc"
    needs_success = True

    @classmethod
    def value(cls, losses, queries, success_query, horizon):  # type: ignore[no-untyped-def]
        return 1.0 if success_query is None else min(float(success_query) / horizon.budget, 1.0)


def objective_names() -> list[str]:
    """The registered meta-objectives."""
    return _OBJECTIVES.names()


def objective_class(name: str) -> type[MetaObjective]:
    """The meta-objective registered as ``name`` (a KeyError lists the others)."""
    return _OBJECTIVES[name]
