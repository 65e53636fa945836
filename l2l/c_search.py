"""Binary search over the distortion weight c of an attack (the C&W / ZOO outer loop, papers/001 ch. 3).

In ``AttackTask`` the loss is ``margin + c * ||delta||_1``: a larger c buys smaller perturbations but
makes success harder. Each round runs the optimizer on the task with the current c under its share of
the query budget; success moves c up (ask for less distortion), failure moves it down, and the best
successful perturbation (least L1) over all rounds is kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from l2l.optimizers.core.base import ZOOptimizer
from l2l.run import Trajectory, run
from l2l.tasks.attack import AttackTask


@dataclass
class CSearchResult:
    """What a binary search over c found.

    Attributes:
        best_x: the successful perturbation with the least L1 distortion (None if no round succeeded).
        best_l1: its L1 distortion on the clamped image (inf if none).
        best_c: the c of the round that found it.
        queries: oracle queries over all rounds.
        rounds: (c, success, L1 of the round's final iterate) per round, in order.
    """

    best_x: torch.Tensor | None = None
    best_l1: float = math.inf
    best_c: float | None = None
    queries: int = 0
    rounds: list[tuple[float, bool, float]] = field(default_factory=list)


def l1_distortion(task: AttackTask, x: torch.Tensor) -> float:
    """||clamp(image + x) - image||_1, the distortion the attack is charged for."""
    return float((task.adversarial(x.unsqueeze(0))[0] - task.image).abs().sum())


def next_c(c: float, low: float, high: float, success: bool) -> tuple[float, float, float]:
    """The next (c, low, high): bisect between the bounds, or grow/shrink tenfold while one is open."""
    if success:
        low = c
        c = (low + high) / 2 if math.isfinite(high) else c * 10
    else:
        high = c
        c = (low + high) / 2 if low > 0 else c / 10
    return c, low, high


def binary_search_c(
    optimizer: ZOOptimizer, task: AttackTask, rounds: int, steps: int, budget_per_round: int | None = None,
    c0: float | None = None, seed: int = 0,
) -> CSearchResult:  # fmt: skip
    """Attack ``task`` over ``rounds`` values of c, starting from ``c0`` (default: the task's c).

    Args:
        optimizer: any ZO optimizer; each round starts it afresh from the task's x0.
        task: the attack; it is not modified (each round attacks a copy with its own c).
        rounds: number of c values tried.
        steps: the most steps per round.
        budget_per_round: the most queries per round (None: ``steps`` alone).
        c0: the first c.
        seed: seed of round r is ``seed + r``.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be >= 1")
    c = task.c if c0 is None else float(c0)
    if not c > 0:
        raise ValueError(f"c0={c} must be > 0 for a multiplicative search")
    result, low, high = CSearchResult(), 0.0, math.inf
    for r in range(rounds):
        attempt = copy.copy(task)
        attempt.c = c
        traj: Trajectory = run(optimizer, attempt, steps, budget=budget_per_round, seed=seed + r)
        result.queries += traj.queries[-1]
        success = traj.success_step is not None and bool(task.success(traj.x.unsqueeze(0))[0])
        l1 = l1_distortion(task, traj.x)
        result.rounds.append((c, success, l1))
        if success and l1 < result.best_l1:
            result.best_x, result.best_l1, result.best_c = traj.x.clone(), l1, c
        c, low, high = next_c(c, low, high, success)
    return result
