"""Meta-training of a learned optimizer: truncated BPTT (papers/002 sec. 3.2), ES or PES (meta_grad).

:class:`MetaTrainer` works over the protocol of :mod:`l2l.learned.protocol` only: the optimizer's
modules, its carry, its differentiable step, its regularizer and its stages. The ZO-LSTM
(:mod:`l2l.learned.zo_lstm`) is one implementation, ``zo_lmom`` (:mod:`l2l.learned.zo_lmom`) another.

The meta-loss of one trajectory is ``sum_t w_t f(x_t) + sum_t r_t`` with ``w_t = t`` (t counts steps
from the start of the trajectory, across truncations), f the task's full objective (what trajectories
report), differentiated by autograd or by eq. 5 (see :mod:`l2l.learned.optimizee_grad`), and r_t the
optimizer's regularizer (for the ZO-LSTM, eq. 4's ``lambda ||Sigma_t - I||^2``). By default
(``meta_loss_scale="mean"``) the whole sum is divided by the constant ``W = sum_{t<=T} t``, which turns
it into the t-weighted mean loss that validation reports and leaves its minimizers alone. The division
matters because of the clipping: summed, MNIST meta-gradients are large enough that a large share of
their elements is clipped, so the clipped Adam step degenerates to a sign step; averaged, clipping to
[-1, 1] only trims rare spikes (figures in docs/results/mnist_attack.md). ``"sum"`` keeps the
undivided loss of the first shipped runs.

A trajectory of ``steps`` steps is cut into windows of ``unroll`` steps; each window is one
meta-iteration: backpropagate its loss, clip the meta-gradient elementwise, take an Adam step on the
stage's modules, and detach the iterate and the carry before the next window. What the unroll detaches
inside a step is the optimizer's business (e.g. :meth:`l2l.learned.zo_lstm.ZOLSTM.advance`).

**Meta-batches.** A meta-iteration advances ``meta_batch * trajectories`` trajectories (the slots) by one
window each and averages their meta-losses before the one Adam step. ``trajectories`` (the older field)
already did exactly this; ``meta_batch`` (``--meta-batch K``) is the same mechanism under the issue's
name, and the two multiply, so ``meta_batch=1`` is the old procedure bit for bit. A slot keeps its
trajectory across windows (truncated BPTT); when the trajectory has taken all ``steps`` steps the slot
draws a new task, uniformly at random (with replacement) from the train instances, with the trainer's
seeded ``sampler`` generator, slots in order. Several families (``tasks`` a mapping family -> instances)
are mixed round-robin by slot: slot j always draws from family ``j mod F``, so every meta-batch holds
``K / F`` trajectories of each family (K must be at least F). The learned optimizers here are
coordinatewise, so one set of weights steps optimizees of any dimension.

**Data parallel.** Inside a process group (:mod:`l2l.common.distributed`, torchrun or ``--workers``)
rank r unrolls the slots r, r + N, ... (round-robin); every rank still draws every slot's task and seed
(cheap), so all ranks keep the same sampler and counters. The summed meta-gradients are all-reduced
(``all_reduce`` SUM of one flat tensor) before the clipping and the Adam step, so every rank applies the
same update; each slot's loss is divided by the total slot count, so the sum is the serial mean. The
floating-point sum runs in another order than the serial accumulation, so weights agree with a serial
run to rounding (about 1e-7 relative per step), not bit for bit. :meth:`MetaTrainer.state_dict` gathers
every slot's trajectory from its rank (a collective: every rank calls it), so a resume file holds the
whole meta-batch and can be resumed on any number of ranks.

**Estimators.** How a meta-iteration's gradient is estimated is a part (:mod:`l2l.learned.meta_grad`,
``MetaTrainer(config, tasks, meta_grad)``): ``tbptt`` is the procedure above (the default, unchanged);
``es`` (antithetic ES over whole runs) and ``pes`` (persistent ES over truncations; ``tes``, truncated
ES, as its biased reference) run the optimizer's evaluation step through the oracle only, on a
meta-objective measured from the runs' trajectories (:mod:`l2l.learned.meta_grad.objectives`). Their
population members, not the slots, shard over the ranks, and they equal a serial run bit for bit.
Every estimator's gradient is then clipped and applied by the stage's Adam step alike.

Library code: nothing here prints; ``python -m train.learned`` (and ``train.zo_lstm``) drive it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from l2l.common import distributed
from l2l.learned.meta_grad import MetaGradConfig, MetaGradient, estimator_class, objective_class
from l2l.learned.meta_grad.base import derived_seed, trained_parameters
from l2l.learned.meta_grad.tbptt import Unroll
from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Stage
from l2l.optimizers.core.base import ZOOptimizer
from l2l.run import Trajectory, run
from l2l.tasks.base import Task

__all__ = ["MetaTrainer", "Unroll", "Validation", "derived_seed", "is_better", "val_seed", "validate"]

#: validation runs use seeds far from eval.compare's and eval.tune's
VAL_SEED_OFFSET = 2_000_003


class MetaTrainer:
    """Meta-trains a learned optimizer's modules on training tasks, one stage at a time.

    Call :meth:`begin_stage`, then :meth:`meta_step` once per meta-iteration; :meth:`frozen` is the
    optimizer as trained so far (for ``l2l.run``); :meth:`state_dict` / :meth:`load_state_dict` resume
    bit for bit.

    Args:
        config: the optimizer's options and the procedure (``config.new_optimizer()`` builds it).
        tasks: the training instances (each new trajectory picks one at random), or a mapping family
            name -> instances to mix families round-robin over the meta-batch's slots.
        meta_grad: how meta-gradients are estimated and what they minimize (None: truncated BPTT on the
            t-weighted mean loss, the procedure of every run before the estimators existed).
    """

    def __init__(
        self,
        config: LearnedConfig,
        tasks: Sequence[Task] | Mapping[str, Sequence[Task]],
        meta_grad: MetaGradConfig | None = None,
    ):
        groups = [list(group) for group in tasks.values()] if isinstance(tasks, Mapping) else [list(tasks)]
        if not groups or not all(groups):
            raise ValueError("MetaTrainer needs at least one training task (of every family)")
        if config.slots() < len(groups):
            raise ValueError(
                f"meta_batch * trajectories = {config.slots()} trajectories cannot cover {len(groups)} "
                f"families; set meta_batch to at least {len(groups)}"
            )
        self.config, self.tasks = config, [task for group in groups for task in group]
        #: (offset into self.tasks, instance count) of each family
        self.groups = [(sum(map(len, groups[:i])), len(group)) for i, group in enumerate(groups)]
        #: this rank's slots (all of them outside a process group)
        self.mine = distributed.shard(range(config.slots()), distributed.rank(), distributed.world_size())
        # the modules live where the tasks do (every task of a trainer shares one device)
        self.optimizer: LearnedOptimizer = config.new_optimizer().to(self.tasks[0].device)
        self.name = self.optimizer.learned_name
        self.plan: dict[str, Stage] = {stage.name: stage for stage in self.optimizer.stages(config)}
        self.sampler = torch.Generator().manual_seed(derived_seed(self.name, config.seed, "instances"))
        self.stage: str | None = None
        self.iteration = 0  # meta-iterations done in the current stage
        self.started = 0  # trajectories started, over all stages
        self.unrolls: list[Unroll] = []  # tbptt's trajectories, one per slot
        self.meta_opt: torch.optim.Adam | None = None
        self.view: LearnedOptimizer = self.optimizer  # the optimizer with the stage's options
        self.meta_grad = meta_grad or MetaGradConfig()
        if self.meta_grad.objective not in self.optimizer.meta_objectives:
            raise ValueError(
                f"{self.name} does not support the meta-objective {self.meta_grad.objective!r}; it supports "
                f"{', '.join(self.optimizer.meta_objectives)}"
            )
        self.estimator: MetaGradient = estimator_class(self.meta_grad.estimator)(self.meta_grad)
        for task in self.tasks:  # e.g. queries_to_success needs tasks that define success
            objective_class(self.meta_grad.objective).check(task)

    def stage_names(self) -> list[str]:
        """The optimizer's stages, in training order."""
        return list(self.plan)

    def begin_stage(self, stage: str) -> None:
        """Start ``stage``: fresh Adam state over its modules (the others frozen) and fresh trajectories."""
        if stage not in self.plan:
            raise ValueError(f"stage={stage!r} must be one of {', '.join(self.plan)}")
        spec, modules = self.plan[stage], self.optimizer.modules()
        for name, module in modules.items():
            if name not in spec.trains:  # frozen: no stale gradients from a past stage
                module.requires_grad_(False).zero_grad(set_to_none=True)
        trained = [modules[name].requires_grad_(True) for name in spec.trains]
        params = itertools.chain.from_iterable(module.parameters() for module in trained)
        self.meta_opt = torch.optim.Adam(params, lr=spec.lr)
        self.stage, self.iteration = stage, 0
        self.view = self.optimizer.with_options(**spec.options)  # shares the modules
        self.estimator.begin_stage(self)

    def spec(self) -> Stage:
        """The current stage (the first declared one before any began)."""
        return self.plan[self.stage] if self.stage is not None else next(iter(self.plan.values()))

    def inner_steps(self) -> int:
        """Steps of an oracle-only inner run (es / pes): the estimator's horizon, else the config's steps."""
        return self.meta_grad.horizon or self.config.steps

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the current stage trains, in its modules' order (the flattening order of theta)."""
        return trained_parameters(self.optimizer.modules(), self.spec().trains)

    def load_weights(self, ckpt: dict) -> None:
        """Copy the weights of a checkpoint dict (its ``modules``) into the optimizer."""
        self.optimizer.load_modules(ckpt["modules"])

    def frozen(self) -> LearnedOptimizer:
        """An independent, gradient-free copy of the optimizer as the current stage trains it."""
        return self.optimizer.frozen_copy(**self.spec().options)

    def draw_task(self, slot: int) -> tuple[int, int]:
        """A new trajectory's task for ``slot`` (seeded sampler, slot's family) and its start count."""
        offset, count = self.groups[slot % len(self.groups)]
        index, k = offset + int(torch.randint(count, (), generator=self.sampler)), self.started
        self.started += 1
        return index, k

    def member_task(self, member: int, seed: int) -> int:
        """A population member's task: from family ``member mod F``, drawn with the member's own ``seed``.

        Unlike :meth:`draw_task` it reads no shared stream, so any rank draws any member's task alike.
        """
        offset, count = self.groups[member % len(self.groups)]
        return offset + int(torch.randint(count, (), generator=torch.Generator().manual_seed(seed)))

    def meta_step(self) -> dict[str, float]:
        """One meta-iteration: the estimator's meta-gradient, clipped elementwise, then one Adam step.

        Returns:
            ``meta_loss`` (the mean meta-objective of the step's runs: tbptt's scaled window loss),
            ``reg`` (its regularizer part), ``loss`` (mean full-objective loss at the runs' ends), and
            ``trajectory_step`` (the step the runs reached).
        """
        if self.stage is None or self.meta_opt is None:
            raise RuntimeError(f"call begin_stage (one of {', '.join(self.plan)}) before meta_step")
        self.meta_opt.zero_grad(set_to_none=True)
        stats = self.estimator.gradient(self)
        self._clip_and_step()
        self.estimator.advance(self)
        self.iteration += 1
        return stats

    def _clip_and_step(self) -> None:
        assert self.meta_opt is not None
        for group in self.meta_opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.clamp_(-self.config.clip, self.config.clip)
        self.meta_opt.step()

    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit (plain dicts, tensors and numbers).

        In a process group this is a collective (every rank must call it): each slot's trajectory comes
        from the rank that unrolls it.
        """
        return {
            "stage": self.stage,
            "iteration": self.iteration,
            "started": self.started,
            "sampler": self.sampler.get_state(),
            "modules": {name: module.state_dict() for name, module in self.optimizer.modules().items()},
            "meta_opt": None if self.meta_opt is None else self.meta_opt.state_dict(),
            **self.estimator.state_dict(self),  # tbptt: "unrolls", as before the estimators existed
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (of a trainer built with the same config and tasks)."""
        # resume files written before the protocol held the modules at the top level, by name
        self.optimizer.load_modules(state.get("modules") or state)
        if state["stage"] is not None:
            self.begin_stage(state["stage"])
            assert self.meta_opt is not None
            self.meta_opt.load_state_dict(state["meta_opt"])
        self.estimator.load_state_dict(self, state)
        self.stage, self.iteration, self.started = state["stage"], state["iteration"], state["started"]
        self.sampler.set_state(state["sampler"])


