"""Run several optimizers on the same instances with the same seeds, and aggregate what they did.

Fairness rules (the point of a head-to-head):

- every optimizer sees the same task instances, each from its own ``task.x0()``;
- run (instance ``i``, trial ``t``) uses the seed :func:`run_seed` ``(seed, i, t)`` for every optimizer,
  so stochastic tasks draw the same minibatches and Gaussian-query optimizers the same random stream;
- queries are counted by the oracle inside ``l2l.run`` (every evaluated row, base point included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

import l2l
from eval import distributed
from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.oracle import Oracle
from l2l.run import Trajectory
from l2l.tasks.base import Task

#: seeds of one instance's trials are consecutive and instances are this far apart, so a run keeps its
#: seed when --trials or --instances grows (runs of a small comparison reappear in a bigger one)
SEED_STRIDE = 1000


def run_seed(seed: int, instance: int, trial: int) -> int:
    """The seed of trial ``trial`` on instance ``instance``: ``seed + 1000 * instance + trial``."""
    if not 0 <= trial < SEED_STRIDE:
        raise ValueError(f"trial={trial} must be in [0, {SEED_STRIDE}) so that run seeds stay distinct")
    return seed + SEED_STRIDE * instance + trial


class RunObserver(Protocol):
    """An ``l2l.run`` callback that also reports what it saw, once the run is over."""

    def __call__(self, state: ZOState, oracle: Oracle, traj: Trajectory) -> None: ...

    def result(self) -> Any:
        """What to keep with the run's record (picklable: it is gathered across ranks)."""
        ...


@dataclass
class RunRecord:
    """One (optimizer, instance, trial) run.

    Attributes:
        optimizer: the optimizer's label.
        instance: index of the instance within the split.
        trial: trial number on that instance.
        seed: the seed ``l2l.run`` got.
        trajectory: what the run did.
        has_success: whether the task defines success at all (``task.success`` is not None).
        observed: what the run's observer reported (``RunObserver.result``), or None without one.
    """

    optimizer: str
    instance: int
    trial: int
    seed: int
    trajectory: Trajectory
    has_success: bool
    observed: Any = None

    def row(self) -> dict:
        """The run as one flat, JSON- and CSV-friendly row."""
        traj = self.trajectory
        return {
            "optimizer": self.optimizer,
            "instance": self.instance,
            "trial": self.trial,
            "seed": self.seed,
            "final_loss": traj.final_loss,
            "steps": traj.steps,
            "queries": traj.queries[-1],
            "success_step": traj.success_step,
            "success_query": traj.success_query,
            "wall_s": traj.wall_s,
        }


def defines_success(task: Task) -> bool:
    """Whether ``task`` has a notion of success (asked once at its start point; no oracle query)."""
    return task.success(task.x0().unsqueeze(0)) is not None


def run_grid(
    optimizers: Sequence[tuple[str, ZOOptimizer]],
    tasks: Sequence[Task],
    trials: int,
    steps: int,
    budget: int | None = None,
    seed: int = 0,
    stop_at_success: bool = False,
    progress: bool = True,
    observe: Callable[[str, int, int], RunObserver] | None = None,
    vectorize: int = 1,
) -> list[RunRecord]:
    """Run every optimizer on every task for ``trials`` seeds each (see :func:`run_seed`).

    Args:
        optimizers: (label, optimizer) pairs; labels must be unique.
        tasks: the instances, indexed by their position.
        trials: runs per (optimizer, instance), each with its own seed.
        steps: the most steps per run.
        budget: the most oracle queries per run (``l2l.run`` stops before exceeding it), or None.
        seed: base seed of the comparison.
        stop_at_success: end a run at its first successful iterate.
        progress: show a tqdm bar over the runs (rank 0's only, under torch.distributed).
        observe: ``observe(label, instance, trial)`` gives the observer of that run (see
            :func:`l2l.run`; None: none), e.g. to keep the best iterate's metrics; observers never
            query. Whatever the observer's ``result()`` returns after the run is kept as the record's
            ``observed``, so it travels with the records across ranks.
        vectorize: B > 1 runs the instances of one (optimizer, trial) B at a time in lockstep through
            ``l2l.run_many`` (:func:`grid_units`), for optimizers that support it (``l2l.runs_in_lockstep``;
            the others run one at a time). Results then match the serial ones to float tolerance, not
            bit for bit. Observers see each run of a group as they see a single run.

    Under an initialised torch.distributed process group every rank must call it alike: the units of
    :func:`grid_units` (single runs, (optimizer, instance, trial) in this nesting order, or groups with
    ``vectorize``) are sharded round-robin over the ranks and every rank returns all records, in the
    serial (optimizer, instance, trial) order (:func:`eval.distributed.sharded_map`). They equal a
    serial run with the same ``vectorize`` bit for bit, except the measured ``wall_s``.
    """
    if trials < 1:
        raise ValueError(f"trials={trials} must be >= 1")
    success_defined = [defines_success(task) for task in tasks]
    units = grid_units(optimizers, len(tasks), trials, vectorize)
    world = distributed.world_size()
    mine = sum(len(unit[1]) for unit in distributed.shard(units, distributed.rank(), world))
    runs = len(optimizers) * len(tasks) * trials
    desc = "compare" if world == 1 else f"compare (rank 0's {mine} of {runs} runs)"
    limits = {"steps": steps, "budget": budget, "stop_at_success": stop_at_success}
    with tqdm(total=mine, desc=desc, unit="run", disable=not (progress and distributed.is_main())) as bar:

        def one(unit: tuple[int, tuple[int, ...], int]) -> list[RunRecord]:
            (label, optimizer), instances, t = optimizers[unit[0]], unit[1], unit[2]
            bar.set_postfix_str(label, refresh=False)
            seeds = [run_seed(seed, i, t) for i in instances]
            observers = [None if observe is None else observe(label, i, t) for i in instances]
            if len(instances) > 1:
                group = [tasks[i] for i in instances]
                trajs = l2l.run_many(optimizer, group, seeds=seeds, callbacks=observers, **limits)
            else:
                trajs = [
                    l2l.run(optimizer, tasks[instances[0]], seed=seeds[0], callback=observers[0], **limits)
                ]
            observed = [None if observer is None else observer.result() for observer in observers]
            bar.update(len(instances))
            return [
                RunRecord(label, i, t, s, traj, success_defined[i], obs)
                for i, s, traj, obs in zip(instances, seeds, trajs, observed, strict=True)
            ]

        groups = distributed.sharded_map(one, units)
    order = {label: k for k, (label, _) in enumerate(optimizers)}
    return sorted((r for g in groups for r in g), key=lambda r: (order[r.optimizer], r.instance, r.trial))


