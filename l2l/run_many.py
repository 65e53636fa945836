"""Run one optimizer on B instances in lockstep, with one stacked oracle call per step (``l2l.run_many``).

What it buys: B attacks on one shared model cost one model forward per step instead of B, which a GPU
turns into a large speed-up and a 2-core CPU into a small one (``python -m eval.bench`` measures it).
What it keeps: each instance's own state, rng, minibatch stream, query count, budget stop, success stop
and :class:`~l2l.run.Trajectory`, exactly as ``l2l.run`` gives them, except for float rounding (below).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState, check_compatible
from l2l.oracle import Oracle, StackedOracle
from l2l.run import Callback, Trajectory, append_record, batch_seed, check_announced, observe_run, run
from l2l.tasks.base import Task, check_rows


@dataclass
class _Lane:
    """One instance's run inside :func:`run_many`."""

    task: Task
    oracle: Oracle
    state: ZOState
    batch_rng: torch.Generator
    traj: Trajectory
    callback: Callback | None = None
    done: bool = False
    cost: int = 0


def runs_in_lockstep(optimizer: ZOOptimizer) -> bool:
    """Whether :func:`run_many` steps ``optimizer``'s runs together (its ``lockstep`` attribute).

    False (any optimizer without a ``propose``/``conclude`` split, e.g. the ZO-LSTM) means
    :func:`run_many` falls back to ``l2l.run`` per instance.

    Args:
        optimizer: any object with the ZO optimizer protocol.
    """
    return bool(getattr(optimizer, "lockstep", False))


def run_many(
    optimizer: ZOOptimizer,
    tasks: Sequence[Task],
    steps: int,
    budget: int | Sequence[int | None] | None = None,
    seeds: Sequence[int] | None = None,
    stop_at_success: bool = False,
    callbacks: Sequence[Callback | None] | None = None,
) -> list[Trajectory]:
    """``[l2l.run(optimizer, tasks[i], steps, budget_i, seeds[i], stop_at_success, callbacks[i])]``, batched.

    Lockstep optimizers (:func:`runs_in_lockstep`: zo_sgd, zo_signsgd, zo_adam, nes, spsa, the search
    attacks square, signhunter, parsimonious, rand and the learned signhunter_prior, and the population
    searches beta and pso) step all instances together: each state proposes its rows with its own rng
    exactly as its serial step draws them, one :class:`~l2l.oracle.StackedOracle` call evaluates every
    instance's rows (one model forward for attacks on a shared model), and each state finishes its step
    from its own values. f(x_k) of every instance is recorded in one stacked, uncounted evaluation, which
    skips the instances whose iterate was the single row they just queried (a search attack's step is
    then one forward in all). An instance that hits its budget or (with ``stop_at_success``) succeeds
    drops out of the stack and spends nothing more; the others go on. Each instance's ``wall_s`` is its
    share of the wall time of the steps it took part in (the shares sum to the call's).

    Every other optimizer falls back to ``l2l.run`` on each instance in turn (the same results, no
    speed-up); that rule, not a hidden switch, is what :func:`runs_in_lockstep` reports.

    Results: the lockstep trajectories equal the serial ones to float tolerance, not bit for bit, because
    a model forward over a different batch composition can round differently in the last bits. The tests
    check identical query counts and success steps, and losses within 1e-5 relative, for zo_sgd and
    zo_adam on mnist_attack and binary_classification (whose stacked loss is a batched matmul), and for
    every search attack on mnist_attack_linf (1e-5 relative or absolute: margins near 0); on the
    quadratic family (whose loss_many loops) they are bit-identical. A sign step (zo_signsgd, nes, spsa)
    can turn such a last-bit difference into a different step where an estimate coordinate is near 0.

    Stochastic tasks are supported: each instance draws its minibatches from its own stream, seeded as
    ``l2l.run`` seeds it (:func:`l2l.run.batch_seed`). Each instance's callback observes its run exactly
    as ``l2l.run``'s does: after x0 and after every step that instance took, never spending a query.

    Args:
        optimizer: the optimizer, shared by all instances (its state lives in each run's ZOState).
        tasks: the instances; with a lockstep optimizer they must share one ``stack_key()`` (e.g. one
            family's attacks on one model).
        steps: the most optimizer steps of each run.
        budget: the most oracle queries of each run: one value (or None) for all, or one per task.
        seeds: one seed per task, used as ``l2l.run``'s ``seed`` (default: 0 for every task).
        stop_at_success: stop each run at its first successful iterate.
        callbacks: one observer per task (see ``l2l.run``'s ``callback``; None for none), or None.

    Raises:
        ValueError: no tasks, ``steps`` < 0, ``seeds``, ``budget`` or ``callbacks`` of another length than
            ``tasks``, an incompatible task, or (lockstep) tasks with different stack keys.
        RuntimeError: a callback queried the oracle.
    """
    tasks = list(tasks)
    budgets, seeds = _check_inputs(optimizer, tasks, steps, budget, seeds)
    callbacks = [None] * len(tasks) if callbacks is None else list(callbacks)
    if len(callbacks) != len(tasks):
        raise ValueError(
            f"callbacks has {len(callbacks)} entries for {len(tasks)} tasks; pass one (or None) per task"
        )
    if not runs_in_lockstep(optimizer):
        return [
            run(optimizer, task, steps, budget=b, seed=s, stop_at_success=stop_at_success, callback=c)
            for task, b, s, c in zip(tasks, budgets, seeds, callbacks, strict=True)
        ]
    return _lockstep(optimizer, tasks, steps, budgets, seeds, stop_at_success, callbacks)


