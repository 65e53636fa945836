"""Shared machinery of the score-based search attacks (Square, SignHunter, Parsimonious).

These attacks propose one candidate perturbation at a time, query its loss, and decide from that loss
what to propose next. Each method writes its search as a generator (:meth:`SearchAttack.search`) that
yields a feasible candidate and receives its loss; :meth:`SearchAttack.step` spends exactly one query:
it queries the pending candidate, keeps the best perturbation queried so far in ``state.x`` (its loss
in ``state.slots["loss"]``) and asks the search for the next candidate. So every step costs 1 query,
the first step's query is the method's start point (``init`` cannot see the task), and ``l2l.run``
sees a success at the very query that produced it. The papers batch queries for GPU throughput; one
query per step changes no decision of the search, only when the budget binds (exactly, here).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.optimizers.core.surrogates import task_zoo
from l2l.oracle import Oracle
from l2l.tasks.base import NORMS, NormBall

#: a search: yields feasible candidates [d], receives each one's loss (a 0-d tensor)
Search = Generator[torch.Tensor, torch.Tensor, None]


@dataclass(frozen=True)
class AttackGeometry:
    """The public facts of an attack task that a search may use (never its loss).

    Attributes:
        shape: (channels, height, width) of the perturbed image.
        ball: the norm ball of the perturbation.
        project: the task's projection onto the ball and the image box (free).
        label: the true class of an untargeted classifier attack (the attacker knows it: it defines the
            margin loss), or None for a task without one (e.g. the order attack).
        image: the clean image the perturbation is added to (the attacker holds it), or None.
        zoo: the data set whose target-model zoo the task's family attacks (its surrogates are what a
            surrogate-based attack may carry), or None.
        target_model: the attacked model's zoo name (a surrogate-based attack leaves it out of its
            ensemble), or None.
    """

    shape: tuple[int, int, int]
    ball: NormBall
    project: Callable[[torch.Tensor], torch.Tensor]
    label: int | None = None
    image: torch.Tensor | None = None
    zoo: str | None = None
    target_model: str | None = None

    @property
    def dim(self) -> int:
        c, h, w = self.shape
        return c * h * w


def random_signs(shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
    """Independent uniform {-1, +1} entries of ``shape`` drawn from ``rng``."""
    return torch.randint(0, 2, shape, generator=rng, device=rng.device).float() * 2 - 1


def random_position(extent: int, side: int, rng: torch.Generator) -> int:
    """A uniform start in 0 .. extent - side for a window of ``side`` pixels along an axis."""
    return int(torch.randint(0, extent - side + 1, (1,), generator=rng, device=rng.device))


def check_norm(norm: str | None) -> None:
    """``norm`` must be None (follow the task's ball) or one of :data:`l2l.tasks.base.NORMS`."""
    if norm is not None and norm not in NORMS:
        raise ValueError(
            f"norm={norm!r} must be one of {', '.join(NORMS)}, or None to follow the task's ball"
        )


class SearchAttack(ZOOptimizer):
    """A score-based attack that queries one candidate per step and keeps the best one queried.

    Subclasses implement :meth:`search`. ``state.x`` is always the best perturbation queried so far
    (the attack's answer), starting from the clean image x0 = 0 until the first query.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"ball", "image"})
    #: the ball norms the method can search
    norms: ClassVar[tuple[str, ...]] = NORMS

    @abc.abstractmethod
    def search(self, state: ZOState, geometry: AttackGeometry) -> Search:
        """The method's search: yield feasible candidates, receive their losses (``state.rng`` draws)."""

    def requested_norm(self) -> str | None:
        """The norm the configuration asks for (None: whatever the task's ball says)."""
        return None

    def geometry(self, oracle: Oracle) -> AttackGeometry:
        """The task's image shape, ball and projection, checked against what this method searches."""
        task, label = oracle.task, self.name or type(self).__name__
        ball, shape = task.ball, task.image_shape
        if ball is None or shape is None:
            raise ValueError(
                f"{label} needs a task with a norm ball and an image shape (e.g. mnist_attack_linf)"
            )
        if ball.norm not in self.norms:
            raise ValueError(
                f"{label} searches {' or '.join(self.norms)} balls only, but the task's ball is "
                f"{ball.norm} (eps {ball.eps}); attack an L-inf task such as mnist_attack_linf"
            )
        wanted = self.requested_norm()
        if wanted is not None and wanted != ball.norm:
            raise ValueError(
                f"{label} has norm={wanted!r} but the task's ball is {ball.norm} (eps {ball.eps}); pass "
                f"norm={ball.norm!r}, or norm=None to follow the task"
            )
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise ValueError(f"{label} needs a (channels, height, width) image; the task's shape is {shape}")
        c, h, w = (int(s) for s in shape)
        label, image = getattr(task, "label", None), getattr(task, "image", None)
        label = None if label is None else int(label)
        target = getattr(task, "model_name", None)
        return AttackGeometry((c, h, w), ball, oracle.project, label, image, task_zoo(task), target)

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        rows, plan = self.propose(state, oracle)
        return self.conclude(state, oracle(rows), plan, oracle)

    @property
    def lockstep(self) -> bool:
        """True unless a subclass writes its own :meth:`step`: the step is :meth:`propose` (the pending
        candidate) then :meth:`conclude` (keep the best, send the loss to the search), so B runs on one
        model share one forward per step in ``l2l.run_many``."""
        return type(self).step is SearchAttack.step

    def propose(self, state: ZOState, oracle: Oracle) -> tuple[torch.Tensor, None]:
        """The pending candidate as one row [1, d]; the first call starts the search (no query)."""
        if "search" not in state.slots:
            state.slots["search"] = self.search(state, self.geometry(oracle))
            state.slots["candidate"] = next(state.slots["search"])
        return state.slots["candidate"].unsqueeze(0), None

    def conclude(self, state: ZOState, values: torch.Tensor, plan: None, oracle: Oracle) -> ZOState:
        """Keep the candidate if its loss ``values[0]`` is the best so far; the search proposes the next."""
        candidate, loss = state.slots["candidate"], values[0]
        best = state.slots.get("loss")
        if best is None or loss < best:
            state.x, state.slots["loss"] = candidate, loss
        state.slots["candidate"] = state.slots["search"].send(loss)
        state.step += 1
        return state

    def queries_per_step(self, dim: int) -> int:
        return 1

    @property
    def evaluates_iterate(self) -> bool:
        """True: the iterate is always a queried candidate, so its success is already observed.

        ``state.x`` is the best candidate queried so far, and the query that produced it returned its
        scores, so the attacker sees x_K succeed with no extra query. The attack table's "with checks"
        convention then charges 1 check query for x_K, one more than such an attacker needs (it is
        never K, the charge for methods that never query their own iterates).
        """
        return True

    def config(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]
