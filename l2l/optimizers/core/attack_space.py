"""ZOO's attack space (papers/001 sec. 3.2.2-3.2.4): the small variable y that ZOO optimizes.

The task's iterate is ``x = project(x_start + D(y))``, where D bilinearly upscales a small
perturbation image y (e.g. 14x14 per channel) to the task's image shape (attack-space dimension
reduction). A hierarchical schedule grows y at given steps (e.g. 7x7 -> 14x14 -> 28x28), and
importance sampling draws the coordinates to update with probabilities taken from max-pooled |y|.
With no sizes, y lives in the task's own coordinates (D is the identity), as in the paper's MNIST runs.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Size = tuple[int, int]
ImageShape = tuple[int, int, int]

#: the image shape assumed for a 784-dimensional task when none is given (one MNIST image)
MNIST_SHAPE: ImageShape = (1, 28, 28)
#: importance sampling divides each side into this many regions (papers/001 sec. 3.2.4: 8 x 8)
POOL_REGIONS = 8
#: share of uniform probability mixed into importance sampling: the paper's max-pooled |y| gives zero
#: mass to untouched regions, which would then never be updated (and sampling B distinct coordinates
#: needs at least B of them with mass)
IMPORTANCE_FLOOR = 0.01


def normalize_sizes(sizes: Sequence[Sequence[int]]) -> tuple[Size, ...]:
    """``sizes`` as a tuple of (height, width) int pairs (JSON gives lists); raises on bad entries."""
    out = []
    for size in sizes:
        pair = tuple(size)
        if len(pair) != 2 or not all(isinstance(s, int) and s >= 1 for s in pair):
            raise ValueError(
                f"attack size {size!r} must be a (height, width) pair of integers >= 1, e.g. (14, 14)"
            )
        out.append(pair)
    return tuple(out)


def check_schedule(sizes: tuple[Size, ...], grow_at: Sequence[int]) -> tuple[int, ...]:
    """Validate the hierarchical schedule: level i+1 starts at step ``grow_at[i]`` (strictly increasing)."""
    steps = tuple(grow_at)
    if len(steps) != max(len(sizes) - 1, 0):
        raise ValueError(
            f"grow_at={steps} must give one step per size after the first; attack_sizes has {len(sizes)} "
            f"sizes, so pass {max(len(sizes) - 1, 0)} steps"
        )
    if any(not isinstance(s, int) or s < 1 for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"grow_at={steps} must be strictly increasing integers >= 1")
    return steps


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of [n, C, h, w] to [n, C, *size], flattened per row to [n, C*H*W]."""
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False).flatten(1)


@dataclass(frozen=True)
class AttackSpace:
    """The map from ZOO's variable y to a task perturbation, for each level of the hierarchy.

    Attributes:
        dim: the task's dimension d.
        image_shape: (channels, height, width) with C*H*W = d, or None when d is not an image.
        sizes: (height, width) of y per level; () means y is the task's own coordinates.
        grow_at: the step at which each level after the first starts.
    """

    dim: int
    image_shape: ImageShape | None
    sizes: tuple[Size, ...]
    grow_at: tuple[int, ...]

    @classmethod
    def build(
        cls, dim: int, sizes: tuple[Size, ...], grow_at: tuple[int, ...], image_shape: Sequence[int] | None
    ) -> AttackSpace:
        """Resolve the image shape (default (1, 28, 28) when d == 784) and check it against d."""
        shape = tuple(image_shape) if image_shape is not None else (MNIST_SHAPE if dim == 784 else None)
        if shape is not None and (len(shape) != 3 or math.prod(shape) != dim):
            raise ValueError(
                f"image_shape={shape} does not fit the task: it needs 3 entries (C, H, W) whose product is "
                f"the task dimension d={dim}"
            )
        if sizes and shape is None:
            raise ValueError(
                f"attack_sizes={sizes} needs the image shape of this d={dim} task; pass "
                "image_shape=(C, H, W) (only d=784 defaults to (1, 28, 28)) or attack_sizes=() for none"
            )
        for size in sizes:
            if size[0] > shape[1] or size[1] > shape[2]:
                raise ValueError(
                    f"attack size {size} is larger than the image {shape[1:]}; it must not exceed it"
                )
        return cls(dim=dim, image_shape=shape, sizes=sizes, grow_at=grow_at)

    def level(self, step: int) -> int:
        """The hierarchy level in force at (0-based) step ``step``."""
        return bisect_right(self.grow_at, step)

    def shape(self, level: int) -> ImageShape | None:
        """y's shape (C, h, w) at ``level``, or None when y is a flat vector of the task's coordinates."""
        if not self.sizes:
            return self.image_shape
        return (self.image_shape[0], *self.sizes[level])

    def size(self, level: int) -> int:
        """Number of variables m at ``level``."""
        shape = self.shape(level)
        return self.dim if shape is None else math.prod(shape)

    def is_identity(self, level: int) -> bool:
        """Whether D is the identity at ``level`` (y then lives in the task's coordinates)."""
        return self.size(level) == self.dim

    def upscale(self, Y: torch.Tensor, level: int) -> torch.Tensor:
        """D applied to each row of ``Y`` [n, m] -> [n, d] (bilinear upscaling; linear in Y)."""
        if self.is_identity(level):
            return Y
        return resize(Y.view(Y.shape[0], *self.shape(level)), self.image_shape[1:])

    def basis(self, coords: torch.Tensor, level: int, dtype: torch.dtype) -> torch.Tensor:
        """D(e_i) for each coordinate i in ``coords``: the task-space direction of each variable [B, d]."""
        eye = torch.zeros(len(coords), self.size(level), dtype=dtype, device=coords.device)
        eye[torch.arange(len(coords), device=coords.device), coords] = 1.0
        return self.upscale(eye, level)

    def regrow(self, y: torch.Tensor, old: int, new: int) -> torch.Tensor:
        """y carried from level ``old`` to ``new`` by resizing it, as the official ZOO code does.

        The paper writes y_new = D_new^-1(D_old(y)); resizing y itself is the cheap version of that:
        exact for a constant y, close (a bilinear resampling) otherwise.
        """
        if self.shape(old) == self.shape(new):
            return y.clone()
        return resize(y.view(1, *self.shape(old)), self.sizes[new])[0]

    def importance(self, y: torch.Tensor, level: int) -> torch.Tensor | None:
        """Sampling probabilities [m] from |y| max-pooled over 8 x 8 regions per channel (sec. 3.2.4).

        None while y is all zero (sample uniformly then). Without an image shape, each coordinate is
        its own region.
        """
        magnitude = y.abs()
        if not bool((magnitude > 0).any()):
            return None
        shape = self.shape(level)
        if shape is not None:
            _, h, w = shape
            kh, kw = max(1, h // POOL_REGIONS), max(1, w // POOL_REGIONS)
            pooled = F.max_pool2d(magnitude.view(shape), (kh, kw), ceil_mode=True)
            magnitude = pooled.repeat_interleave(kh, 1).repeat_interleave(kw, 2)[:, :h, :w].flatten()
        probs = magnitude / magnitude.sum()
        return (1 - IMPORTANCE_FLOOR) * probs + IMPORTANCE_FLOOR / len(probs)
