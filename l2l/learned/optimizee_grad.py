"""Where meta-training gets the optimizee's gradient from: torch autograd, or eq. 5 of papers/002.

Meta-training backpropagates the meta-loss through the optimizee's loss f. Two sources of df/dx:

- ``autograd``: the task's torch loss is differentiable (the training-time gradient assumption of
  papers/002 sec. 3.3 and Chen et al. 2017).
- ``zo-coordinate``: for a task with no gradient at all, the coordinatewise central-difference
  estimator (eq. 5) computed from 2d evaluations of f, wrapped in a custom autograd function.
"""

from __future__ import annotations

import torch

from l2l.estimators import Objective, coordinate_difference
from l2l.tasks.base import Task

OPTIMIZEE_GRADS = ("autograd", "zo-coordinate")


class CoordinateGradLoss(torch.autograd.Function):
    """Forward: f(X) row by row. Backward: the eq.-5 gradient at the *first* row, for every row.

    Rows of one call must lie within the smoothing radius of the first one, as the q + 1 rows of one
    ZO estimate do (x and x + mu u_i): for them the first row's gradient is accurate to first order,
    and one eq.-5 estimate (2d evaluations) serves the whole call instead of 2d per row. For a single
    row it is exactly eq. 5.
    """

    @staticmethod
    def forward(ctx, X: torch.Tensor, f: Objective, mu: float) -> torch.Tensor:  # type: ignore[override]
        ctx.f, ctx.mu = f, mu
        ctx.save_for_backward(X)
        with torch.no_grad():
            return f(X.detach())

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (X,) = ctx.saved_tensors
        with torch.no_grad():
            grad = coordinate_difference(ctx.f, X[0].detach(), ctx.mu).grad
        return grad_out.unsqueeze(1) * grad.unsqueeze(0), None, None


def optimizee_objective(
    task: Task, batch: torch.Tensor | None, mode: str = "autograd", coord_mu: float = 1e-4
) -> Objective:
    """``X [B, d] -> f(X) [B]`` on ``batch`` (None: the full objective), differentiable by ``mode``.

    Args:
        task: the optimizee.
        batch: the minibatch (from ``task.sample_batch``), or None.
        mode: ``autograd`` or ``zo-coordinate`` (see the module docstring).
        coord_mu: smoothing radius of the eq.-5 estimator (``zo-coordinate`` only).
    """
    if mode == "autograd":
        # the task's differentiable objective: its loss, or its white-box surrogate where the black-box
        # loss is piecewise constant (Task.differentiable_loss)
        return lambda X: task.differentiable_loss(X, batch)
    if mode == "zo-coordinate":

        def loss(X: torch.Tensor) -> torch.Tensor:
            return task.loss(X, batch)

        return lambda X: CoordinateGradLoss.apply(X, loss, coord_mu)
    raise ValueError(f"optimizee gradient {mode!r} must be one of {', '.join(OPTIMIZEE_GRADS)}")
