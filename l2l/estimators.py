"""Zeroth-order gradient estimators.

Each estimator sees the objective only as a callable ``f(X[B, d]) -> [B]``: an
:class:`~l2l.oracle.Oracle` at evaluation time (counted, no gradients), or a task's differentiable
loss when a learned optimizer is meta-trained. All rows of one estimate go to ``f`` in a single
batched call, so a budgeted oracle refuses a whole step rather than half of one.

Query costs for q directions in dimension d:

=============  =====================================================  ==========
kind           estimate                                               queries
=============  =====================================================  ==========
gaussian       (1/(mu q)) sum_i [f(x + mu u_i) - f(x)] u_i,           q + 1
               u_i ~ N(0, diag(std^2))  (papers/002 eq. 1)
sphere         (d/(mu q)) sum_i [f(x + mu u_i) - f(x)] u_i,           q + 1
               u_i uniform on the unit sphere
antithetic     (1/(2 mu q)) sum_i [f(x + mu u_i) - f(x - mu u_i)] u_i  2q
coordinate     sum_i (1/(2 mu)) [f(x + mu e_i) - f(x - mu e_i)] e_i   2d
               (papers/002 eq. 5; deterministic)
=============  =====================================================  ==========
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Estimate:
    """A gradient estimate and what it cost.

    Attributes:
        grad: the estimate, shape [d].
        fx: f(x) when the estimator evaluated it (forward differences), else None.
        directions: the query directions, [q, d] (the basis vectors for ``coordinate``).
        queries: number of rows evaluated.
    """

    grad: torch.Tensor
    fx: torch.Tensor | None
    directions: torch.Tensor
    queries: int


def check_q(q: int) -> int:
    if not isinstance(q, int) or isinstance(q, bool) or q < 1:
        raise ValueError(f"q={q!r} must be an integer >= 1 (the number of query directions per step)")
    return q


def check_mu(mu: float) -> float:
    if not mu > 0:
        raise ValueError(f"mu={mu!r} must be > 0 (the finite-difference smoothing radius)")
    return float(mu)


def gaussian_directions(
    q: int, dim: int, generator: torch.Generator, std: torch.Tensor | None = None
) -> torch.Tensor:
    """q directions u = std * z with z ~ N(0, I): the reparameterization u = Sigma^(1/2) z.

    ``std`` ([d], the square root of a diagonal covariance) may require grad; the result then does.
    """
    z = torch.randn(check_q(q), dim, generator=generator)
    if std is None:
        return z
    if std.shape != (dim,):
        raise ValueError(f"std has shape {tuple(std.shape)}; expected [{dim}] (one std per coordinate)")
    return z * std


def sphere_directions(q: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """q directions uniform on the unit sphere in R^dim."""
    z = torch.randn(check_q(q), dim, generator=generator)
    return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


def forward_difference(
    f: Objective, x: torch.Tensor, directions: torch.Tensor, mu: float, scale: float = 1.0
) -> Estimate:
    """``scale/(mu q) * sum_i [f(x + mu u_i) - f(x)] u_i`` from q+1 queries (f(x) evaluated once)."""
    mu = check_mu(mu)
    q = directions.shape[0]
    values = f(torch.cat([x.unsqueeze(0), x.unsqueeze(0) + mu * directions]))
    fx = values[0]
    slopes = (values[1:] - fx) * (scale / (mu * q))
    return Estimate(grad=slopes @ directions, fx=fx, directions=directions, queries=q + 1)


def central_difference(f: Objective, x: torch.Tensor, directions: torch.Tensor, mu: float) -> Estimate:
    """``1/(2 mu q) * sum_i [f(x + mu u_i) - f(x - mu u_i)] u_i`` from 2q queries."""
    mu = check_mu(mu)
    q = directions.shape[0]
    step = mu * directions
    values = f(torch.cat([x.unsqueeze(0) + step, x.unsqueeze(0) - step]))
    slopes = (values[:q] - values[q:]) / (2 * mu * q)
    return Estimate(grad=slopes @ directions, fx=None, directions=directions, queries=2 * q)


def coordinate_difference(
    f: Objective, x: torch.Tensor, mu: float, coords: torch.Tensor | None = None
) -> Estimate:
    """Coordinatewise central differences (papers/002 eq. 5) on ``coords`` (default: all d)."""
    dim = x.shape[0]
    basis = torch.eye(dim, dtype=x.dtype) if coords is None else torch.eye(dim, dtype=x.dtype)[coords]
    est = central_difference(f, x, basis, mu)
    # central_difference averages over directions; the coordinate estimator sums over them.
    est.grad = est.grad * basis.shape[0]
    return est


ESTIMATOR_KINDS = ("gaussian", "sphere", "antithetic", "coordinate")


@dataclass(frozen=True)
class EstimatorSpec:
    """Which estimator an optimizer uses, with its q and mu.

    Args:
        kind: one of ``gaussian``, ``sphere``, ``antithetic``, ``coordinate``.
        q: query directions per step (ignored by ``coordinate``).
        mu: finite-difference smoothing radius.
    """

    kind: str = "gaussian"
    q: int = 20
    mu: float = 1e-4

    def __post_init__(self) -> None:
        if self.kind not in ESTIMATOR_KINDS:
            known = ", ".join(ESTIMATOR_KINDS)
            raise ValueError(f"unknown estimator kind {self.kind!r}; choose one of {known}")
        check_q(self.q)
        check_mu(self.mu)

    def queries_per_step(self, dim: int) -> int:
        forward = self.q + 1
        costs = {"gaussian": forward, "sphere": forward, "antithetic": 2 * self.q, "coordinate": 2 * dim}
        return costs[self.kind]

    def estimate(
        self, f: Objective, x: torch.Tensor, generator: torch.Generator, std: torch.Tensor | None = None
    ) -> Estimate:
        """One estimate at ``x``; ``std`` is an optional diagonal sampling std (gaussian, antithetic)."""
        dim = x.shape[0]
        if self.kind == "coordinate":
            return coordinate_difference(f, x, self.mu)
        if self.kind == "sphere":
            return forward_difference(f, x, sphere_directions(self.q, dim, generator), self.mu, scale=dim)
        directions = gaussian_directions(self.q, dim, generator, std)
        if self.kind == "antithetic":
            return central_difference(f, x, directions, self.mu)
        return forward_difference(f, x, directions, self.mu)