def _check_inputs(
    optimizer: ZOOptimizer,
    tasks: list[Task],
    steps: int,
    budget: int | Sequence[int | None] | None,
    seeds: Sequence[int] | None,
) -> tuple[list[int | None], list[int]]:
    """Validate :func:`run_many`'s arguments; returns one budget and one seed per task."""
    if not tasks:
        raise ValueError("run_many needs at least one task; got an empty list")
    if steps < 0:
        raise ValueError(f"steps={steps} must be >= 0")
    seeds = [0] * len(tasks) if seeds is None else list(seeds)
    if len(seeds) != len(tasks):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(tasks)} tasks; pass one seed per task")
    budgets = list(budget) if isinstance(budget, Sequence) else [budget] * len(tasks)
    if len(budgets) != len(tasks):
        raise ValueError(
            f"budget has {len(budgets)} entries for {len(tasks)} tasks; pass one per task, or one int for all"
        )
    for task in tasks:
        check_compatible(optimizer, task)
    return budgets, seeds


def _lockstep(
    optimizer: ZOOptimizer,
    tasks: list[Task],
    steps: int,
    budgets: list[int | None],
    seeds: list[int],
    stop_at_success: bool,
    callbacks: list[Callback | None],
) -> list[Trajectory]:
    """The lockstep loop of :func:`run_many`: propose, one stacked evaluation, conclude, record, observe."""
    clock = time.perf_counter()
    stacked = StackedOracle(tasks, budgets)
    lanes = [
        _Lane(
            task=task,
            oracle=oracle,
            state=optimizer.init(task.project(task.x0()), seed=seed),
            batch_rng=torch.Generator().manual_seed(batch_seed(seed)),
            traj=Trajectory(),
            callback=callback,
        )
        for task, oracle, seed, callback in zip(tasks, stacked.oracles, seeds, callbacks, strict=True)
    ]
    clock = _record(stacked, lanes, list(range(len(lanes))), clock)
    for lane in lanes:
        observe_run(lane.callback, lane.state, lane.oracle, lane.traj)
    for _ in range(steps):
        moving = [i for i, lane in enumerate(lanes) if _may_step(optimizer, lane, stop_at_success)]
        if not moving:
            break
        _step(optimizer, stacked, lanes, moving)
        clock = _record(stacked, lanes, moving, clock)
        for i in moving:
            observe_run(lanes[i].callback, lanes[i].state, lanes[i].oracle, lanes[i].traj)
    for lane in lanes:
        lane.traj.x = lane.state.x.detach().clone()
    return [lane.traj for lane in lanes]


