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
rademacher     antithetic, with u_i in {-1, +1}^d (SPSA)              2q
coordinate     sum_i (1/(2 mu)) [f(x + mu e_i) - f(x - mu e_i)] e_i   2d
               (papers/002 eq. 5; deterministic)
=============  =====================================================  ==========

Directions for guided search (Guided ES, papers/002 app. B) come from :func:`guided_directions`, which
any optimizer (hand-designed or learned) can feed to :func:`forward_difference`.
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
        slopes: forward differences only: the weights s_i [q] of ``grad = sum_i s_i u_i`` (what splits an
            estimate along its directions, as :func:`fresh_part` does), else None.
    """

    grad: torch.Tensor
    fx: torch.Tensor | None
    directions: torch.Tensor
    queries: int
    slopes: torch.Tensor | None = None


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
    z = torch.randn(check_q(q), dim, generator=generator, device=generator.device)
    if std is None:
        return z
    if std.shape != (dim,):
        raise ValueError(f"std has shape {tuple(std.shape)}; expected [{dim}] (one std per coordinate)")
    return z * std


def sphere_directions(q: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """q directions uniform on the unit sphere in R^dim."""
    z = torch.randn(check_q(q), dim, generator=generator, device=generator.device)
    return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


def rademacher_directions(q: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """q directions with independent +-1 entries (SPSA's Bernoulli perturbations)."""
    bits = torch.randint(0, 2, (check_q(q), dim), generator=generator)
    return bits.float().mul_(2).sub_(1)


def guided_basis(surrogates: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis U [d, k] of the span of k surrogate gradients (rows of ``surrogates`` [k, d]).

    Reduced QR keeps U^T U = I_k even when the surrogates are (nearly) parallel.
    """
    if surrogates.dim() != 2 or surrogates.shape[0] < 1:
        raise ValueError(f"surrogates has shape {tuple(surrogates.shape)}; expected [k >= 1, d]")
    basis, _ = torch.linalg.qr(surrogates.T)
    return basis


def guided_directions(
    q: int, dim: int, generator: torch.Generator, basis: torch.Tensor | None, alpha: float = 0.5
) -> torch.Tensor:
    """q Guided-ES directions u ~ N(0, d * Sigma), Sigma = (alpha/d) I + ((1 - alpha)/k) U U^T.

    Sigma is Maheswaranathan et al.'s guided covariance (trace 1) over the subspace spanned by the
    orthonormal ``basis`` U [d, k] (see :func:`guided_basis`); the factor d keeps E||u||^2 = d, as for
    N(0, I) (papers/002 app. B normalizes the norm "to keep it invariant"). With no basis yet (the first
    steps), u ~ N(0, I). Drawn as u = sqrt(alpha) z + sqrt((1 - alpha) d / k) U w, z ~ N(0, I_d),
    w ~ N(0, I_k).

    The ZO-LSTM's ``guided_es`` ablation samples differently, on purpose
    (:func:`l2l.learned.sampling.guided_es_directions`): it reproduces papers/002's eq. 7, Sigma =
    alpha I + (1 - alpha) U U^T, each direction rescaled to the norm of its z. There the guided subspace
    holds k / (alpha d + (1 - alpha) k) of E||u||^2 (0.5% at d = 784, k = 2), here 1 - alpha (50%), as
    in Maheswaranathan et al.'s Guided ES. This baseline keeps the original method's strength;
    the ablation keeps the paper's experiment and the figure measured with it (docs/results/mnist_attack.md).
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1] (the weight of the full space)")
    z = torch.randn(check_q(q), dim, generator=generator, device=generator.device)
    if basis is None:
        return z
    if basis.dim() != 2 or basis.shape[0] != dim:
        raise ValueError(f"basis has shape {tuple(basis.shape)}; expected [{dim}, k] (orthonormal columns)")
    k = basis.shape[1]
    w = torch.randn(q, k, generator=generator, device=generator.device, dtype=basis.dtype)
    guided = (w @ basis.T).to(z.dtype) * ((1 - alpha) * dim / k) ** 0.5
    return z * alpha**0.5 + guided


def forward_points(x: torch.Tensor, directions: torch.Tensor, mu: float) -> torch.Tensor:
    """The q+1 query rows of a forward difference: x, then x + mu u_i."""
    return torch.cat([x.unsqueeze(0), x.unsqueeze(0) + check_mu(mu) * directions])


def forward_estimate(
    values: torch.Tensor, directions: torch.Tensor, mu: float, scale: float = 1.0
) -> Estimate:
    """The forward-difference estimate from ``values`` [q+1] observed at :func:`forward_points`.

    Split from the querying so that one batch of queries can serve several estimates (ZO-NGD reads the
    loss and the log-likelihood from the same rows; ZO-SZVR-G evaluates two base points in one call).
    """
    q = directions.shape[0]
    if values.shape != (q + 1,):
        raise ValueError(f"values has shape {tuple(values.shape)}; expected [{q + 1}] (base point, then q)")
    fx = values[0]
    slopes = (values[1:] - fx) * (scale / (check_mu(mu) * q))
    return Estimate(grad=slopes @ directions, fx=fx, directions=directions, queries=q + 1, slopes=slopes)


def fresh_part(est: Estimate, mean: torch.Tensor) -> torch.Tensor:
    """q/(q-1) sum_i (s_i - mean(s)) z_i: a guided estimate's unbiased part, from its noise z_i = u_i - a.

    ``est`` is a forward-difference estimate over u_i = a + z_i with z_i ~ N(0, I) drawn independently
    of the mean ``a``; its slopes s_i are about u_i . g / q. Then E[s_i z_i] = g / q for any a, while
    the estimate itself, sum_i s_i u_i, has mean (I + a a^T) g. Subtracting the mean slope (a control
    variate, rescaled by q/(q-1) to stay unbiased) removes the a . g term from the noise; on
    binary_classification val it gave a lower loss than the plain sum_i s_i z_i to ``zo_trend``, which
    follows a running mean of these parts (:mod:`l2l.optimizers.zo_trend`).
    A step with q = 1 has no such baseline and gives s_1 z_1.
    """
    if est.slopes is None:
        raise ValueError("the estimate carries no slopes; the trend needs a forward-difference estimate")
    noise = est.directions - torch.as_tensor(mean, dtype=est.directions.dtype).flatten().unsqueeze(0)
    q = est.slopes.numel()
    if q == 1:
        return est.slopes @ noise
    return (est.slopes - est.slopes.mean()) @ noise * (q / (q - 1))


def trend_mean(trend: torch.Tensor, strength: float) -> torch.Tensor:
    """The mean direction ``strength * trend / max|trend|`` that guided sampling shifts N(0, I) by (0: zeros).

    Scaling by the largest entry keeps the mean's size fixed while the trend's own size follows the
    gradient's; a zero trend (the first step) gives plain Gaussian directions.
    """
    top = trend.abs().max()
    return trend * (strength / top) if float(top) > 0 else torch.zeros_like(trend)


def update_trend(trend: torch.Tensor | None, est: Estimate, mean: torch.Tensor, decay: float) -> torch.Tensor:
    """decay * trend + (1 - decay) * :func:`fresh_part` (est, mean): the running mean of unbiased parts.

    ``trend`` None starts it at zeros (the first step's part, times 1 - decay).
    """
    previous = torch.zeros_like(est.grad) if trend is None else trend
    return decay * previous + (1 - decay) * fresh_part(est, mean)


def trend_estimate(
    f: Objective, x: torch.Tensor, trend: torch.Tensor, q: int, mu: float, strength: float, decay: float,
    rng: torch.Generator,
) -> tuple[Estimate, torch.Tensor]:  # fmt: skip
    """ZO-Trend's estimate at ``x`` and the trend after it (:mod:`l2l.optimizers.zo_trend`; q + 1 queries).

    The q directions are :func:`trend_mean` (trend, strength) + N(0, I) (drawn from ``rng``); the trend
    is updated with the estimate's :func:`fresh_part` (:func:`update_trend`, decay ``decay``).
    """
    mean = trend_mean(trend, strength)
    est = forward_difference(f, x, mean + gaussian_directions(q, x.shape[0], rng), mu)
    return est, update_trend(trend, est, mean, decay)


def forward_difference(
    f: Objective, x: torch.Tensor, directions: torch.Tensor, mu: float, scale: float = 1.0
) -> Estimate:
    """``scale/(mu q) * sum_i [f(x + mu u_i) - f(x)] u_i`` from q+1 queries (f(x) evaluated once)."""
    return forward_estimate(f(forward_points(x, directions, mu)), directions, mu, scale)


def central_points(x: torch.Tensor, directions: torch.Tensor, mu: float) -> torch.Tensor:
    """The 2q query rows of a central difference: x + mu u_i for every i, then x - mu u_i."""
    step = check_mu(mu) * directions
    return torch.cat([x.unsqueeze(0) + step, x.unsqueeze(0) - step])


def central_estimate(values: torch.Tensor, directions: torch.Tensor, mu: float) -> Estimate:
    """The central-difference estimate from ``values`` [2q] observed at :func:`central_points`."""
    q = directions.shape[0]
    if values.shape != (2 * q,):
        raise ValueError(f"values has shape {tuple(values.shape)}; expected [{2 * q}] (q plus rows, q minus)")
    slopes = (values[:q] - values[q:]) / (2 * check_mu(mu) * q)
    return Estimate(grad=slopes @ directions, fx=None, directions=directions, queries=2 * q)


def central_difference(f: Objective, x: torch.Tensor, directions: torch.Tensor, mu: float) -> Estimate:
    """``1/(2 mu q) * sum_i [f(x + mu u_i) - f(x - mu u_i)] u_i`` from 2q queries."""
    return central_estimate(f(central_points(x, directions, mu)), directions, mu)


def coordinate_basis(x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
    """The unit vectors e_i [k, d] of the coordinates ``coords`` (default: all d) of ``x``'s space."""
    eye = torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
    return eye if coords is None else eye[coords]


def coordinate_estimate(values: torch.Tensor, basis: torch.Tensor, mu: float) -> Estimate:
    """The coordinatewise estimate from ``values`` [2k] observed at ``central_points(x, basis, mu)``."""
    est = central_estimate(values, basis, mu)
    # central_estimate averages over directions; the coordinate estimator sums over them.
    est.grad = est.grad * basis.shape[0]
    return est


def coordinate_difference(
    f: Objective, x: torch.Tensor, mu: float, coords: torch.Tensor | None = None
) -> Estimate:
    """Coordinatewise central differences (papers/002 eq. 5) on ``coords`` (default: all d)."""
    basis = coordinate_basis(x, coords)
    return coordinate_estimate(f(central_points(x, basis, mu)), basis, mu)


ESTIMATOR_KINDS = ("gaussian", "sphere", "antithetic", "rademacher", "coordinate")
#: kinds whose estimate evaluates f at x itself (forward differences)
FORWARD_KINDS = ("gaussian", "sphere")


@dataclass(frozen=True)
class EstimatorSpec:
    """Which estimator an optimizer uses, with its q and mu.

    Args:
        kind: one of ``gaussian``, ``sphere``, ``antithetic``, ``rademacher``, ``coordinate``.
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
        if self.kind == "coordinate":
            return 2 * dim
        return self.q + 1 if self.kind in FORWARD_KINDS else 2 * self.q

    @property
    def evaluates_x(self) -> bool:
        """Whether an estimate queries f at x itself (forward differences do; central ones do not)."""
        return self.kind in FORWARD_KINDS

    def scale(self, dim: int) -> float:
        """The factor that makes a forward estimate unbiased for the smoothed gradient (d on the sphere)."""
        return float(dim) if self.kind == "sphere" else 1.0

    def directions(
        self, dim: int, generator: torch.Generator, std: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The q query directions of one estimate (not for ``coordinate``, which has fixed ones)."""
        if self.kind == "sphere":
            return sphere_directions(self.q, dim, generator)
        if self.kind == "rademacher":
            return rademacher_directions(self.q, dim, generator)
        if self.kind == "coordinate":
            raise ValueError("the coordinate estimator has no random directions")
        return gaussian_directions(self.q, dim, generator, std)

    def draw(
        self, x: torch.Tensor, generator: torch.Generator, std: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The query rows of one estimate at ``x`` and the directions they probe, before any is evaluated.

        :meth:`estimate` is ``combine(f(rows), directions)``; the split lets ``l2l.run_many`` draw the
        rows of several runs, evaluate them in one stacked call, and combine each run's own values.

        Args:
            x: the point [d].
            generator: the run's generator (the only randomness drawn).
            std: an optional diagonal sampling std [d] (gaussian, antithetic).

        Returns:
            ``(rows, directions)``: rows [queries_per_step(d), d]; directions [q, d] (the basis
            vectors for ``coordinate``).
        """
        if self.kind == "coordinate":
            basis = coordinate_basis(x)
            return central_points(x, basis, self.mu), basis
        directions = self.directions(x.shape[0], generator, std)
        if self.evaluates_x:
            return forward_points(x, directions, self.mu), directions
        return central_points(x, directions, self.mu), directions

    def combine(self, values: torch.Tensor, directions: torch.Tensor) -> Estimate:
        """The estimate from ``values`` observed at the rows :meth:`draw` gave with ``directions``.

        Args:
            values: f at each row, [queries_per_step(d)].
            directions: the directions :meth:`draw` returned.
        """
        if self.kind == "coordinate":
            return coordinate_estimate(values, directions, self.mu)
        if self.evaluates_x:
            return forward_estimate(values, directions, self.mu, scale=self.scale(directions.shape[1]))
        return central_estimate(values, directions, self.mu)

    def estimate(
        self, f: Objective, x: torch.Tensor, generator: torch.Generator, std: torch.Tensor | None = None
    ) -> Estimate:
        """One estimate at ``x``; ``std`` is an optional diagonal sampling std (gaussian, antithetic)."""
        rows, directions = self.draw(x, generator, std)
        return self.combine(f(rows), directions)
