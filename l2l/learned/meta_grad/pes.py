"""Persistent evolution strategies over truncations (Vicol, Metz and Sohl-Dickstein, ICML 2021).

Each of ``population`` antithetic particle pairs runs one inner problem (a task and a run seed drawn per
episode) as two runs through the oracle only, + and -. Each meta-iteration advances both by one
truncation of ``truncation`` steps: a fresh eps_k ~ N(0, I) is drawn, the + run steps with
theta + sigma eps_k, the - run with theta - sigma eps_k, and the particle adds eps_k to its accumulated
perturbation xi = sum_{j<=k} eps_j of the episode. With dL the change of the meta-objective over the
truncation (see :mod:`l2l.learned.meta_grad.objectives`: the changes telescope to the whole run's value),

    g = sum_i (dL+_i - dL-_i) xi_i / (2 sigma n),

an unbiased estimate of the gradient of the whole run's smoothed objective, where truncated ES (xi = eps_k)
ignores how earlier truncations' perturbations steer the state (``tes``, :class:`TruncatedES`, for
comparison). A particle whose runs have taken all
``steps`` steps starts a new episode (new task, seed, xi = 0) after the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from l2l.common import distributed
from l2l.common.device import generator_on
from l2l.learned.meta_grad.antithetic import Perturbed, member_noise
from l2l.learned.meta_grad.base import Trainer, derived_seed, register_estimator
from l2l.learned.meta_grad.objectives import Horizon
from l2l.learned.protocol import LearnedOptimizer
from l2l.optimizers.core.base import ZOState
from l2l.oracle import Oracle
from l2l.run import Trajectory, append_record, batch_seed, check_announced
from l2l.tasks.base import Task


@dataclass
class InnerRun:
    """One inner run through the oracle, advanced a truncation at a time (``l2l.run``'s loop, resumable).

    Attributes:
        state: the optimizer's state.
        oracle: its counted oracle (no budget).
        batch_rng: its minibatch stream (seeded as ``l2l.run`` seeds it).
        traj: what the run recorded so far (f from x0 on, queries, first success).
        score: the meta-objective of the run so far (the last truncation's end).
    """

    state: ZOState
    oracle: Oracle
    batch_rng: torch.Generator
    traj: Trajectory = field(default_factory=Trajectory)
    score: float = 0.0

    @classmethod
    def start(cls, optimizer: LearnedOptimizer, task: Task, seed: int) -> InnerRun:
        """A run at x0, seeded as ``l2l.run(optimizer, task, ..., seed=seed)`` is."""
        state = optimizer.init(task.project(task.x0()), seed=seed)
        inner = cls(state, Oracle(task), torch.Generator().manual_seed(batch_seed(seed)))
        inner.record()
        return inner

    def record(self) -> None:
        """Append f at the current iterate (the experimenter's measurement, not a query)."""
        with torch.no_grad():
            loss, ok = self.oracle.task.loss_and_success(self.state.x.unsqueeze(0))
        append_record(self.traj, self.oracle.queries, loss[0], None if ok is None else ok[0])

    def advance(self, optimizer: LearnedOptimizer, steps: int) -> None:
        """Take ``steps`` optimizer steps through the oracle."""
        task = self.oracle.task
        for _ in range(steps):
            cost, spent = optimizer.next_step_queries(self.state, task.dim), self.oracle.queries
            self.oracle.set_batch(task.sample_batch(self.batch_rng))
            self.state = optimizer.step(self.state, self.oracle)
            check_announced(optimizer, cost, self.oracle.queries - spent)
            self.record()

    def state_dict(self) -> dict[str, Any]:
        """The run's values and generator states (for a resume)."""
        s = self.state
        return {
            "x": s.x, "rng": s.rng.get_state(), "step": s.step, "fx": s.fx, "slots": s.slots,
            "batch_rng": self.batch_rng.get_state(), "oracle_queries": self.oracle.queries,
            "losses": self.traj.losses, "queries": self.traj.queries, "score": self.score,
            "success_step": self.traj.success_step, "success_query": self.traj.success_query,
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], task: Task) -> InnerRun:
        """The run :meth:`state_dict` described, on ``task``'s device."""
        device = task.x0().device
        rng = generator_on(device, 0)
        rng.set_state(state["rng"])
        batch_rng = torch.Generator()
        batch_rng.set_state(state["batch_rng"])
        fx = None if state["fx"] is None else state["fx"].to(device)
        zo = ZOState(x=state["x"].to(device), rng=rng, step=state["step"], fx=fx, slots=dict(state["slots"]))
        oracle = Oracle(task)
        oracle.queries = state["oracle_queries"]
        traj = Trajectory(list(state["losses"]), list(state["queries"]), state["success_step"],
                          state["success_query"])  # fmt: skip
        return cls(zo, oracle, batch_rng, traj, state["score"])


@dataclass
class Particle:
    """One antithetic pair's episode: its task, run seed, accumulated perturbation and the two runs.

    Attributes:
        episode: episodes this particle started (its seeds' index).
        task_index: the episode's training task.
        seed: the episode's run seed.
        xi: the sum of this episode's eps so far (every rank keeps every particle's).
        runs: the + and - runs (only on the rank that owns the particle; empty elsewhere).
        step: the steps its runs have taken this episode (kept on every rank).
    """

    episode: int
    task_index: int
    seed: int
    xi: torch.Tensor
    runs: list[InnerRun] = field(default_factory=list)
    step: int = 0


@register_estimator("pes")
class PES(Perturbed):
    """Antithetic persistent ES over truncations of ``truncation`` steps (``--meta-grad pes``)."""

    particles: list[Particle] = []  # noqa: RUF012 - replaced per stage, never mutated in place

    def begin_stage(self, trainer: Trainer) -> None:
        super().begin_stage(trainer)
        self.dim = self.theta(trainer).numel()
        self.particles = [self.new_particle(trainer, i, 0) for i in range(self.config.population)]

    def mine(self) -> list[int]:
        """This rank's particles (round-robin)."""
        return distributed.shard(range(self.config.population), distributed.rank(), distributed.world_size())

    def new_particle(self, trainer: Trainer, member: int, episode: int) -> Particle:
        """Particle ``member``'s episode ``episode`` (task, seed from run seed, stage, member, episode)."""
        seed = derived_seed(trainer.name, trainer.config.seed, f"pes/{trainer.stage}/{member}", episode)
        particle = Particle(
            episode, trainer.member_task(member, seed), seed, torch.zeros(self.dim, dtype=torch.float64)
        )
        if member in self.mine():
            task = trainer.tasks[particle.task_index]
            particle.runs = [InnerRun.start(self.probe, task, seed) for _ in range(2)]
            for inner in particle.runs:
                inner.score = self.score(inner.traj, self.horizon(trainer, task), task)
        return particle

    def noise(self, trainer: Trainer, member: int) -> torch.Tensor:
        """Particle ``member``'s eps of this meta-iteration."""
        what = f"pes-noise/{trainer.stage}/{trainer.iteration}"
        return member_noise(derived_seed(trainer.name, trainer.config.seed, what, member), self.dim)

    #: whether a particle's direction is the episode's accumulated xi (PES) or this truncation's eps alone
    persistent: ClassVar[bool] = True

    def gradient(self, trainer: Trainer) -> dict[str, float]:
        theta, sigma, steps = self.theta(trainer), self.config.sigma, trainer.inner_steps()
        length = min(self.config.truncation, steps - self.particles[0].step)
        table = torch.zeros(len(self.particles), 3, dtype=torch.float64)
        mine = set(self.mine())
        for member, particle in enumerate(self.particles):
            eps = self.noise(trainer, member)
            particle.xi = particle.xi + eps if self.persistent else eps
            particle.step += length
            if member not in mine:
                continue
            task = trainer.tasks[particle.task_index]
            horizon: Horizon = self.horizon(trainer, task)
            changes = []
            for sign, inner in zip((1.0, -1.0), particle.runs, strict=True):
                inner.advance(self.load_probe(theta + sign * sigma * eps), length)
                score = self.score(inner.traj, horizon, task)
                changes.append(score - inner.score)
                inner.score = score
            finals = (particle.runs[0].traj.final_loss + particle.runs[1].traj.final_loss) / 2
            table[member] = torch.tensor([changes[0] - changes[1], sum(changes) / 2, finals])
        stats = self.combine(trainer, table, lambda i: self.particles[i].xi)
        return {**stats, "trajectory_step": float(self.particles[0].step)}

    def advance(self, trainer: Trainer) -> None:
        """Start a new episode for every particle whose runs took all their steps."""
        for member, particle in enumerate(self.particles):
            if particle.step >= trainer.inner_steps():
                self.particles[member] = self.new_particle(trainer, member, particle.episode + 1)

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        """Every particle (its runs gathered from the rank that owns it)."""
        mine = {i: [inner.state_dict() for inner in self.particles[i].runs] for i in self.mine()}
        runs: dict[int, list] = {}
        for part in distributed.all_gather_objects(mine):
            runs.update(part)
        return {"particles": [
            {"episode": p.episode, "task_index": p.task_index, "seed": p.seed, "xi": p.xi, "step": p.step,
             "runs": runs[i]} for i, p in enumerate(self.particles)
        ]}  # fmt: skip

    def load_state_dict(self, trainer: Trainer, state: dict[str, Any]) -> None:
        mine = set(self.mine())
        self.particles = []
        for i, saved in enumerate(state.get("particles", [])):
            task = trainer.tasks[saved["task_index"]]
            runs = [InnerRun.from_state_dict(r, task) for r in saved["runs"]] if i in mine else []
            self.particles.append(Particle(saved["episode"], saved["task_index"], saved["seed"],
                                           saved["xi"].clone(), runs, saved["step"]))  # fmt: skip


@register_estimator("tes")
class TruncatedES(PES):
    """Truncated ES (``--meta-grad tes``): PES's truncations, each estimated with its own eps only.

    It ignores how a truncation's perturbation steers the later truncations through the inner state, so
    it is biased (towards greedy, short-horizon behaviour); it is here as PES's reference.
    """

    persistent = False
