"""The query-counting black-box oracle: the only door to a task at evaluation time."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

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
        self._rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

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
        a black-box optimizer must never call it. Both come from ``task.differentiable_loss``, which
        is ``task.loss`` except on tasks whose black-box loss has no useful gradient (the order
        attack's -tau_S), where it is their white-box surrogate.
        """
        (value,), (grad,) = self._white_box(x, lambda X: (self.task.differentiable_loss(X, self._batch),))
        return value, grad

    def value_and_grads_with_likelihood(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """White-box f(x), its gradient, and the gradient of log p(t | x) (white-box NGD, papers/000).

        One model pass, so one query (and one ``white_box_calls``), as papers/000 counts white-box
        queries; the task must be score-based (see ``Task.loss_and_log_likelihood``).
        """
        outputs = functools.partial(self.task.loss_and_log_likelihood, batch=self._batch)
        (value, _), (grad, score) = self._white_box(x, outputs)
        return value, grad, score

    def query_with_likelihood(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and log p(t | row) of each row of ``X`` ([B, d] or [d]), both detached [B]; B queries.

        A score-based black box returns the class probabilities of each query, so both outputs of a row
        cost that one query (papers/000 eq. 16-17 read them from the same R+1 queries).
        """
        X = check_rows(X, self.task.dim)
        self._charge(X.shape[0])
        with torch.no_grad():
            values, log_likelihood = self.task.loss_and_log_likelihood(X.detach(), self._batch)
        self._check_finite(values)
        self._check_finite(log_likelihood)
        return values.detach(), log_likelihood.detach()

    def _white_box(
        self, x: torch.Tensor, outputs: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Charge one query and return each output of ``outputs(x[None])`` at x with its gradient in x."""
        x = check_rows(x, self.task.dim)[0].detach().requires_grad_(True)
        self._charge(1)
        self.white_box_calls += 1
        with torch.enable_grad():
            values = [out[0] for out in outputs(x.unsqueeze(0))]
            grads = [torch.autograd.grad(v, x, retain_graph=True)[0] for v in values]
        values = [v.detach() for v in values]
        for v in values:
            self._check_finite(v.unsqueeze(0))
        return tuple(values), tuple(grads)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The task's projection onto its feasible set (free: it evaluates nothing)."""
        return self.task.project(x)

    def set_batch(self, batch: torch.Tensor | None) -> None:
        """Use ``batch`` (from ``task.sample_batch``) for the following queries."""
        self._batch = batch

    @property
    def batch(self) -> torch.Tensor | None:
        """The minibatch the current queries share (None on deterministic tasks)."""
        return self._batch

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """Loss of each row of ``X`` ([B, d], or one point [d]) as a detached [B] tensor; B queries."""
        X = check_rows(X, self.task.dim)
        self._charge(X.shape[0])
        with torch.no_grad():
            if X.shape[0] == 1 and self._batch is None and self.task.exact_loss_and_success:
                values, ok = self.task.loss_and_success(X.detach())
                self.remember(X[0], values[0], None if ok is None else ok[0])
            else:
                values = self.task.loss(X.detach(), self._batch)
        values = values.detach()
        self._check_finite(values)
        return values

    #: single rows whose full-objective loss and success :meth:`recall` keeps (a step's few candidates)
    MEMORY = 4

    def remember(self, x: torch.Tensor, loss: torch.Tensor, success: torch.Tensor | None) -> None:
        """Keep the full-objective ``loss`` and ``success`` of the point ``x`` [d] for :meth:`recall`.

        Only values computed as ``task.loss_and_success(x.unsqueeze(0))`` computes them belong here (a
        single row, full objective), so that a recalled value is the one recomputing would give. It is
        the experimenter's bookkeeping, never shown to the optimizer, and costs no query.

        Args:
            x: the point.
            loss: its full-objective loss (0-d).
            success: whether it solves the task (0-d bool), or None where success is undefined.
        """
        self._rows = [*self._rows[-(self.MEMORY - 1) :], (x.detach().clone(), loss.detach(), success)]

    def recall(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The remembered (loss, success) of a point exactly equal to ``x``, or None (uncounted).

        A hit becomes the most recent memory, so an iterate that several rejected candidates follow
        is still remembered (least recently used rows are forgotten first).

        Args:
            x: the point [d].
        """
        for i in range(len(self._rows) - 1, -1, -1):
            row, loss, success = self._rows[i]
            if row.shape == x.shape and torch.equal(row, x):
                self._rows.append(self._rows.pop(i))
                return loss, success
        return None

    def _charge(self, n: int) -> None:
        """Count ``n`` queries, refusing (before anything is evaluated) if they break the budget."""
        self._check_budget(n)
        self.queries += n
        self.calls += 1

    def _check_budget(self, n: int) -> None:
        """Raise :class:`QueryBudgetExceeded` if ``n`` more queries would break the budget; counts nothing."""
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"evaluating {n} rows would use {self.queries + n} queries, over the budget of "
                f"{self.budget} ({self.remaining} left); raise the budget or stop earlier"
            )

    def _check_finite(self, values: torch.Tensor) -> None:
        if not torch.isfinite(values).all():
            bad = int((~torch.isfinite(values)).sum())
            raise NonFiniteLoss(
                f"the task {type(self.task).__name__} returned NaN or inf for {bad} of {len(values)} queried "
                "rows; check the iterate (did the step size blow up?) and the task's inputs"
            )


class StackedOracle:
    """One counted :class:`Oracle` per instance, whose rows are evaluated together in one stacked call.

    Counts, budgets, :class:`QueryBudgetExceeded` and the non-finite check stay exactly per instance:
    ``oracles[i]`` is instance i's own oracle (its ``queries``, ``calls``, ``budget``, minibatch and
    projection), and a call charges each member for its own rows. The evaluation itself is one
    ``Task.loss_many`` over all members (one model forward for attacks on a shared model), so the
    instances must share one :meth:`~l2l.tasks.base.Task.stack_key`.

    A stacked value equals the one-instance oracle's up to float rounding only: a model forward over a
    different batch composition may round differently in the last bits.

    Args:
        tasks: the instances, all with one ``stack_key()``.
        budgets: each instance's query budget (None: no limit), or one budget (or None) for all.
    """

    def __init__(self, tasks: Sequence[Task], budgets: int | Sequence[int | None] | None = None):
        if not tasks:
            raise ValueError("StackedOracle needs at least one task; got an empty list")
        keys = [task.stack_key() for task in tasks]
        if any(key != keys[0] for key in keys):
            odd = next(i for i, key in enumerate(keys) if key != keys[0])
            raise ValueError(
                f"task {odd} ({type(tasks[odd]).__name__}) has stack key {keys[odd]!r}, task 0 has "
                f"{keys[0]!r}: stacked evaluation needs instances that share one (e.g. one model object); "
                "group the tasks by stack_key() and stack each group"
            )
        if budgets is None or isinstance(budgets, int):
            budgets = [budgets] * len(tasks)
        if len(budgets) != len(tasks):
            raise ValueError(
                f"got {len(budgets)} budgets for {len(tasks)} tasks; pass one per task (or one int)"
            )
        self.tasks = list(tasks)
        self.oracles = [Oracle(task, budget) for task, budget in zip(tasks, budgets, strict=True)]

    def __len__(self) -> int:
        return len(self.oracles)

    def __call__(
        self, blocks: Sequence[torch.Tensor], members: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Losses of each member's rows (detached, [B_i] each) from one stacked evaluation; B_i queries each.

        Every member's budget is checked before anything is counted or evaluated: one member over its
        budget raises :class:`QueryBudgetExceeded` and leaves every count as it was.

        Args:
            blocks: one [B_i, d] block (or one [d] point) per member.
            members: the instance indices the blocks belong to, distinct (default: all, in order).
        """
        oracles, blocks = self._charged(blocks, members)
        tasks = [oracle.task for oracle in oracles]
        with torch.no_grad():
            if self._single_exact_rows(oracles, blocks):
                # one candidate per member (the search attacks): keep each row's full-objective loss and
                # success, as Oracle does for a single row, so measure() needs no second forward
                pairs = type(tasks[0]).loss_and_success_many(tasks, blocks)
                for oracle, X, (loss, ok) in zip(oracles, blocks, pairs, strict=True):
                    oracle.remember(X[0], loss[0], None if ok is None else ok[0])
                values = [loss for loss, _ in pairs]
            else:
                values = type(tasks[0]).loss_many(tasks, blocks, [o.batch for o in oracles])
        values = [v.detach() for v in values]
        self._check_finite(oracles, values)
        return values

    def with_likelihood(
        self, blocks: Sequence[torch.Tensor], members: Sequence[int] | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`Oracle.query_with_likelihood` of each member's rows from one stacked evaluation.

        The losses and log p(t | row) of each member's rows (detached, [B_i] each); B_i queries each,
        checked against every budget first, as :meth:`__call__` does.

        Args:
            blocks: one [B_i, d] block (or one [d] point) per member.
            members: the instance indices the blocks belong to, distinct (default: all, in order).
        """
        oracles, blocks = self._charged(blocks, members)
        tasks = [oracle.task for oracle in oracles]
        with torch.no_grad():
            pairs = type(tasks[0]).loss_and_log_likelihood_many(tasks, blocks, [o.batch for o in oracles])
        pairs = [(loss.detach(), log_p.detach()) for loss, log_p in pairs]
        self._check_finite(oracles, [loss for loss, _ in pairs])
        self._check_finite(oracles, [log_p for _, log_p in pairs])
        return pairs

    def _charged(
        self, blocks: Sequence[torch.Tensor], members: Sequence[int] | None
    ) -> tuple[list[Oracle], list[torch.Tensor]]:
        """The members' oracles and their checked, detached rows, every member charged for its rows after
        every budget was checked (one refusal counts nothing)."""
        oracles = self._members(blocks, members)
        blocks = [check_rows(X, oracle.dim).detach() for oracle, X in zip(oracles, blocks, strict=True)]
        for i, (oracle, X) in enumerate(zip(oracles, blocks, strict=True)):
            try:
                oracle._check_budget(X.shape[0])
            except QueryBudgetExceeded as err:
                raise QueryBudgetExceeded(f"member {i} (of {len(oracles)}): {err}") from None
        for oracle, X in zip(oracles, blocks, strict=True):
            oracle._charge(X.shape[0])
        return oracles, blocks

    @staticmethod
    def _check_finite(oracles: Sequence[Oracle], values: Sequence[torch.Tensor]) -> None:
        """Raise :class:`NonFiniteLoss` naming the first member whose values hold NaN or inf (one check
        over all of them first, the per-member search only on failure)."""
        if torch.isfinite(torch.cat(list(values))).all():
            return
        for i, (oracle, v) in enumerate(zip(oracles, values, strict=True)):
            try:
                oracle._check_finite(v)
            except NonFiniteLoss as err:
                raise NonFiniteLoss(f"member {i} (of {len(oracles)}): {err}") from None

    def measure(
        self, points: Sequence[torch.Tensor], members: Sequence[int] | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Full-objective loss and success of one point [d] per member, stacked and UNCOUNTED.

        The experimenter's measurement (what ``l2l.run`` records with ``task.loss_and_success``), never
        shown to an optimizer, so no query is charged. A point that a member's oracle remembers (its last
        single-row query, or its previous measurement) is not evaluated again, as in ``l2l.run``.

        Args:
            points: one point [d] per member.
            members: the instance indices, distinct (default: all, in order).
        """
        oracles = self._members(points, members)
        rows = [check_rows(x, oracle.dim, "point") for oracle, x in zip(oracles, points, strict=True)]
        known = [oracle.recall(X[0]) for oracle, X in zip(oracles, rows, strict=True)]
        missing = [i for i, k in enumerate(known) if k is None]
        if missing:
            tasks = [oracles[i].task for i in missing]
            with torch.no_grad():
                pairs = type(tasks[0]).loss_and_success_many(tasks, [rows[i].detach() for i in missing])
            for i, (loss, ok) in zip(missing, pairs, strict=True):
                known[i] = (loss[0].detach(), None if ok is None else ok[0])
                if oracles[i].task.exact_loss_and_success:
                    oracles[i].remember(rows[i][0], *known[i])
        return known  # type: ignore[return-value]

    @staticmethod
    def _single_exact_rows(oracles: Sequence[Oracle], blocks: Sequence[torch.Tensor]) -> bool:
        """Whether every block is one row of a deterministic task whose loss and success come from one
        pass (:attr:`~l2l.tasks.base.Task.exact_loss_and_success`), so each row's values can be kept."""
        return all(
            X.shape[0] == 1 and oracle.batch is None and oracle.task.exact_loss_and_success
            for oracle, X in zip(oracles, blocks, strict=True)
        )

    def _members(self, blocks: Sequence[torch.Tensor], members: Sequence[int] | None) -> list[Oracle]:
        """The oracles of ``members`` (checked: distinct, in range, one per block)."""
        members = range(len(self.oracles)) if members is None else members
        if len(set(members)) != len(members) or not all(0 <= m < len(self.oracles) for m in members):
            raise ValueError(f"members={list(members)} must be distinct indices in [0, {len(self.oracles)})")
        if len(blocks) != len(members) or not blocks:
            raise ValueError(
                f"got {len(blocks)} blocks for {len(members)} members; pass one per member (>= 1)"
            )
        return [self.oracles[m] for m in members]
