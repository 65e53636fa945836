"""Analyses of a run that look past the black box, built on ``l2l.run``'s ``callback``.

They measure; they never change what they measure: the trajectory is the one ``l2l.run`` gives
without them, and no white-box probe here is charged to the oracle (a probe is the experimenter's
measurement, as the recorded full-objective losses are, not a query of the method under study).

- :func:`true_gradient`: the autograd gradient of a task's loss at a point, on a minibatch.
- :func:`tapped_estimates`: records the gradient estimate each step of an optimizer forms.
- :func:`cosine_trace`: cos(estimate_k, true gradient_k) after every step of one run (papers/003
  Fig. 6); ``eval.cosine`` averages it over instances and methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.oracle import Oracle
from l2l.run import Trajectory, run
from l2l.tasks.base import Task


def true_gradient(task: Task, x: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
    """The autograd gradient of ``task.differentiable_loss`` on ``batch`` at ``x`` (analysis only, uncounted).

    Args:
        task: the problem instance (inside a run callback: ``oracle.task``).
        x: the point [d].
        batch: the minibatch (``oracle.batch``), or None for the full objective.
    """
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = task.differentiable_loss(x.unsqueeze(0), batch)[0]
        return torch.autograd.grad(value, x)[0]


@contextlib.contextmanager
def tapped_estimates(optimizer: object) -> Iterator[list[torch.Tensor]]:
    """Record the gradient estimate of every step the optimizer takes inside the block.

    Wraps the instance's ``advance`` (ZO-LSTM: returns an ``Advance`` with ``.est``) or ``estimate``
    (estimate-then-update optimizers and ZO-RL: returns an ``Estimate``); the instance attribute
    shadows the method and is removed afterwards, so the optimizer computes exactly what it would.

    Args:
        optimizer: an optimizer exposing ``advance`` or ``estimate``.
    """
    name = "advance" if hasattr(optimizer, "advance") else "estimate"
    if not hasattr(optimizer, name):
        raise TypeError(f"{type(optimizer).__name__} exposes no estimate() or advance() to measure")
    original: Callable = getattr(optimizer, name)
    seen: list[torch.Tensor] = []

    def record(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append((out.est if name == "advance" else out).grad.detach().clone())
        return out

    setattr(optimizer, name, record)
    try:
        yield seen
    finally:
        delattr(optimizer, name)


class CosineProbe:
    """A run callback: cos(estimate of step k, true gradient at x_{k-1} on step k's minibatch).

    The true gradient is that of the loss the step's queries saw (``oracle.batch``) at the iterate the
    step started from, which the probe keeps from the previous call.

    Args:
        seen: the estimates :func:`tapped_estimates` records for the optimizer being run.
    """

    def __init__(self, seen: list[torch.Tensor]):
        self.seen = seen
        self.queries: list[int] = []
        self.cosines: list[float] = []
        self._x: torch.Tensor | None = None
        self._estimates = 0

    def __call__(self, state: ZOState, oracle: Oracle, traj: Trajectory) -> None:
        if traj.steps > 0:
            if len(self.seen) == self._estimates:
                raise RuntimeError(f"step {traj.steps} formed no gradient estimate to compare")
            assert self._x is not None  # set by the call at x0
            grad = true_gradient(oracle.task, self._x, oracle.batch)
            cosine = torch.nn.functional.cosine_similarity(self.seen[-1], grad, dim=0, eps=1e-30)
            self.cosines.append(float(cosine))
            self.queries.append(oracle.queries)
        self._x, self._estimates = state.x.detach().clone(), len(self.seen)


def cosine_trace(
    optimizer: ZOOptimizer, task: Task, steps: int, seed: int = 0, budget: int | None = None
) -> tuple[list[int], list[float]]:
    """(cumulative queries, cosine) after each step of one ``l2l.run`` (see :class:`CosineProbe`).

    Args:
        optimizer: an optimizer exposing ``advance`` or ``estimate`` (see :func:`tapped_estimates`).
        task: the problem instance.
        steps: the most steps.
        seed: the run's seed.
        budget: the most queries, or None.
    """
    with tapped_estimates(optimizer) as seen:
        probe = CosineProbe(seen)
        run(optimizer, task, steps, budget=budget, seed=seed, callback=probe)
    return probe.queries, probe.cosines
