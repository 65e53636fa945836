"""Truncated backpropagation through time (papers/002 sec. 3.2): the trainer's original estimator.

Each of the trainer's slots keeps one trajectory (:class:`Unroll`) across windows of ``unroll`` steps
of :meth:`LearnedOptimizer.train_step`; a window's meta-loss ``(sum_t t f(x_t) + sum_t r_t) / W`` is
backpropagated, slot by slot, and the iterate and the carry are detached before the next window. In a
process group rank r unrolls the slots r, r + N, ... and the summed gradients are all-reduced (see
:mod:`l2l.learned.meta` for the procedure and its rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from l2l.common import distributed
from l2l.common.device import generator_on
from l2l.learned.meta_grad.base import MetaGradient, Trainer, derived_seed, register_estimator
from l2l.learned.optimizee_grad import optimizee_objective


@dataclass
class Unroll:
    """One optimizee trajectory in progress.

    Attributes:
        task_index: which training task it optimizes.
        x: the current iterate (detached between windows).
        carry: the optimizer's recurrent state.
        rng: draws its query directions.
        batch_rng: draws its minibatches (stochastic tasks).
        step: steps taken so far.
    """

    task_index: int
    x: torch.Tensor
    carry: dict[str, torch.Tensor]
    rng: torch.Generator
    batch_rng: torch.Generator
    step: int = 0

    def truncate(self) -> None:
        """Cut the autograd graph here: the next window starts from the current values."""
        self.x = self.x.detach()
        self.carry = {k: v.detach() for k, v in self.carry.items()}

    def state_dict(self) -> dict:
        """The trajectory's values and generator states (tensors detached)."""
        return {
            "task_index": self.task_index, "x": self.x.detach(), "step": self.step,
            "carry": {k: v.detach() for k, v in self.carry.items()},
            "rng": self.rng.get_state(), "batch_rng": self.batch_rng.get_state(),
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | None = None) -> Unroll:
        """The trajectory that :meth:`state_dict` described, its tensors and direction stream on ``device``.

        Args:
            state: what :meth:`state_dict` returned (possibly loaded onto the CPU).
            device: the task's device (None: the CPU); the minibatch stream stays on the CPU, as in ``run``.
        """
        device = torch.device("cpu") if device is None else device
        rng, batch_rng = torch.Generator(device=device), torch.Generator()
        rng.set_state(state["rng"])
        batch_rng.set_state(state["batch_rng"])
        carry = {k: v.to(device) for k, v in state["carry"].items()}
        return cls(state["task_index"], state["x"].to(device), carry, rng, batch_rng, state["step"])


