"""What ES and PES share: perturbed copies of the optimizer, per-member seeds, oracle-only scoring and
the antithetic combination of the members' loss differences (one all-reduce per meta-iteration).

Every random choice of a population member (its noise, its task, its run's seed) comes from a seed
derived from (run seed, stage, meta-iteration or episode, member index), never from the rank, and the
ranks all-reduce only the members' scalar loss differences (each entry written by one rank, zeros
elsewhere, so the sum is exact); every rank then regenerates all members' noise and sums the estimate
in member order. So a sharded meta-step equals the serial one bit for bit, on any number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from l2l.common import distributed
from l2l.learned.meta_grad.base import MetaGradient, Trainer, set_gradient, trained_parameters
from l2l.learned.meta_grad.objectives import Horizon, objective_class
from l2l.learned.protocol import LearnedOptimizer
from l2l.run import Trajectory
from l2l.tasks.base import Task


def member_noise(seed: int, dim: int) -> torch.Tensor:
    """A member's standard normal perturbation direction eps [dim] (float64, on the CPU).

    Args:
        seed: the member's derived seed.
        dim: the number of trained meta-parameters.
    """
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def antithetic_gradient(
    diffs: Sequence[float], directions: Sequence[torch.Tensor], sigma: float
) -> torch.Tensor:
    """sum_i (L+_i - L-_i) d_i / (2 sigma n): the antithetic ES (or, with accumulated d_i, PES) estimate.

    Args:
        diffs: each member's L(theta + sigma d_i) - L(theta - sigma d_i) (PES: summed over its run's
            truncations' loss changes of this truncation).
        directions: each member's direction (ES: eps_i; PES: the sum of its run's eps so far).
        sigma: the perturbation scale.
    """
    total = torch.zeros_like(directions[0])
    for diff, direction in zip(diffs, directions, strict=True):  # member order: the same sum on any rank
        total += diff * direction
    return total / (2 * sigma * len(diffs))


def reduce_members(values: torch.Tensor) -> torch.Tensor:
    """Sum a [members, k] table over the ranks (each row filled by its member's rank, zeros elsewhere).

    Args:
        values: this rank's rows filled in, the others zero (float64).
    """
    return distributed.all_reduce_sum(values)


class Perturbed(MetaGradient):
    """The part of ES and PES that runs perturbed optimizers through the oracle only."""

    def begin_stage(self, trainer: Trainer) -> None:
        self.probe: LearnedOptimizer = trainer.frozen()  # its trained parameters are overwritten per run
        self.probe_params = trained_parameters(self.probe.modules(), trainer.spec().trains)

    def theta(self, trainer: Trainer) -> torch.Tensor:
        """The trained meta-parameters flattened (``parameters_to_vector``, float64)."""
        return nn.utils.parameters_to_vector(trainer.trained_parameters()).detach().double()

    def load_probe(self, theta: torch.Tensor) -> LearnedOptimizer:
        """The probe with meta-parameters ``theta`` (written in place) (a gradient-free optimizer)."""
        params = self.probe_params
        nn.utils.vector_to_parameters(theta.to(params[0].dtype).to(params[0].device), params)
        return self.probe

    def horizon(self, trainer: Trainer, task: Task) -> Horizon:
        """The whole run's steps and its query budget (steps times the optimizer's queries per step)."""
        steps = trainer.inner_steps()
        return Horizon(steps=steps, budget=steps * self.probe.queries_per_step(task.dim))

    def score(self, traj: Trajectory, horizon: Horizon, task: Task) -> float:
        """The meta-objective of a (prefix of a) run; best-so-far losses on best-seen tasks."""
        losses = traj.losses
        if task.reports_best_seen:
            losses = torch.tensor(losses, dtype=torch.float64).cummin(dim=0).values.tolist()
        return objective_class(self.config.objective).value(losses, traj.queries, traj.success_query, horizon)

    def combine(
        self, trainer: Trainer, table: torch.Tensor, directions: Callable[[int], torch.Tensor]
    ) -> dict[str, float]:
        """All-reduce the members' [L+ - L-, (L+ + L-) / 2, final loss] rows, set the estimate as ``.grad``.

        Args:
            trainer: the trainer (its trained parameters get the gradient).
            table: [population, 3] float64, this rank's members' rows filled in.
            directions: member index -> its direction (computed alike on every rank).
        """
        table = reduce_members(table)
        if not torch.isfinite(table).all():
            raise FloatingPointError(
                f"a perturbed run's meta-objective was not finite in stage {trainer.stage!r}, meta-iteration "
                f"{trainer.iteration}; lower --sigma or the update scale"
            )
        diffs = table[:, 0].tolist()
        grad = antithetic_gradient(diffs, [directions(i) for i in range(len(diffs))], self.config.sigma)
        set_gradient(trainer.trained_parameters(), grad)
        mean = table.mean(dim=0).tolist()
        return {"meta_loss": mean[1], "reg": 0.0, "loss": mean[2]}
