"""Bandits-TD (Ilyas, Engstrom, Madry; ICLR 2019): gradient priors carried over time and tiled in space.

The attack keeps a prior v on the gradient, at a reduced resolution (the data prior: each entry of v is
one tile of ``tile`` x ``tile`` pixels) and carried from one step to the next (the time prior). Each
step spends 2 queries on an antithetic finite difference along v +- delta * u, updates v with that
one-dimensional bandit feedback, and steps the image along v (methods sheet, "Bandits-TD").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.oracle import Oracle
from l2l.tasks.base import NormBall

#: the published ImageNet settings: the L-inf ones are the methods sheet's; the L2 ones are the paper's
#: appendix table as recalled, not in the sheet (unverified here)
IMAGENET_SETTINGS = {
    "linf": {"exploration": 1.0, "fd_eta": 0.1, "online_lr": 100.0, "image_lr": 0.01},
    "l2": {"exploration": 0.01, "fd_eta": 0.01, "online_lr": 0.1, "image_lr": 0.5},
}
#: the MNIST defaults (mnist_attack_linf at eps 0.2, mnist_attack_l2 at eps 2.0), picked in a quick val
#: check (docs/results/linf_l2_attacks.md, "Bandits-TD MNIST defaults"); L2's image_lr is the
#: published 0.5 scaled by the radii 2/5; eval.tune searches all of them
MNIST_SETTINGS = {
    "linf": {"exploration": 1.0, "fd_eta": 0.1, "online_lr": 100.0, "image_lr": 0.02},
    "l2": {"exploration": 0.01, "fd_eta": 0.01, "online_lr": 0.1, "image_lr": 0.2},
}
HYPERPARAMETERS = ("exploration", "fd_eta", "online_lr", "image_lr")


def ball_and_shape(oracle: Oracle) -> tuple[NormBall, tuple[int, int, int]]:
    """The task's public norm ball and (C, H, W) image shape; raises when the task offers neither."""
    task = oracle.task
    if task.ball is None or task.image_shape is None or len(task.image_shape) != 3:
        raise ValueError(
            f"bandits_td needs a norm-ball image task (ball and a (C, H, W) image_shape); "
            f"{type(task).__name__} has ball={task.ball} and image_shape={task.image_shape}"
        )
    return task.ball, tuple(task.image_shape)


def prior_shape(image_shape: tuple[int, int, int], tile: int) -> tuple[int, int, int]:
    """(C, ceil(H / tile), ceil(W / tile)): one prior entry per tile and channel."""
    c, h, w = image_shape
    return c, math.ceil(h / tile), math.ceil(w / tile)


