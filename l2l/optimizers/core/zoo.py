"""ZOO (papers/001 ch. 3): stochastic coordinate descent on symmetric-difference estimates.

Shared by ``zoo_adam`` (Alg. 2) and ``zoo_newton`` (Alg. 3): each step picks B coordinates of the
attack-space variable y, evaluates f once at the iterate and at +-h along each coordinate (2B+1 queries
in one batched oracle call), and lets the subclass update those B coordinates from the first-derivative
(eq. 12) and second-derivative (eq. 13) estimates.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from l2l.optimizers.core.attack_space import AttackSpace, check_schedule, normalize_sizes
from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.oracle import Oracle

Objective = Callable[[torch.Tensor], torch.Tensor]
Projection = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CoordinateEstimate:
    """Coordinatewise derivative estimates along B directions, and what they cost.

    Attributes:
        fx: f at the base point.
        grad: eq. 12, [f(z + h u_i) - f(z - h u_i)] / (2h), shape [B].
        hess: eq. 13, [f(z + h u_i) - 2 f(z) + f(z - h u_i)] / h^2, shape [B].
        queries: rows evaluated (2B + 1).
    """

    fx: torch.Tensor
    grad: torch.Tensor
    hess: torch.Tensor
    queries: int


def check_h(h: float) -> float:
    if not h > 0:
        raise ValueError(f"h={h!r} must be > 0 (the symmetric-difference step; papers/001 uses 1e-4)")
    return float(h)


def coordinate_derivatives(
    f: Objective, z: torch.Tensor, directions: torch.Tensor, h: float, project: Projection | None = None
) -> CoordinateEstimate:
    """Eq. 12 and eq. 13 along each row u_i of ``directions`` [B, d] from one call of 2B+1 rows.

    The rows are z, z + h u_i, z - h u_i; ``project`` (applied to each row) keeps every query feasible,
    which makes the differences one-sided at the boundary. The Hessian estimate reuses the same queries.
    """
    h = check_h(h)
    b = directions.shape[0]
    rows = torch.cat([z.unsqueeze(0), z + h * directions, z - h * directions])
    if project is not None:
        rows = torch.stack([project(row) for row in rows])
    values = f(rows)
    fx, plus, minus = values[0], values[1 : b + 1], values[b + 1 :]
    return CoordinateEstimate(
        fx=fx, grad=(plus - minus) / (2 * h), hess=(plus - 2 * fx + minus) / h**2, queries=2 * b + 1
    )


@dataclass
class ZOOBase(ZOOptimizer):
    """Stochastic coordinate descent with batched symmetric differences, on an optional attack space.

    Args:
        lr: step size eta of the coordinate update (papers/001 MNIST: 0.01). Not divided by d: each
            step moves B coordinates by about lr each, whatever d is.
        batch: coordinates B estimated and updated per step (2B+1 queries; papers/001: 128). When the
            attack space has fewer than B variables, all of them are used.
        h: symmetric-difference step (papers/001: 1e-4).
        attack_sizes: attack-space (height, width) per hierarchy level, e.g. ((14, 14),) for dimension
            reduction or ((7, 7), (14, 14), (28, 28)) for a hierarchical attack; () optimizes the task's
            own coordinates (papers/001 on MNIST).
        grow_at: the steps at which the next attack size takes over (one per size after the first).
        image_shape: (C, H, W) of the task's image; None means (1, 28, 28) when d == 784, else none
            (then attack_sizes must be ()).
        importance: draw coordinates with probabilities from max-pooled |y| (sec. 3.2.4), refreshed every
            step; uniform (without replacement) otherwise.
    """

    lr: float = 0.01
    batch: int = 128
    h: float = 1e-4
    attack_sizes: tuple[tuple[int, int], ...] = ()
    grow_at: tuple[int, ...] = ()
    image_shape: tuple[int, int, int] | None = None
    importance: bool = False

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be > 0 (the coordinate step size eta)")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise ValueError(f"batch={self.batch!r} must be an integer >= 1 (B, coordinates per step)")
        check_h(self.h)
        self.attack_sizes = normalize_sizes(self.attack_sizes)
        self.grow_at = check_schedule(self.attack_sizes, self.grow_at)
        if self.image_shape is not None:
            self.image_shape = tuple(self.image_shape)

    def attack_space(self, dim: int) -> AttackSpace:
        return AttackSpace.build(dim, self.attack_sizes, self.grow_at, self.image_shape)

    def init_slots(self, state: ZOState) -> None:
        space = self.attack_space(state.x.shape[0])
        state.slots.update(space=space, level=0, origin=state.x.clone())
        state.slots["y"] = torch.zeros(space.size(0), dtype=state.x.dtype, device=state.x.device)
        self.init_coordinate_state(state, space.size(0))

    def queries_per_step(self, dim: int) -> int:
        space = self.attack_space(dim)
        return 2 * min(self.batch, space.size(len(space.grow_at))) + 1

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        space = state.slots["space"]
        return 2 * min(self.batch, space.size(space.level(state.step))) + 1

    @property
    def evaluates_iterate(self) -> bool:
        # Row 0 of every step is the iterate itself, except when the hierarchy has just regrown y.
        return not self.grow_at

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        space = state.slots["space"]
        regrown = self._follow_schedule(state, space)
        level, y = state.slots["level"], state.slots["y"]
        coords = self._pick_coordinates(state, space)
        # The base point is x_start + D(y); in the task's own coordinates that is the iterate, which is
        # used bit for bit so that the base query reveals the iterate's loss (and success) exactly.
        exact = space.is_identity(level) and not regrown
        z = state.x if exact else state.slots["origin"] + space.upscale(y.unsqueeze(0), level)[0]
        est = coordinate_derivatives(oracle, z, space.basis(coords, level, y.dtype), self.h, oracle.project)
        y[coords] = self.coordinate_update(state, coords, est)
        state.x = self._iterate(state, space, oracle.project)
        state.fx, state.step = est.fx, state.step + 1
        return state

    def _follow_schedule(self, state: ZOState, space: AttackSpace) -> bool:
        """Grow y when the hierarchical schedule says so (per-coordinate state restarts, as in the
        official code); returns whether it did."""
        level = space.level(state.step)
        if level == state.slots["level"]:
            return False
        state.slots["y"] = space.regrow(state.slots["y"], state.slots["level"], level)
        state.slots["level"] = level
        self.init_coordinate_state(state, space.size(level))
        return True

    def _pick_coordinates(self, state: ZOState, space: AttackSpace) -> torch.Tensor:
        """B distinct coordinates of y: by importance when asked for (and y is nonzero), else uniformly."""
        level, y = state.slots["level"], state.slots["y"]
        b = min(self.batch, space.size(level))
        probs = space.importance(y, level) if self.importance else None
        if probs is None:
            return torch.randperm(space.size(level), generator=state.rng, device=state.rng.device)[:b]
        return torch.multinomial(probs, b, replacement=False, generator=state.rng)

    def _iterate(self, state: ZOState, space: AttackSpace, project: Projection) -> torch.Tensor:
        """x = project(x_start + D(y)); in the task's own coordinates y is clipped with x (official code)."""
        origin, level = state.slots["origin"], state.slots["level"]
        x = project(origin + space.upscale(state.slots["y"].unsqueeze(0), level)[0])
        if space.is_identity(level):
            state.slots["y"] = x - origin
        return x

    @abc.abstractmethod
    def init_coordinate_state(self, state: ZOState, size: int) -> None:
        """(Re)start the per-coordinate state for an attack space of ``size`` variables."""

    @abc.abstractmethod
    def coordinate_update(
        self, state: ZOState, coords: torch.Tensor, est: CoordinateEstimate
    ) -> torch.Tensor:
        """New values of ``y[coords]`` from the derivative estimates at those coordinates."""

    def config(self) -> dict:
        return asdict(self)
