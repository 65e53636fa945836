"""Run one optimizer on one task instance and record its trajectory."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState, check_compatible
from l2l.oracle import Oracle
from l2l.tasks.base import Task


@dataclass
class Trajectory:
    """What one run did.

    Attributes:
        losses: full-objective loss f(x_k) for k = 0..K (starting with f(x0)).
        queries: cumulative oracle queries spent to reach x_k, same length as ``losses``.
        success_step: first k whose iterate solves the task, or None.
        success_query: ``queries[success_step]``, or None. Checking success is not charged: the next
            step's base query f(x_k) reveals it (add 1 for a separate check query).
        x: the final iterate.
        wall_s: wall-clock seconds of the run.
    """

    losses: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    success_step: int | None = None
    success_query: int | None = None
    x: torch.Tensor | None = None
    wall_s: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses) - 1

    @property
    def final_loss(self) -> float:
        return self.losses[-1]


def batch_seed(seed: int) -> int:
    """The minibatch stream's seed: a hash of the run seed, so it matches no run's optimizer seed."""
    return zlib.crc32(f"minibatches/{seed}".encode())


#: an observer of a run: ``callback(state, oracle, traj)`` (see :func:`run`)
Callback = Callable[[ZOState, Oracle, "Trajectory"], None]


def _record(traj: Trajectory, oracle: Oracle, x: torch.Tensor) -> None:
    """Append the full-objective loss at ``x``: the experimenter's measurement, not a query.

    Where the step's own single-row query (or the previous record) already computed f and success at
    exactly ``x`` the same way (:attr:`Task.exact_loss_and_success`), the value is reused, not
    recomputed: the same bits for one model pass less.
    """
    queries = oracle.queries
    known = oracle.recall(x)
    if known is None:
        with torch.no_grad():
            loss, ok = oracle.task.loss_and_success(x.unsqueeze(0))
        known = (loss[0], None if ok is None else ok[0])
        if oracle.task.exact_loss_and_success:
            oracle.remember(x, *known)
    append_record(traj, queries, *known)


def append_record(traj: Trajectory, queries: int, loss: torch.Tensor, ok: torch.Tensor | None) -> None:
    """Append f(x_k) = ``loss`` after ``queries`` queries, and the first success if ``ok`` is one.

    Args:
        traj: the trajectory.
        queries: the run's queries so far.
        loss: f at the iterate (0-d).
        ok: whether the iterate solves the task (0-d bool), or None where success is undefined.
    """
    traj.losses.append(float(loss))
    traj.queries.append(queries)
    if traj.success_step is None and ok is not None and bool(ok):
        traj.success_step = len(traj.losses) - 1
        traj.success_query = queries


def check_announced(optimizer: ZOOptimizer, announced: int, spent: int) -> None:
    """Refuse a step that spent other than the ``announced`` queries (budgets and tables rely on it).

    Args:
        optimizer: the optimizer that stepped.
        announced: what its ``next_step_queries`` said.
        spent: what the step used (or, before a lockstep evaluation, the rows it proposed).
    """
    if spent != announced:
        raise RuntimeError(
            f"{type(optimizer).__name__} announced {announced} queries for its step but spent "
            f"{spent}; fix its next_step_queries so budgets and tables stay honest"
        )


def observe_run(callback: Callback | None, state: ZOState, oracle: Oracle, traj: Trajectory) -> None:
    """Call ``callback`` and refuse one that queried the oracle: observing must not change the run."""
    if callback is None:
        return
    before = (oracle.queries, oracle.calls, oracle.white_box_calls)
    callback(state, oracle, traj)
    if (oracle.queries, oracle.calls, oracle.white_box_calls) != before:
        raise RuntimeError(
            f"the run's callback queried the oracle ({oracle.queries - before[0]} queries) after step "
            f"{traj.steps}; an observer must not spend the run's queries: probe oracle.task directly "
            "(e.g. l2l.diagnostics.true_gradient)"
        )


def run(
    optimizer: ZOOptimizer,
    task: Task,
    steps: int,
    budget: int | None = None,
    seed: int = 0,
    stop_at_success: bool = False,
    callback: Callback | None = None,
) -> Trajectory:
    """Optimize ``task`` with ``optimizer`` for ``steps`` steps through a counted oracle.

    With a ``budget``, the run stops cleanly before the first step that would exceed it and returns the
    trajectory so far. The same ``seed`` (and torch thread count) gives the same trajectory; on
    stochastic tasks it also fixes the minibatch sequence, so optimizers compared under one seed see
    the same minibatches.

    The ``callback`` observes the run: ``callback(state, oracle, traj)`` is called once at the start
    (``traj.steps == 0``, ``state.x`` is x0) and after every step k (``traj.steps == k``, with f(x_k)
    already recorded). ``oracle.batch`` is still the minibatch step k's queries shared, and
    ``oracle.queries`` what the run has spent. The state is live (optimizers update it in place): copy
    what you keep. A callback may read everything and compute anything *outside* the oracle, e.g.
    white-box gradients of ``oracle.task`` by autograd (analysis only, uncounted; see
    :mod:`l2l.diagnostics`); it must not change ``state``, ``traj`` or the oracle's batch, and it must
    not query the oracle: the run raises RuntimeError if its query count moved. Its return value is
    ignored, so the trajectory is the one the run gives without it.

    Args:
        optimizer: any object with the ``init``/``step``/``queries_per_step`` protocol.
        task: the problem instance.
        steps: the most optimizer steps to take.
        budget: the most oracle queries, or None.
        seed: seeds the optimizer's randomness and the minibatch stream.
        stop_at_success: stop at the first successful iterate.
        callback: an observer called after x0 and after every step, as above, or None.
    """
    if steps < 0:
        raise ValueError(f"steps={steps} must be >= 0")
    check_compatible(optimizer, task)
    start = time.perf_counter()
    oracle = Oracle(task, budget)
    batch_rng = torch.Generator().manual_seed(batch_seed(seed))
    state = optimizer.init(task.project(task.x0()), seed=seed)
    traj = Trajectory()
    _record(traj, oracle, state.x)
    observe_run(callback, state, oracle, traj)
    for _ in range(steps):
        if stop_at_success and traj.success_step is not None:
            break
        cost, spent = optimizer.next_step_queries(state, task.dim), oracle.queries
        if budget is not None and spent + cost > budget:
            break
        oracle.set_batch(task.sample_batch(batch_rng))
        state = optimizer.step(state, oracle)
        check_announced(optimizer, cost, oracle.queries - spent)
        _record(traj, oracle, state.x)
        observe_run(callback, state, oracle, traj)
    traj.x = state.x.detach().clone()
    traj.wall_s = time.perf_counter() - start
    return traj
