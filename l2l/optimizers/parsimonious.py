"""Parsimonious attack (Moon, An, Song; ICML 2019): lazy-greedy set search over the L-inf ball's vertices.

Follows the paper (docs/references.md); see :class:`Parsimonious` for the choices made where it
leaves details open.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator
from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.search_attack import AttackGeometry, Search, SearchAttack

#: a block: (channel, rows, columns) of the perturbation
Block = tuple[int, slice, slice]
#: a phase of the search: yields candidates, receives losses, returns (signs, loss, whether it flipped)
Phase = Generator[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, bool]]


def block_grid(shape: tuple[int, int, int], size: int) -> list[Block]:
    """The square blocks of side ``size`` tiling each channel (edge blocks may be smaller), row-major."""
    if size < 1:
        raise ValueError(f"block size={size} must be >= 1")
    c, h, w = shape
    return [
        (ch, slice(r, min(h, r + size)), slice(q, min(w, q + size)))
        for ch in range(c)
        for r in range(0, h, size)
        for q in range(0, w, size)
    ]


def with_block(signs: torch.Tensor, block: Block, value: float) -> torch.Tensor:
    """A copy of the sign image ``signs`` [c, h, w] with ``block`` set to ``value``."""
    out = signs.clone()
    out[block] = value
    return out


def vertex(signs: torch.Tensor, geometry: AttackGeometry) -> torch.Tensor:
    """The feasible perturbation eps * signs (a vertex of the L-inf ball, clamped into the image box)."""
    return geometry.project(geometry.ball.eps * signs.flatten())


def lazy_greedy(
    signs: torch.Tensor, loss: torch.Tensor, blocks: list[Block], target: float, geometry: AttackGeometry
) -> Phase:
    """One phase: set blocks to ``target`` (+1 insertion, -1 deletion) greedily while the loss falls.

    The marginal gain of a block is loss(S) - loss(S with the block flipped), 1 query each. Every
    candidate block's gain is evaluated once; then a priority queue of gains is popped: a stale gain
    (computed before the last flip) is re-evaluated (1 query) and pushed back; a fresh one on top is
    the best (submodularity's lazy-greedy argument), so the block is flipped if its gain is positive,
    and the phase ends otherwise. A flip's new loss is the one its gain query returned (no extra query).
    """
    candidates = [b for b in blocks if not bool((signs[b] == target).all())]
    heap: list[tuple[float, int, int, torch.Tensor]] = []
    for index, block in enumerate(candidates):
        value = yield vertex(with_block(signs, block, target), geometry)
        heap.append((float(value - loss), index, 0, value))  # key: minus the gain
    heapq.heapify(heap)
    version, flipped = 0, False
    while heap:
        _, index, seen, value = heapq.heappop(heap)
        block = candidates[index]
        if seen != version:
            value = yield vertex(with_block(signs, block, target), geometry)
            heapq.heappush(heap, (float(value - loss), index, version, value))
            continue
        if not value < loss:
            break
        signs, loss, version, flipped = with_block(signs, block, target), value, version + 1, True
    return signs, loss, flipped


@register_optimizer("parsimonious")
@dataclass
class Parsimonious(SearchAttack):
    """Parsimonious attack: which square blocks sit at +eps (the rest at -eps), found by lazy greedy.

    The perturbation is always a vertex of the L-inf ball, eps * s with s in {-1, +1} per block,
    clamped into the image box. Start (the first step's query): every block at -eps (S empty, as in the
    authors' code). A pass at block size b shuffles the blocks (one block per channel and square, as
    the authors' code does), splits them into batches of ``batch_size``, and runs on each batch up to
    ``max_iters`` rounds of an insertion phase (flip blocks to +eps) then a deletion phase (flip back
    to -eps), each a lazy greedy over the batch (:func:`lazy_greedy`); rounds stop early once neither
    phase flips a block. After each full pass b halves, down to 1 pixel, where passes repeat.

    Choices where the paper is open: each phase evaluates the gains of all candidate blocks of the
    batch fresh at its start (1 query each) and re-evaluates only stale gains at the top of the queue;
    a fresh gain on top is accepted without a second query (the authors' code re-queries every popped
    block). ``state.x`` is the best vertex queried, which may be a gain query rather than the current
    set: the authors' code likewise stops as soon as any query succeeds. Queries are not batched (one
    per step; see :mod:`l2l.optimizers.core.search_attack`), which changes no decision.

    Args:
        block_size: the initial block side in pixels (halves after each pass). The paper uses 32 on
            299-px ImageNet; 4 (a 7 x 7 grid) on 28-px MNIST is the default. Tune it on val.
        batch_size: blocks per lazy-greedy batch (the paper: 64; on MNIST at size 4 a batch holds
            every block).
        max_iters: insertion-deletion rounds per batch (the authors' default: 1).
    """

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    block_size: int = 4
    batch_size: int = 64
    max_iters: int = 1

    def __post_init__(self) -> None:
        for name in ("block_size", "batch_size", "max_iters"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}={value!r} must be an int >= 1")

    def search(self, state: ZOState, geometry: AttackGeometry) -> Search:
        signs = -torch.ones(geometry.shape, device=state.rng.device)
        loss = yield vertex(signs, geometry)
        size = self.block_size
        while True:
            blocks = block_grid(geometry.shape, size)
            order = torch.randperm(len(blocks), generator=state.rng, device=state.rng.device).tolist()
            for start in range(0, len(order), self.batch_size):
                batch = [blocks[i] for i in order[start : start + self.batch_size]]
                signs, loss = yield from self.local_search(signs, loss, batch, geometry)
            size = max(1, size // 2)

    def local_search(
        self, signs: torch.Tensor, loss: torch.Tensor, batch: list[Block], geometry: AttackGeometry
    ) -> Generator[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Up to ``max_iters`` rounds of insertion then deletion over ``batch``; returns (signs, loss)."""
        for _ in range(self.max_iters):
            changed = False
            for target in (1.0, -1.0):
                signs, loss, flipped = yield from lazy_greedy(signs, loss, batch, target, geometry)
                changed = changed or flipped
            if not changed:
                break
        return signs, loss
