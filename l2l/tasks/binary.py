"""Binary classification with a non-convex least-squares loss (papers/002 sec. 4.2).

The variable is a weight vector theta; the loss on a dataset {(x_i, y_i)} is
``mean_i (y_i - sigmoid(theta^T x_i))^2``, which is non-convex in theta. Each optimizer step sees a
minibatch of rows that all of its queries share. Two families:

- ``binary_classification``: one synthetic dataset per instance, as in the paper
  (theta* ~ N(0, I_d), x_i ~ N(0, I_d), y_i = 1[theta*^T x_i > 0]).
- ``binary_real``: random subsamples of one real dataset (scikit-learn's bundled breast_cancer, or any
  svmlight/libsvm file), whose rows are cut once into disjoint train / val / test pools.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from l2l.tasks.base import SPLITS, Task, TaskFamily, check_blocks, check_rows, check_split
from l2l.tasks.registry import register_family
from l2l.tasks.seeds import instance_seed

#: where Debian's ``liblinear-tools`` package puts the classic ``heart_scale`` svmlight file
DEBIAN_HEART_SCALE = Path("/usr/share/doc/liblinear-tools/examples/heart_scale")

#: fractions of a real dataset's rows in the train / val / test pools
POOL_FRACTIONS = (0.6, 0.2, 0.2)


class BinaryClassificationTask(Task):
    """Non-convex least squares ``f(theta) = mean_i (y_i - sigmoid(theta^T x_i))^2`` on one dataset.

    Stochastic: :meth:`sample_batch` draws ``batch_size`` distinct rows for one optimizer step, and all
    of that step's queries share them; ``loss(X)`` without a batch is the full objective over all n
    rows. f lies in [0, 1] and equals 0.25 at theta = 0.

    Args:
        features: [n, d] inputs (append a constant-1 column for a bias term); kept as float32 and
            never modified, so callers may share one tensor between tasks.
        labels: [n] labels in {0, 1}.
        batch_size: rows per minibatch, 1..n.
        x_start: starting point [d] (default: zeros).
    """

    family = "binary_classification"

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 64,
        x_start: torch.Tensor | None = None,
    ):
        self.features = _check_features(features)
        self.labels = _check_labels(labels, self.n)
        if not 1 <= batch_size <= self.n:
            raise ValueError(
                f"batch_size={batch_size} must be in 1..{self.n} (the number of rows); "
                f"use at most {self.n}, which is the full dataset"
            )
        self.batch_size = int(batch_size)
        if x_start is not None and tuple(x_start.shape) != (self.dim,):
            raise ValueError(f"x_start has shape {tuple(x_start.shape)}; expected [{self.dim}]")
        self._x0 = torch.zeros(self.dim) if x_start is None else x_start.detach().float().clone()

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def n(self) -> int:
        """Number of rows (examples) in the dataset."""
        return self.features.shape[0]

    def x0(self) -> torch.Tensor:
        return self._x0.clone()

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        X = check_rows(X, self.dim)
        return squared_error(X, *self._rows(batch))

    def stack_key(self) -> Hashable:
        """Instances of one dimension on one device stack (each keeps its own dataset and minibatch)."""
        return (type(self), self.dim, str(self.features.device))

    @classmethod
    def loss_many(
        cls,
        tasks: Sequence[Task],
        rows: Sequence[torch.Tensor],
        batches: Sequence[torch.Tensor | None] | None = None,
    ) -> list[torch.Tensor]:
        """Every instance's loss on its own minibatch from one batched matmul ([N, r, d] @ [N, d, m]).

        Stacks when every instance has a minibatch of as many rows as the first, and as many query rows
        (an optimizer step of ``l2l.run_many``: one optimizer, one family); otherwise it loops. The full
        objective loops on purpose: stacking would copy every instance's whole dataset per call, which
        measured slower than the loop on CPU (16 instances of 2,000 x 100: 3.2 ms against 2.4 ms), while
        a stacked minibatch step measured 2.4x faster. Equal to :meth:`loss` per instance up to float
        rounding.

        Args:
            tasks: instances with one :meth:`stack_key`.
            rows: each instance's query rows, [r, d].
            batches: each instance's minibatch (None: the full objective for all).
        """
        batches = check_blocks(tasks, rows, batches)
        rows = [check_rows(X, task.dim) for task, X in zip(tasks, rows, strict=True)]
        minibatches = all(b is not None for b in batches) and len({b.shape for b in batches}) == 1
        if not minibatches or len({X.shape for X in rows}) > 1:
            return super().loss_many(tasks, rows, batches)
        data = [task._rows(batch) for task, batch in zip(tasks, batches, strict=True)]
        features = torch.stack([features for features, _ in data])
        labels = torch.stack([labels for _, labels in data])
        return list(squared_error(torch.stack(rows), features, labels).unbind(0))

    def _rows(self, batch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The features and labels of the rows in ``batch`` (all rows when None)."""
        if batch is None:
            return self.features, self.labels
        if not isinstance(batch, torch.Tensor) or batch.dim() != 1 or batch.is_floating_point():
            got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(
                f"batch must be a 1-D integer tensor of row indices (from sample_batch); got {got}"
            )
        return self.features[batch], self.labels[batch]

    def sample_batch(self, generator: torch.Generator) -> torch.Tensor:
        """``batch_size`` distinct row indices, a deterministic function of ``generator``'s state."""
        # the prefix of a random permutation: distinct rows without rejection sampling
        return torch.randperm(self.n, generator=generator)[: self.batch_size]

    def accuracy(self, x: torch.Tensor) -> float:
        """Fraction of all n rows that ``x`` [d] classifies right at probability threshold 0.5."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (self.dim,):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be one weight vector of shape [{self.dim}]; got {got}")
        with torch.no_grad():
            # sigmoid(z) > 0.5 exactly when z > 0, the same rule that labels the synthetic data
            predicted = self.features @ x.detach().float() > 0
            return float((predicted == self.labels.bool()).float().mean())

    def describe(self) -> dict:
        return {**super().describe(), "n": self.n, "d": self.dim, "batch_size": self.batch_size}


def squared_error(X: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``mean_i (y_i - sigmoid(theta^T x_i))^2`` for each row theta of ``X``; leading dims broadcast.

    Args:
        X: weight rows [..., r, d].
        features: examples [..., m, d].
        labels: their labels [..., m].

    Returns:
        [..., r].
    """
    # one matmul scores every (query row, example) pair: [..., r, d] @ [..., d, m] -> [..., r, m]
    probs = torch.sigmoid(X @ features.to(X.dtype).transpose(-1, -2))
    return (labels.to(X.dtype).unsqueeze(-2) - probs).pow(2).mean(dim=-1)