def _may_step(optimizer: ZOOptimizer, lane: _Lane, stop_at_success: bool) -> bool:
    """``l2l.run``'s stop rules for one lane: once it stops (success, budget) it stays stopped."""
    if not lane.done and stop_at_success and lane.traj.success_step is not None:
        lane.done = True
    if not lane.done:
        lane.cost = optimizer.next_step_queries(lane.state, lane.task.dim)
        budget = lane.oracle.budget
        lane.done = budget is not None and lane.oracle.queries + lane.cost > budget
    return not lane.done


def _step(optimizer: ZOOptimizer, stacked: StackedOracle, lanes: list[_Lane], moving: list[int]) -> None:
    """One step of every moving lane, with their rows evaluated in one stacked call."""
    blocks, plans, spent = [], [], []
    for i in moving:
        lane = lanes[i]
        lane.oracle.set_batch(lane.task.sample_batch(lane.batch_rng))
        spent.append(lane.oracle.queries)  # before propose: a query spent there fails the check below
        rows, plan = optimizer.propose(lane.state, lane.oracle)
        rows = check_rows(rows, lane.task.dim, "proposed rows")
        check_announced(optimizer, lane.cost, rows.shape[0])  # refused before anything is evaluated
        blocks.append(rows)
        plans.append(plan)
    values = _evaluate(optimizer, stacked, blocks, moving)
    for i, value, plan, before in zip(moving, values, plans, spent, strict=True):
        lane = lanes[i]
        lane.state = optimizer.conclude(lane.state, value, plan, lane.oracle)
        check_announced(optimizer, lane.cost, lane.oracle.queries - before)


def _evaluate(
    optimizer: ZOOptimizer, stacked: StackedOracle, blocks: list[torch.Tensor], moving: list[int]
) -> list:
    """Each moving lane's values of its rows, from one stacked call over the lanes that query at all
    (a step may query nothing, e.g. SimBA's once every direction was tried)."""
    likelihood = optimizer.lockstep_values == "loss_and_likelihood"
    asking = [k for k, rows in enumerate(blocks) if rows.shape[0]]
    empty = (blocks[0][:0, 0],) * 2 if likelihood else blocks[0][:0, 0]
    values: list = [empty] * len(blocks)
    if asking:
        call = stacked.with_likelihood if likelihood else stacked
        answers = call([blocks[k] for k in asking], [moving[k] for k in asking])
        for k, answer in zip(asking, answers, strict=True):
            values[k] = answer
    return values


def _record(stacked: StackedOracle, lanes: list[_Lane], members: list[int], clock: float) -> float:
    """Record f(x_k) of ``members`` in one stacked uncounted evaluation; share the time since ``clock``.

    Returns the clock reading that the next share starts from.
    """
    measured = stacked.measure([lanes[i].state.x for i in members], members)
    for i, (loss, ok) in zip(members, measured, strict=True):
        append_record(lanes[i].traj, lanes[i].oracle.queries, loss, ok)
    now = time.perf_counter()
    for i in members:
        lanes[i].traj.wall_s += (now - clock) / len(members)
    return now


def agree(batched: Trajectory, serial: Trajectory, rtol: float = 1e-5) -> bool:
    """Whether a :func:`run_many` trajectory matches ``l2l.run``'s to the tolerance it promises.

    The same steps, query counts and success step, and every recorded loss within ``rtol`` relative.

    Args:
        batched: the trajectory from :func:`run_many`.
        serial: the same instance's trajectory from ``l2l.run`` with the same seed and budget.
        rtol: the relative tolerance on the losses.
    """
    same_counts = batched.queries == serial.queries and batched.success_step == serial.success_step
    losses = torch.tensor(batched.losses, dtype=torch.float64)
    reference = torch.tensor(serial.losses, dtype=torch.float64)
    return same_counts and losses.shape == reference.shape and torch.allclose(losses, reference, rtol, 0.0)