@dataclass
class Validation:
    """How a frozen optimizer did on validation instances.

    Attributes:
        final_loss_mean: mean final full-objective loss (the model-selection score); on tasks that
            report the best iterate seen (``Task.reports_best_seen``), the mean lowest loss of a run.
        final_loss_std: its standard deviation over runs.
        weighted_loss_mean: mean of sum_t t f(theta_t) / sum_t t (the meta-loss's f part, normalized;
            on tasks that report the best iterate seen, f(theta_t) is the best loss up to step t).
        success_rate: fraction of runs that ever succeeded, or None when the task defines no success.
        loss_curve_mean: mean loss per step, starting with f(x0) (best so far, on those tasks).
        trajectories: the runs, one per instance.
    """

    final_loss_mean: float
    final_loss_std: float
    weighted_loss_mean: float
    success_rate: float | None
    loss_curve_mean: list[float]
    trajectories: list[Trajectory] = field(repr=False)

    def summary(self) -> dict:
        """The JSON-friendly numbers (everything but the trajectories)."""
        return {k: v for k, v in self.__dict__.items() if k != "trajectories"}


def val_seed(seed: int, index: int) -> int:
    """The seed of the validation run on instance ``index``."""
    return VAL_SEED_OFFSET + seed + 1000 * index


def validate(
    optimizer: ZOOptimizer, tasks: Sequence[Task], steps: int, seed: int = 0, sharded: bool = False
) -> Validation:
    """Run ``optimizer`` with ``l2l.run`` (the evaluation code path) on each task, with fixed seeds.

    Args:
        optimizer: the (frozen) optimizer to score.
        tasks: the validation instances.
        steps: steps per run.
        seed: the runs' seeds are :func:`val_seed` of it.
        sharded: in a process group, split the runs round-robin over the ranks
            (:func:`l2l.common.distributed.sharded_map`; every rank must call, and every rank gets the
            whole validation, equal to the serial one bit for bit since every run has its own seed).
    """
    if not tasks:
        raise ValueError("validate needs at least one task")
    indices = list(range(len(tasks)))
    one = lambda i: run(optimizer, tasks[i], steps=steps, seed=val_seed(seed, i))  # noqa: E731
    trajs = distributed.sharded_map(one, indices) if sharded else [one(i) for i in indices]
    curves = torch.tensor([t.losses for t in trajs], dtype=torch.float64)
    if tasks[0].reports_best_seen:  # the order attack: what a run reports at step t is its best so far
        curves = curves.cummin(dim=1).values
    weights = torch.arange(1, curves.shape[1], dtype=torch.float64)
    weighted = (curves[:, 1:] * weights).sum(dim=1) / weights.sum() if steps > 0 else curves[:, 0]
    finals = curves[:, -1]
    has_success = tasks[0].success(tasks[0].x0().unsqueeze(0)) is not None
    return Validation(
        final_loss_mean=float(finals.mean()),
        final_loss_std=float(finals.std(unbiased=False)),
        weighted_loss_mean=float(weighted.mean()),
        success_rate=(sum(t.success_step is not None for t in trajs) / len(trajs) if has_success else None),
        loss_curve_mean=[float(v) for v in curves.mean(dim=0)],
        trajectories=trajs,
    )


def is_better(score: float, best: float | None) -> bool:
    """Whether a validation ``score`` (lower is better, NaN never) beats the ``best`` so far."""
    return math.isfinite(score) and (best is None or score < best)