def _check_features(features: torch.Tensor) -> torch.Tensor:
    features = torch.as_tensor(features).float()
    if features.dim() != 2 or min(features.shape) < 1:
        raise ValueError(f"features has shape {tuple(features.shape)}; expected [n, d] with n, d >= 1")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf; clean or impute the dataset first")
    return features


def _check_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).float()
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected [{n}], one per row of features")
    bad = labels[(labels != 0) & (labels != 1)]
    if bad.numel():
        raise ValueError(
            f"labels must be 0 or 1; found {bad.unique()[:5].tolist()}; map the two classes to 0 and 1 first"
        )
    return labels


def _split_sizes(sizes: Sequence[int]) -> dict[str, int]:
    """``(train, val, test)`` instance counts as a dict, checked."""
    if len(sizes) != len(SPLITS) or any(int(s) != s or s < 0 for s in sizes):
        raise ValueError(f"sizes={tuple(sizes)} must be three counts >= 0: (train, val, test)")
    return dict(zip(SPLITS, (int(s) for s in sizes), strict=True))


@lru_cache(maxsize=128)
def synthetic_data(dim: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One synthetic dataset: ``(theta_star [d], features [n, d], labels [n])``.

    theta* ~ N(0, I_d), x_i ~ N(0, I_d), y_i = 1[theta*^T x_i > 0]. Cached (about n * d * 4 bytes each,
    0.8 MB at the paper's sizes; 128 covers the default family) because evaluation asks for the same
    instance many times; the returned tensors are shared, so never modify them.

    Args:
        dim: dimension d.
        n: number of rows.
        seed: the instance's seed (from :func:`~l2l.tasks.seeds.instance_seed`).
    """
    g = torch.Generator().manual_seed(seed)
    theta_star = torch.randn(dim, generator=g)
    features = torch.randn(n, dim, generator=g)
    labels = (features @ theta_star > 0).float()
    return theta_star, features, labels


@register_family("binary_classification")
class BinaryClassificationFamily(TaskFamily):
    """Synthetic datasets of papers/002 sec. 4.2, one per instance, generated from the instance seed.

    Args:
        dim: dimension d (the paper: 100).
        n: rows per dataset (the paper: 2000).
        batch_size: minibatch rows per optimizer step (the paper: 64).
        sizes: instances per split (train, val, test); the paper trains on 90 and tests on 10.
        seed: family seed; splits use disjoint seed streams.
    """

    name = "binary_classification"
    default_steps = 500  # papers/002 fig. 3's horizon

    def __init__(
        self,
        dim: int = 100,
        n: int = 2000,
        batch_size: int = 64,
        sizes: tuple[int, int, int] = (90, 10, 10),
        seed: int = 0,
    ):
        if dim < 1 or n < 1:
            raise ValueError(f"dim={dim} and n={n} must both be >= 1")
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size={batch_size} must be in 1..n={n}")
        self.dim, self.n, self.batch_size, self.seed = dim, n, batch_size, seed
        self.sizes = _split_sizes(sizes)

    def split_size(self, split: str) -> int:
        return self.sizes[check_split(split)]

    def instance(self, split: str, index: int) -> BinaryClassificationTask:
        self.check_index(split, index)
        _, features, labels = synthetic_data(self.dim, self.n, instance_seed(self.seed, split, index))
        return BinaryClassificationTask(features, labels, self.batch_size)


def load_binary_dataset(dataset: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Raw features [N, D] (float64, read-only) and labels [N] (int64 in {0, 1}) of a real dataset.

    Args:
        dataset: ``"breast_cancer"`` (bundled with scikit-learn, nothing is downloaded) or the path to
            an svmlight/libsvm file; its two label values (e.g. -1/+1 or 1/2) map to 0/1, the larger
            one to 1.
    """
    if str(dataset) == "breast_cancer":
        return _read_breast_cancer()
    path = Path(dataset).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset file at {str(dataset)!r}; pass dataset='breast_cancer' (bundled with "
            "scikit-learn) or the path to an svmlight/libsvm file. Debian's liblinear-tools ships one: "
            f"run `apt-get install liblinear-tools`, then pass {str(DEBIAN_HEART_SCALE)!r}"
        )
    # keyed on the modification time too, so an edited file is read again
    return _read_svmlight(str(path.resolve()), path.stat().st_mtime)


@lru_cache(maxsize=1)
def _read_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    # imported here: scikit-learn's dataset module costs ~1.5 s to import, paid only when used
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    return _frozen(features.astype(np.float64), labels.astype(np.int64))


@lru_cache(maxsize=4)
def _read_svmlight(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_svmlight_file

    features, labels = load_svmlight_file(path)
    classes = np.unique(labels)
    if len(classes) != 2:
        raise ValueError(
            f"{path} has {len(classes)} label values {classes[:10].tolist()}; binary classification "
            "needs exactly two (e.g. -1/+1, 0/1 or 1/2): pick two classes or binarize the labels"
        )
    return _frozen(features.toarray().astype(np.float64), (labels == classes[1]).astype(np.int64))


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark cached arrays read-only, so no caller can corrupt the cache by writing into one."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


def split_pools(n_rows: int, seed: int) -> dict[str, torch.Tensor]:
    """Shuffle row indices with ``seed`` and cut them 60/20/20 into disjoint train / val / test pools.

    Args:
        n_rows: rows in the dataset.
        seed: shuffle seed.
    """
    if n_rows < 5:
        raise ValueError(f"the dataset has {n_rows} rows; splitting it 60/20/20 needs at least 5")
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(POOL_FRACTIONS[0] * n_rows), int(POOL_FRACTIONS[1] * n_rows)
    cuts = (0, n_train, n_train + n_val, n_rows)
    return {split: order[cuts[i] : cuts[i + 1]] for i, split in enumerate(SPLITS)}


def standardize_with_bias(raw: np.ndarray, train_rows: torch.Tensor) -> torch.Tensor:
    """float32 features scaled by the train rows' mean and std, plus a constant-1 bias column.

    Only the train pool's statistics are used, so nothing about val / test rows leaks into training.

    Args:
        raw: [N, D] raw features.
        train_rows: indices of the train pool's rows.
    """
    x = torch.tensor(raw, dtype=torch.float64)
    train = x[train_rows]
    mean, std = train.mean(dim=0), train.std(dim=0, unbiased=False)
    # a column constant on the train pool (common in sparse svmlight data) is centered, not divided by 0
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    bias = torch.ones(x.shape[0], 1, dtype=torch.float64)
    return torch.cat([(x - mean) / std, bias], dim=1).float()


@register_family("binary_real")
class BinaryRealFamily(TaskFamily):
    """Random subsamples of one real dataset, with rows never shared across splits.

    The rows are shuffled with ``seed`` and cut 60/20/20 into train / val / test pools; features are
    standardized with the train pool's statistics and get a constant-1 bias column (so d = D + 1).
    Instance ``index`` of a split holds a random ``subsample`` fraction of that split's pool, drawn
    with the instance seed: instances of one split overlap, instances of different splits never do.

    Args:
        dataset: ``"breast_cancer"`` or the path to an svmlight/libsvm file (see
            :func:`load_binary_dataset`).
        batch_size: minibatch rows per optimizer step, clamped to an instance's row count.
        sizes: instances per split (train, val, test).
        subsample: fraction of its split's pool that one instance holds, in (0, 1].
        seed: seeds the row shuffle and the instances.

    Attributes:
        raw_features: [N, D] rows as read, before standardization (for row-identity checks).
        features: [N, D + 1] standardized float32 features with the bias column.
        labels: [N] float32 labels in {0, 1}.
        pools: split -> indices of that split's rows (into the arrays above).
    """

    name = "binary_real"

    def __init__(
        self,
        dataset: str | os.PathLike = "breast_cancer",
        batch_size: int = 64,
        sizes: tuple[int, int, int] = (20, 5, 5),
        subsample: float = 0.8,
        seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if not 0 < subsample <= 1:
            raise ValueError(
                f"subsample={subsample} must be in (0, 1]: the fraction of a split's rows per instance"
            )
        self.dataset, self.batch_size, self.subsample, self.seed = str(dataset), batch_size, subsample, seed
        self.sizes = _split_sizes(sizes)
        self.raw_features, labels = load_binary_dataset(dataset)
        self.pools = split_pools(len(labels), seed)
        self.features = standardize_with_bias(self.raw_features, self.pools["train"])
        self.labels = torch.tensor(labels, dtype=torch.float32)

    def split_size(self, split: str) -> int:
        return self.sizes[check_split(split)]

    def instance_rows(self, split: str, index: int) -> torch.Tensor:
        """Indices (into :attr:`features`) of the rows that instance ``index`` of ``split`` holds."""
        self.check_index(split, index)
        pool = self.pools[split]
        count = max(1, round(self.subsample * len(pool)))
        g = torch.Generator().manual_seed(instance_seed(self.seed, split, index))
        return pool[torch.randperm(len(pool), generator=g)[:count]]

    def instance(self, split: str, index: int) -> BinaryClassificationTask:
        rows = self.instance_rows(split, index)
        batch_size = min(self.batch_size, len(rows))  # a small pool holds fewer rows than one batch
        task = BinaryClassificationTask(self.features[rows], self.labels[rows], batch_size)
        task.family = self.name
        return task
