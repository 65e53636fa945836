"""Antithetic full-horizon evolution strategies: whole inner runs through the oracle only.

Per meta-iteration, member i (of ``population`` pairs) draws eps_i ~ N(0, I) over the stage's trained
meta-parameters theta (flattened with ``parameters_to_vector``), a training task and a run seed, all from
its derived seed (run seed, stage, meta-iteration, i). It runs the optimizer's evaluation step
(``l2l.run``) for the whole ``steps`` with theta + sigma eps_i and with theta - sigma eps_i, under the
same run seed (common random numbers: the same minibatches, the same query draws), and scores both runs
with the meta-objective L. The estimate of grad_theta E[L(theta + sigma eps)] is

    g = sum_i (L+_i - L-_i) eps_i / (2 sigma n).

Nothing is differentiated, so the task is only queried (and optimizers whose steps have no gradient,
e.g. a sign search, train alike). Members shard round-robin over the ranks (see
:mod:`l2l.learned.meta_grad.antithetic` for why the result is the serial one bit for bit).
"""

from __future__ import annotations

import torch

from l2l.common import distributed
from l2l.learned.meta_grad.antithetic import Perturbed, member_noise
from l2l.learned.meta_grad.base import Trainer, derived_seed, register_estimator
from l2l.run import run


@register_estimator("es")
class FullES(Perturbed):
    """Antithetic ES over whole inner runs (``--meta-grad es``)."""

    def member_seed(self, trainer: Trainer, member: int) -> int:
        """Member ``member``'s seed this meta-iteration (its noise, task and run seed)."""
        return derived_seed(
            trainer.name, trainer.config.seed, f"es/{trainer.stage}/{trainer.iteration}", member
        )

    def gradient(self, trainer: Trainer) -> dict[str, float]:
        theta, n = self.theta(trainer), self.config.population
        sigma = self.config.sigma
        table = torch.zeros(n, 3, dtype=torch.float64)
        for member in distributed.shard(range(n), distributed.rank(), distributed.world_size()):
            seed = self.member_seed(trainer, member)
            eps = member_noise(seed, theta.numel())
            task = trainer.tasks[trainer.member_task(member, seed)]
            horizon = self.horizon(trainer, task)
            scores, finals = [], []
            for sign in (1.0, -1.0):
                traj = run(
                    self.load_probe(theta + sign * sigma * eps), task, steps=trainer.inner_steps(), seed=seed
                )
                scores.append(self.score(traj, horizon, task))
                finals.append(traj.final_loss)
            table[member] = torch.tensor([scores[0] - scores[1], sum(scores) / 2, sum(finals) / 2])
        stats = self.combine(
            trainer, table, lambda i: member_noise(self.member_seed(trainer, i), theta.numel())
        )
        return {**stats, "trajectory_step": float(trainer.inner_steps())}
