"""The query-counting black-box oracle: the only door to a task at evaluation time."""

from __future__ import annotations

import torch

from l2l.tasks.base import Task, check_rows


class QueryBudgetExceeded(RuntimeError):
    """Raised before any row is evaluated when a call would take the oracle past its budget."""


class NonFiniteLoss(FloatingPointError):
    """Raised when a task returns NaN or inf: optimizing on it silently corrupts every result."""


class Oracle:
    """Wraps a :class:`~l2l.tasks.base.Task` as a counted, gradient-free black box.

    Every row evaluated is one query, and no row is ever evaluated without being counted. With a
    ``budget``, a call that would exceed it raises :class:`QueryBudgetExceeded` before evaluating
    anything, so the count never passes the budget.

    Stochastic tasks: :meth:`set_batch` fixes the minibatch that the following queries share
    (``l2l.run`` draws one per optimizer step).

    Args:
        task: the problem instance.
        budget: the most queries this oracle may answer, or None for no limit.
    """

    def __init__(self, task: Task, budget: int | None = None):
        if budget is not None and budget < 0:
            raise ValueError(f"budget={budget} must be >= 0 (or None for no limit)")
        self.task = task
        self.budget = budget
        self.queries = 0
        self.calls = 0
        self.white_box_calls = 0
        self._batch: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.task.dim

    @property
    def remaining(self) -> int | None:
        """Queries left under the budget (None without one)."""
        return None if self.budget is None else self.budget - self.queries

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """White-box access for first-order *reference* methods only: f(x) and its autograd gradient.

        Counts one query (and one ``white_box_calls``), so reference tables compare like with like;
        a black-box optimizer must never call it.
        """
        x = check_rows(x, self.task.dim)[0].detach().requires_grad_(True)
        self._charge(1)
        self.white_box_calls += 1
        with torch.enable_grad():
            value = self.task.loss(x.unsqueeze(0), self._batch)[0]
            (grad,) = torch.autograd.grad(value, x)
        self._check_finite(value.detach().unsqueeze(0))
        return value.detach(), grad

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The task's projection onto its feasible set (free: it evaluates nothing)."""
        return self.task.project(x)

    def set_batch(self, batch: torch.Tensor | None) -> None:
        """Use ``batch`` (from ``task.sample_batch``) for the following queries."""
        self._batch = batch

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """Loss of each row of ``X`` ([B, d], or one point [d]) as a detached [B] tensor; B queries."""
        X = check_rows(X, self.task.dim)
        self._charge(X.shape[0])
        with torch.no_grad():
            values = self.task.loss(X.detach(), self._batch).detach()
        self._check_finite(values)
        return values

    def _charge(self, n: int) -> None:
        """Count ``n`` queries, refusing (before anything is evaluated) if they break the budget."""
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"evaluating {n} rows would use {self.queries + n} queries, over the budget of "
                f"{self.budget} ({self.remaining} left); raise the budget or stop earlier"
            )
        self.queries += n
        self.calls += 1

    def _check_finite(self, values: torch.Tensor) -> None:
        if not torch.isfinite(values).all():
            bad = int((~torch.isfinite(values)).sum())
            raise NonFiniteLoss(
                f"the task {type(self.task).__name__} returned NaN or inf for {bad} of {len(values)} queried "
                "rows; check the iterate (did the step size blow up?) and the task's inputs"
            )
