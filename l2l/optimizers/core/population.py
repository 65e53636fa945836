"""Shared machinery of the batch (population) searches of papers/004: Beta-Attack and PSO.

Each step proposes a batch of H feasible perturbations, queries them all (H queries) and updates the
method's search state from their losses. The first step also queries the start point x0 (the clean
query, as papers/004's Rand starts from its score), so it costs H + 1. ``state.x`` is always the best
sample seen, papers/004's answer, with its loss in ``state.slots["loss"]``.
"""

from __future__ import annotations

import abc
from dataclasses import asdict
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.optimizers.core.search_attack import AttackGeometry, SearchAttack
from l2l.oracle import Oracle


class PopulationSearch(ZOOptimizer):
    """Propose H perturbations per step, query them, keep the best sample seen.

    Subclasses set :meth:`population` and implement :meth:`sample` and :meth:`observe`. A step is
    :meth:`propose` then :meth:`conclude`, so ``l2l.run_many`` runs B searches in lockstep.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"ball", "image"})
    norms: ClassVar[tuple[str, ...]] = ("linf",)

    @abc.abstractmethod
    def population(self) -> int:
        """H, the perturbations queried per step."""

    @abc.abstractmethod
    def sample(self, state: ZOState, geometry: AttackGeometry) -> torch.Tensor:
        """The next H feasible perturbations [H, d] (``state.rng`` draws)."""

    @abc.abstractmethod
    def observe(self, state: ZOState, X: torch.Tensor, losses: torch.Tensor) -> None:
        """Update the search state in ``state.slots`` from the proposals' losses [H]."""

    def geometry(self, oracle: Oracle) -> AttackGeometry:
        """The task's image shape, L-inf ball and projection (checked as the search attacks check them)."""
        return SearchAttack.geometry(self, oracle)  # type: ignore[arg-type]

    def requested_norm(self) -> str | None:
        return None

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        rows, samples = self.propose(state, oracle)
        return self.conclude(state, oracle(rows), samples, oracle)

    @property
    def lockstep(self) -> bool:
        """True unless a subclass writes its own :meth:`step` (see :meth:`propose`)."""
        return type(self).step is PopulationSearch.step

    def propose(self, state: ZOState, oracle: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows to query (the H samples, after x0 on the first step) and the samples themselves."""
        X = self.sample(state, self.geometry(oracle))
        return (X if state.step else torch.cat([state.x.unsqueeze(0), X])), X

    def conclude(self, state: ZOState, values: torch.Tensor, plan: torch.Tensor, oracle: Oracle) -> ZOState:
        """Keep the best row seen; the search learns from the samples' losses (``plan``: the samples)."""
        rows = plan if state.step else torch.cat([state.x.unsqueeze(0), plan])
        best = int(values.argmin())
        if "loss" not in state.slots or values[best] < state.slots["loss"]:
            state.x, state.slots["loss"] = rows[best].clone(), values[best]
        self.observe(state, plan, values[len(rows) - len(plan) :])
        state.step += 1
        return state

    def queries_per_step(self, dim: int) -> int:
        return self.population()

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        return self.population() + (0 if state.step else 1)

    @property
    def evaluates_iterate(self) -> bool:
        """True: the iterate is the best queried sample, whose answer the attacker has already seen."""
        return True

    def config(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]