@register_estimator("tbptt")
class TruncatedBPTT(MetaGradient):
    """Truncated BPTT over windows of ``LearnedConfig.unroll`` steps (the trainer's ``unrolls``)."""

    differentiable = True

    def begin_stage(self, trainer: Trainer) -> None:
        trainer.unrolls = [self.new_unroll(trainer, slot) for slot in range(trainer.config.slots())]

    def new_unroll(self, trainer: Trainer, slot: int) -> Unroll:
        """A fresh trajectory for ``slot``: its task drawn by the trainer, its seeds by its start count."""
        index, k = trainer.draw_task(slot)
        task = trainer.tasks[index]
        x = task.project(task.x0())  # where l2l.run starts, too
        name, seed, optimizer = trainer.name, trainer.config.seed, trainer.optimizer
        return Unroll(
            task_index=index,
            x=x,
            carry={**optimizer.initial_carry(x.shape[0]), **optimizer.instance_carry(task)},
            rng=generator_on(x.device, derived_seed(name, seed, "directions", k)),
            batch_rng=torch.Generator().manual_seed(derived_seed(name, seed, "batches", k)),
        )

    def gradient(self, trainer: Trainer) -> dict[str, float]:
        cfg = trainer.config
        totals = {"meta_loss": 0.0, "reg": 0.0, "loss": 0.0}
        n = len(trainer.unrolls)
        for slot, unroll in enumerate(trainer.unrolls):
            if slot not in trainer.mine:  # another rank's: only its step count moves on here
                unroll.step += min(cfg.unroll, cfg.steps - unroll.step)
                continue
            loss, reg, final = self._window(trainer, unroll)
            (loss / n).backward()  # one trajectory at a time: its graph is freed before the next
            for key, value in zip(totals, (float(loss.detach()), float(reg), final), strict=True):
                totals[key] += value / n
        trajectory_step = trainer.unrolls[0].step
        if distributed.world_size() > 1:
            self._all_reduce_gradients(trainer)
            summed = distributed.all_reduce_sum(torch.tensor(list(totals.values()), dtype=torch.float64))
            totals = dict(zip(totals, summed.tolist(), strict=True))
        return {**totals, "trajectory_step": float(trajectory_step)}

    @staticmethod
    def _all_reduce_gradients(trainer: Trainer) -> None:
        """Sum the trained parameters' gradients over the ranks (one flat all_reduce).

        A rank without a gradient for a parameter adds zeros; a parameter no rank has a gradient for keeps
        ``grad = None``, as in a serial run (Adam then leaves it alone rather than stepping on momentum).
        """
        params = trainer.trained_parameters()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        present = torch.tensor([float(p.grad is not None) for p in params], dtype=grads[0].dtype)
        flat = distributed.all_reduce_sum(torch.cat([*(g.reshape(-1) for g in grads), present]))
        parts = flat.split([*(p.numel() for p in params), len(params)])
        for p, part, seen in zip(params, parts[:-1], parts[-1].tolist(), strict=True):
            p.grad = part.view_as(p).clone() if seen > 0 else None

    @staticmethod
    def _window(trainer: Trainer, unroll: Unroll) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The meta-loss of the next window of ``unroll``: sum_t t f(x_t) + sum_t r_t, scaled."""
        cfg, task = trainer.config, trainer.tasks[unroll.task_index]
        view = trainer.view
        full = optimizee_objective(task, None, cfg.optimizee_grad, cfg.coord_mu)
        loss, reg = torch.zeros((), device=unroll.x.device), torch.zeros((), device=unroll.x.device)
        for _ in range(min(cfg.unroll, cfg.steps - unroll.step)):
            batch = task.sample_batch(unroll.batch_rng)
            f = optimizee_objective(task, batch, cfg.optimizee_grad, cfg.coord_mu)
            out = view.train_step(unroll.x, unroll.carry, f, unroll.rng, task.project)
            unroll.x, unroll.step = out.x, unroll.step + 1
            value = full(out.x.unsqueeze(0))[0]
            loss = loss + unroll.step * value
            term = view.regularizer(out, cfg)
            if term is not None:
                reg = reg + term
        if not torch.isfinite(loss + reg):
            raise FloatingPointError(
                f"the meta-loss became {float(loss + reg)} in stage {trainer.stage!r}, meta-iteration "
                f"{trainer.iteration}, trajectory step {unroll.step}; lower the meta learning rate or the "
                "update scale"
            )
        divisor = cfg.loss_divisor()
        return (loss + reg) / divisor, reg.detach() / divisor, float(value.detach())

    def advance(self, trainer: Trainer) -> None:
        """Truncate every trajectory, or replace it by a new one once it has taken all its steps."""
        trainer.unrolls = [self._continue(trainer, slot, u) for slot, u in enumerate(trainer.unrolls)]

    def _continue(self, trainer: Trainer, slot: int, unroll: Unroll) -> Unroll:
        if unroll.step >= trainer.config.steps:
            return self.new_unroll(trainer, slot)
        unroll.truncate()
        return unroll

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        """Every slot's trajectory state (``unrolls``), each from the rank that owns the slot."""
        mine = {slot: trainer.unrolls[slot].state_dict() for slot in trainer.mine}
        if distributed.world_size() == 1:
            return {"unrolls": [mine[slot] for slot in range(len(trainer.unrolls))]}
        merged: dict[int, dict] = {}
        for part in distributed.all_gather_objects(mine):
            merged.update(part)
        return {"unrolls": [merged[slot] for slot in range(len(trainer.unrolls))]}

    def load_state_dict(self, trainer: Trainer, state: dict[str, Any]) -> None:
        trainer.unrolls = [Unroll.from_state_dict(u, trainer.tasks[0].device) for u in state["unrolls"]]
