"""Random convex quadratics: a cheap family for tests, smoke runs and tiny meta-training."""

from __future__ import annotations

import torch

from l2l.tasks.base import Task, TaskFamily, check_rows, check_split
from l2l.tasks.registry import register_family
from l2l.tasks.seeds import instance_seed


class QuadraticTask(Task):
    """f(x) = 0.5 * ||A x - b||^2 / n, with gradient A^T (A x - b) / n; minimum value 0 when n >= d.

    Args:
        A: [n, d] matrix.
        b: [n] target.
        x_start: starting point [d] (default: zeros).
    """

    family = "quadratic"

    def __init__(self, A: torch.Tensor, b: torch.Tensor, x_start: torch.Tensor | None = None):
        if A.dim() != 2 or b.shape != (A.shape[0],):
            raise ValueError(f"A must be [n, d] and b [n]; got {tuple(A.shape)} and {tuple(b.shape)}")
        self.A, self.b = A.float(), b.float()
        self._x0 = torch.zeros(A.shape[1]) if x_start is None else x_start.float()

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    def x0(self) -> torch.Tensor:
        return self._x0.clone()

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        X = check_rows(X, self.dim)
        residual = X @ self.A.T.to(X.dtype) - self.b.to(X.dtype)
        return 0.5 * residual.pow(2).sum(dim=1) / self.A.shape[0]

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """The exact gradient at ``x`` [d] (for estimator tests)."""
        A, b = self.A.to(x.dtype), self.b.to(x.dtype)
        return A.T @ (A @ x - b) / A.shape[0]


@register_family("quadratic")
class QuadraticFamily(TaskFamily):
    """Quadratics with Gaussian A ([2d, d]) and b; instances are generated from their seed.

    Args:
        dim: dimension d.
        sizes: instances per split (train, val, test).
        seed: family seed; splits use disjoint seed streams.
    """

    name = "quadratic"

    def __init__(self, dim: int = 10, sizes: tuple[int, int, int] = (32, 8, 8), seed: int = 0):
        if dim < 1:
            raise ValueError(f"dim={dim} must be >= 1")
        self.dim, self.sizes, self.seed = dim, dict(zip(("train", "val", "test"), sizes, strict=True)), seed

    def split_size(self, split: str) -> int:
        return self.sizes[check_split(split)]

    def instance(self, split: str, index: int) -> QuadraticTask:
        self.check_index(split, index)
        g = torch.Generator().manual_seed(instance_seed(self.seed, split, index))
        A = torch.randn(2 * self.dim, self.dim, generator=g) / self.dim**0.5
        b = torch.randn(2 * self.dim, generator=g)
        return QuadraticTask(A, b)