def grid_units(
    optimizers: Sequence[tuple[str, ZOOptimizer]], n_tasks: int, trials: int, vectorize: int = 1
) -> list[tuple[int, tuple[int, ...], int]]:
    """The work units of :func:`run_grid`, ``(optimizer index, instance indices, trial)``, in serial order.

    One run per unit, (optimizer, instance, trial) nested in that order; with ``vectorize`` B > 1, an
    optimizer that runs in lockstep (``l2l.runs_in_lockstep``) gets, per trial, groups of B consecutive
    instances (the last one smaller), each one ``l2l.run_many`` call; under ``--workers`` a group is
    the shard unit, so its batch composition, and so its results, do not depend on the worker count.

    Args:
        optimizers: (label, optimizer) pairs.
        n_tasks: number of instances.
        trials: runs per (optimizer, instance).
        vectorize: instances per group (1: single runs only).
    """
    if isinstance(vectorize, bool) or not isinstance(vectorize, int) or vectorize < 1:
        raise ValueError(f"vectorize={vectorize!r} must be an integer >= 1 (1: one run at a time)")
    units: list[tuple[int, tuple[int, ...], int]] = []
    for k, (_, optimizer) in enumerate(optimizers):
        if vectorize > 1 and l2l.runs_in_lockstep(optimizer):
            groups = [tuple(range(a, min(a + vectorize, n_tasks))) for a in range(0, n_tasks, vectorize)]
            units += [(k, group, t) for t in range(trials) for group in groups]
        else:
            units += [(k, (i,), t) for i in range(n_tasks) for t in range(trials)]
    return units


def pad_curves(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Stack curves of unequal length into [runs, longest], repeating each run's last value.

    A run that stopped early (budget or success) stays where it stopped, so padding with its last
    value is what it would report at any later step.
    """
    longest = max(len(c) for c in curves)
    return np.array([list(c) + [c[-1]] * (longest - len(c)) for c in curves], dtype=np.float64)


def summarize(records: Sequence[RunRecord], optimizer: ZOOptimizer, dim: int) -> dict:
    """Aggregate one optimizer's runs into the result entry that eval.compare writes.

    Means and standard deviations (population std, ddof 0, so one run gives 0 rather than NaN) are over
    all runs; curves are per step index, padded as in :func:`pad_curves` to the longest run. The success
    rate is over all runs (None when the task defines no success); queries to success are over the
    successful runs only (None when none succeeded).
    """
    if not records:
        raise ValueError("summarize needs at least one run")
    finals = np.array([r.trajectory.final_loss for r in records])
    losses = pad_curves([r.trajectory.losses for r in records])
    queries = pad_curves([r.trajectory.queries for r in records])
    hits = [r.trajectory.success_query for r in records if r.trajectory.success_query is not None]
    defined = any(r.has_success for r in records)
    return {
        "final_loss_mean": float(finals.mean()),
        "final_loss_std": float(finals.std()),
        "final_loss_median": float(np.median(finals)),
        "success_rate": len(hits) / len(records) if defined else None,
        "queries_to_success_mean": float(np.mean(hits)) if hits else None,
        "queries_to_success_median": float(np.median(hits)) if hits else None,
        "queries_per_step": optimizer.queries_per_step(dim),
        "total_queries": int(sum(r.trajectory.queries[-1] for r in records)),
        "loss_curve_mean": losses.mean(axis=0).tolist(),
        "loss_curve_std": losses.std(axis=0).tolist(),
        "queries_curve": queries.mean(axis=0).tolist(),
        "wall_s": float(sum(r.trajectory.wall_s for r in records)),
        "runs": len(records),
        "config": optimizer.config() if hasattr(optimizer, "config") else {},
        "white_box": bool(getattr(optimizer, "white_box", False)),
    }


def summarize_all(
    records: Sequence[RunRecord], optimizers: Sequence[tuple[str, ZOOptimizer]], dim: int
) -> dict[str, dict]:
    """:func:`summarize` for each optimizer, keyed by label, in the order given."""
    return {
        label: summarize([r for r in records if r.optimizer == label], optimizer, dim)
        for label, optimizer in optimizers
    }
