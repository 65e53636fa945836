"""The oracle counts every row, enforces its budget before evaluating, and blocks gradients."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.oracle import NonFiniteLoss, Oracle, QueryBudgetExceeded
from l2l.tasks.base import Task


class CountingTask(Task):
    """Sum of squares that records how many rows the task itself evaluated."""

    def __init__(self, dim: int = 3, value: float | None = None):
        self._dim, self.rows_evaluated, self.value = dim, 0, value

    @property
    def dim(self) -> int:
        return self._dim

    def x0(self) -> torch.Tensor:
        return torch.ones(self._dim)

    def loss(self, X, batch=None):
        self.rows_evaluated += X.shape[0]
        out = X.pow(2).sum(dim=1)
        return out if self.value is None else torch.full_like(out, self.value)


def test_every_row_is_one_query():
    task = CountingTask()
    oracle = Oracle(task)
    oracle(torch.zeros(5, 3))
    oracle(torch.zeros(3))
    oracle(torch.zeros(2, 3))
    assert oracle.queries == 8 == task.rows_evaluated
    assert oracle.calls == 3


def test_budget_raises_before_any_row_is_evaluated():
    task = CountingTask()
    oracle = Oracle(task, budget=10)
    oracle(torch.zeros(7, 3))
    with pytest.raises(QueryBudgetExceeded, match="budget of 10"):
        oracle(torch.zeros(4, 3))
    assert oracle.queries == 7 == task.rows_evaluated
    oracle(torch.zeros(3, 3))  # exactly reaching the budget is allowed
    assert oracle.remaining == 0


def test_no_gradient_leaks():
    x = torch.ones(2, 3, requires_grad=True)
    out = Oracle(CountingTask())(x)
    assert not out.requires_grad and out.grad_fn is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_is_an_error(bad):
    with pytest.raises(NonFiniteLoss, match="NaN or inf for 2 of 2"):
        Oracle(CountingTask(value=bad))(torch.zeros(2, 3))


def test_wrong_shape_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"expected \[B, 3\]"):
        Oracle(CountingTask())(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="budget=-1"):
        Oracle(CountingTask(), budget=-1)


def test_run_stops_before_the_step_that_would_exceed_the_budget(quadratic_task):
    opt = l2l.make_optimizer("zo_sgd", q=4, delta=1.0, mu=1e-3)
    traj = l2l.run(opt, quadratic_task, steps=100, budget=23, seed=0)
    assert traj.queries == [0, 5, 10, 15, 20]  # a 5th step would need 25 > 23
    assert traj.steps == 4 and len(traj.losses) == 5


def test_run_counts_q_plus_one_per_step(quadratic_task):
    traj = l2l.run(l2l.make_optimizer("zo_adam", q=7), quadratic_task, steps=6, seed=1)
    assert traj.queries == [8 * k for k in range(7)]


def test_white_box_reference_access_is_counted_and_exact(quadratic_task):
    oracle = Oracle(quadratic_task, budget=1)
    x = torch.linspace(-1, 1, quadratic_task.dim)
    value, grad = oracle.value_and_grad(x)
    assert torch.allclose(grad, quadratic_task.gradient(x), atol=1e-6)
    assert float(value) == pytest.approx(float(quadratic_task.loss(x.unsqueeze(0))[0]))
    assert (oracle.queries, oracle.white_box_calls) == (1, 1)
    with pytest.raises(QueryBudgetExceeded):
        oracle.value_and_grad(x)


def test_run_refuses_an_optimizer_that_misreports_its_step_cost(quadratic_task):
    class Liar(l2l.optimizers.GradientEstimateOptimizer):
        def queries_per_step(self, dim):
            return 3

        def update(self, state, est, lr):
            return state.x

    with pytest.raises(RuntimeError, match="announced 3 queries for its step but spent 5"):
        l2l.run(Liar(q=4), quadratic_task, steps=2)