def upsample(v: torch.Tensor, tile: int, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Nearest-neighbour tiles: each entry of ``v`` [C, h, w] fills a tile x tile block; flat [C*H*W].

    The last row and column of tiles are cropped where ``tile`` does not divide the image side.
    """
    _, h, w = image_shape
    return v.repeat_interleave(tile, 1).repeat_interleave(tile, 2)[:, :h, :w].flatten()


def unit(q: torch.Tensor) -> torch.Tensor:
    """q / ||q||_2 (q itself when it is zero, as the official code's 1e-8 guard effectively does)."""
    norm = torch.linalg.vector_norm(q)
    return q / norm if norm > 0 else q


def prior(z: torch.Tensor, norm: str) -> torch.Tensor:
    """The prior v from its parameters z, which the online step moves by z <- z + online_lr * g.

    L2: v = z, so the step is the paper's gradient step. L-inf: v = tanh(z). The paper's
    exponentiated-gradient step on r = (v + 1) / 2, r' = r e^{lr g} / (r e^{lr g} + (1 - r) e^{-lr g}),
    v' = 2 r' - 1, is exactly v' = tanh(atanh(v) + lr g): the same step in exact arithmetic. Keeping
    z = atanh(v) avoids the float round-off that sets r to exactly 0 or 1 after a few large steps and
    then freezes that entry of the prior for good.
    """
    return z if norm == "l2" else torch.tanh(z)


def image_step(direction: torch.Tensor, lr: float, norm: str) -> torch.Tensor:
    """The image move along the upsampled prior: lr * sign for L-inf, lr * unit vector for L2."""
    return lr * (unit(direction) if norm == "l2" else torch.sign(direction))


@register_optimizer("bandits_td")
@dataclass
class BanditsTD(ZOOptimizer):
    """Bandits-TD: an antithetic probe along a tiled, time-carried gradient prior; 2 queries per step.

    Each step (methods sheet; paper Algorithm 1 with the data prior):

    1. u ~ N(0, I / m) at the prior's resolution (m entries; the paper's Algorithm 1 and official code
       scale the sheet's N(0, I) by 1/sqrt(m), so that delta * u has norm about delta at any tile).
    2. Query l at x + fd_eta * q / ||q|| for q = up(v + delta * u) and q = up(v - delta * u).
    3. The derivative along u is (l+ - l-) / (fd_eta * delta); g = that times u.
    4. v <- v + online_lr * g (L2) or the exponentiated-gradient step (L-inf, :func:`prior`).
    5. x <- proj(x + image_lr * sign(up(v))) (L-inf) or proj(x + image_lr * up(v) / ||up(v)||) (L2).

    Sign convention: the paper ascends a loss l (cross-entropy); this project minimizes f (the margin
    loss), so the steps above run with l = -f: the derivative is (f- - f+) / (fd_eta * delta). Every
    other sign is the paper's.

    The norm is the task's (``oracle.task.ball.norm``): one optimizer serves both, and the fields left
    None take that norm's MNIST defaults (:data:`MNIST_SETTINGS`, picked on val at eps 0.2 L-inf and
    2.0 L2; the ImageNet settings are :data:`IMAGENET_SETTINGS`).

    Choices the sheet leaves open: as in the official code, the two probes are not projected (they
    leave the ball by at most fd_eta; the task clamps them into the image box) and the prior starts
    at v = 0. ``up`` repeats each prior entry over a tile x tile block (the official code resizes a
    side of H // tile entries with nearest-neighbour interpolation instead: the same when tile divides
    H). Neither probe is the iterate, so ``evaluates_iterate`` is False: observing that an iterate
    succeeds costs a query of its own (eval.attack_table charges 1 per step "with checks").

    Args:
        exploration: delta, the bandit's exploration scale (ImageNet: 1.0 L-inf, 0.01 L2; None: the
            norm's MNIST default).
        fd_eta: eta, the L2 length of each finite-difference probe (ImageNet: 0.1 L-inf, 0.01 L2).
        online_lr: the prior's learning rate (ImageNet: 100 L-inf, 0.1 L2).
        image_lr: h, the image step: per pixel for L-inf, in L2 length for L2 (ImageNet: 0.01 L-inf
            at eps 0.05, 0.5 L2 at eps 5).
        tile: prior tile side in pixels (ImageNet: 6 on 299 px; default 4, a 7 x 7 prior on MNIST).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"ball", "image"})

    exploration: float | None = None
    fd_eta: float | None = None
    online_lr: float | None = None
    image_lr: float | None = None
    tile: int = 4

    def __post_init__(self) -> None:
        for name in HYPERPARAMETERS:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name}={value!r} must be > 0 (or None for the norm's MNIST default)")
        if not isinstance(self.tile, int) or isinstance(self.tile, bool) or self.tile < 1:
            raise ValueError(f"tile={self.tile!r} must be an integer >= 1 (the prior's tile side in pixels)")

    def settings(self, norm: str) -> dict[str, float]:
        """The four step sizes in force on a ``norm`` ball: the fields, None ones from MNIST_SETTINGS."""
        given = {name: getattr(self, name) for name in HYPERPARAMETERS}
        return {name: float(MNIST_SETTINGS[norm][name] if v is None else v) for name, v in given.items()}

    def queries_per_step(self, dim: int) -> int:
        return 2

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        rows, plan = self.propose(state, oracle)
        return self.conclude(state, oracle(rows), plan, oracle)

    @property
    def lockstep(self) -> bool:
        """True: a step is :meth:`propose` (the two probes) then :meth:`conclude` (prior and image steps)."""
        return type(self).step is BanditsTD.step

    def propose(self, state: ZOState, oracle: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
        """The probes up(v + delta u) and up(v - delta u) at length fd_eta from x [2, d], and u."""
        ball, shape = ball_and_shape(oracle)
        p = self.settings(ball.norm)
        if "prior" not in state.slots:
            state.slots["prior"] = torch.zeros(
                prior_shape(shape, self.tile), dtype=state.x.dtype, device=state.x.device
            )
        v = prior(state.slots["prior"], ball.norm)
        u = torch.randn(v.shape, generator=state.rng, device=v.device, dtype=v.dtype) / math.sqrt(v.numel())
        delta, eta = p["exploration"], p["fd_eta"]
        probes = [state.x + eta * unit(upsample(v + s * delta * u, self.tile, shape)) for s in (1.0, -1.0)]
        return torch.stack(probes), u

    def conclude(self, state: ZOState, values: torch.Tensor, plan: torch.Tensor, oracle: Oracle) -> ZOState:
        """The bandit update of the prior from the probes' losses, then the image step (``plan``: u)."""
        ball, shape = ball_and_shape(oracle)
        p = self.settings(ball.norm)
        f_plus, f_minus = values
        ascent = (f_minus - f_plus) / (p["fd_eta"] * p["exploration"])  # l = -f: the paper ascends l
        state.slots["prior"] = z = state.slots["prior"] + p["online_lr"] * ascent * plan
        move = image_step(upsample(prior(z, ball.norm), self.tile, shape), p["image_lr"], ball.norm)
        state.x = oracle.project(state.x + move)
        state.fx = None  # no query was at the iterate
        state.step += 1
        return state

    def config(self) -> dict:
        return asdict(self)
