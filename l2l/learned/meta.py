"""Meta-training of the ZO-LSTM by truncated backpropagation through time (papers/002 sec. 3.2-3.3).

Two stages, for stability (sec. 3.3): stage ``update`` trains the UpdateRNN with standard Gaussian
query directions; stage ``query`` freezes it and trains the QueryRNN, whose covariance every training
step then samples along (the Bernoulli mix with the identity is a test-time device).

The meta-loss of one trajectory is eq. 4, ``sum_t w_t f(theta_t) + lambda ||Sigma_t - I||^2`` with
``w_t = t`` (t counts steps from the start of the trajectory, across truncations), where f is the
task's full objective (what trajectories report), differentiated by autograd or by eq. 5 (see
:mod:`l2l.learned.optimizee_grad`). By default (``meta_loss_scale="mean"``) the whole sum is divided by
the constant ``W = sum_{t<=T} t``, which turns it into the t-weighted mean loss that validation reports
and leaves its minimizers alone. The division matters because of the clipping: summed, MNIST
meta-gradients reach 6e4 and 30-80% of their elements are clipped, so the clipped Adam step degenerates
to a sign step; averaged, clipping to [-1, 1] only trims rare spikes. ``"sum"`` keeps the undivided
loss of the first shipped runs.

A trajectory of ``steps`` steps is cut into windows of ``unroll`` steps; each window is one
meta-iteration: backpropagate its loss, clip the meta-gradient elementwise, take an Adam step, and
detach the iterate and the recurrent state before the next window. What the unroll detaches inside a
step is documented in :meth:`l2l.learned.zo_lstm.ZOLSTM.advance`.

Library code: nothing here prints; ``python -m train.zo_lstm`` drives it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from l2l.common.config import doc_field
from l2l.estimators import check_mu, check_q
from l2l.learned.networks import SIGMA_NORMS, sigma_penalty
from l2l.learned.optimizee_grad import OPTIMIZEE_GRADS, optimizee_objective
from l2l.learned.zo_lstm import ZOLSTM
from l2l.optimizers.base import ZOOptimizer
from l2l.run import Trajectory, run
from l2l.tasks.base import Task

STAGES = ("update", "query")
#: how eq. 4 is scaled: divided by sum_t t (``mean``) or as written (``sum``)
META_LOSS_SCALES = ("mean", "sum")
#: the options each stage trains (and validates and saves) the optimizer with
STAGE_OPTIONS = {"update": {"directions": "gaussian"}, "query": {"directions": "query"}}
#: validation runs use seeds far from eval.compare's and eval.tune's
VAL_SEED_OFFSET = 2_000_003


@dataclass
class MetaConfig:
    """The optimizer and the meta-training procedure (papers/002 sec. 3-4; official-code defaults)."""

    q: int = doc_field(20, "query directions per optimizee step (a step costs q + 1 queries)")
    mu: float = doc_field(1e-4, "finite-difference smoothing radius of the ZO estimate")
    hidden: int = doc_field(10, "LSTM hidden units of the UpdateRNN and the QueryRNN")
    alpha: float = doc_field(1.0, "update scale: x <- x + alpha * UpdateRNN(g)")
    query_prob: float = doc_field(
        0.5, "P: chance that a test-time step samples along the QueryRNN covariance (training: always)"
    )
    sigma_norm: Literal["trace", "frobenius"] = doc_field(
        "trace",
        "Sigma normalization: trace (E||u||^2 = d, paper's intent) or frobenius (||Sigma||_F = ||I||_F)",
    )
    steps: int = doc_field(200, "optimizee steps T per training trajectory")
    unroll: int = doc_field(20, "steps per truncated-BPTT window; one window is one meta-iteration")
    reg_lambda: float = doc_field(0.005, "lambda of the ||Sigma_t - I||^2 term of the meta-loss")
    update_lr: float = doc_field(1e-3, "Adam learning rate of stage 1 (UpdateRNN)")
    query_lr: float = doc_field(5e-3, "Adam learning rate of stage 2 (QueryRNN)")
    clip: float = doc_field(1.0, "meta-gradients are clipped elementwise to [-clip, clip]")
    meta_loss_scale: Literal["mean", "sum"] = doc_field(
        "mean",
        "mean: divide eq. 4 by sum_t t (a t-weighted mean loss, so clipping only trims spikes); "
        "sum: eq. 4 as written (most meta-gradient elements then exceed the clip)",
    )
    trajectories: int = doc_field(1, "optimizee trajectories unrolled per meta-iteration (losses averaged)")
    optimizee_grad: Literal["autograd", "zo-coordinate"] = doc_field(
        "autograd",
        "optimizee gradient for BPTT: autograd through the task's torch loss, or zo-coordinate "
        "(eq. 5, 2d evaluations per use)",
    )
    coord_mu: float = doc_field(1e-4, "smoothing radius of the eq.-5 estimator (zo-coordinate only)")
    seed: int = doc_field(0, "seed of the initial weights, the instance order and the query directions")

    def __post_init__(self) -> None:
        check_q(self.q)
        check_mu(self.mu)
        check_mu(self.coord_mu)
        for name in ("hidden", "steps", "unroll", "trajectories"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("alpha", "update_lr", "query_lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if self.reg_lambda < 0 or not 0 <= self.query_prob <= 1:
            raise ValueError(
                f"reg_lambda={self.reg_lambda!r} must be >= 0 and query_prob={self.query_prob!r} in [0, 1]"
            )
        if self.meta_loss_scale not in META_LOSS_SCALES:
            raise ValueError(
                f"meta_loss_scale={self.meta_loss_scale!r} must be one of {', '.join(META_LOSS_SCALES)}"
            )
        if self.sigma_norm not in SIGMA_NORMS or self.optimizee_grad not in OPTIMIZEE_GRADS:
            raise ValueError(
                f"sigma_norm={self.sigma_norm!r} must be one of {SIGMA_NORMS} and "
                f"optimizee_grad={self.optimizee_grad!r} one of {OPTIMIZEE_GRADS}"
            )

    def loss_divisor(self) -> float:
        """What eq. 4 is divided by: sum_{t=1}^T t for ``mean``, 1 for ``sum``."""
        return self.steps * (self.steps + 1) / 2 if self.meta_loss_scale == "mean" else 1.0

    def new_optimizer(self) -> ZOLSTM:
        """The ZOLSTM this config describes, with random initial weights from ``seed``."""
        return ZOLSTM(
            q=self.q, mu=self.mu, query_prob=self.query_prob, alpha=self.alpha,
            sigma_norm=self.sigma_norm, hidden=self.hidden, init_seed=self.seed,
        )  # fmt: skip


def derived_seed(seed: int, what: str, index: int = 0) -> int:
    """A 32-bit seed for stream ``what`` number ``index`` of a meta-training run."""
    return zlib.crc32(f"zo_lstm/{seed}/{what}/{index}".encode())


@dataclass
class Unroll:
    """One optimizee trajectory in progress.

    Attributes:
        task_index: which training task it optimizes.
        x: the current iterate (detached between windows).
        carry: the optimizer's recurrent state (LSTM states, previous estimate and update).
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
        return {
            "task_index": self.task_index, "x": self.x.detach(), "step": self.step,
            "carry": {k: v.detach() for k, v in self.carry.items()},
            "rng": self.rng.get_state(), "batch_rng": self.batch_rng.get_state(),
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict) -> Unroll:
        rng, batch_rng = torch.Generator(), torch.Generator()
        rng.set_state(state["rng"])
        batch_rng.set_state(state["batch_rng"])
        return cls(state["task_index"], state["x"], dict(state["carry"]), rng, batch_rng, state["step"])


class MetaTrainer:
    """Meta-trains a ZOLSTM's networks on training tasks, one stage at a time.

    Call :meth:`begin_stage`, then :meth:`meta_step` once per meta-iteration; :meth:`frozen` is the
    optimizer as trained so far (for ``l2l.run``); :meth:`state_dict` / :meth:`load_state_dict` resume
    bit for bit.

    Args:
        config: the optimizer options and the procedure.
        tasks: the training instances (each new trajectory picks one at random).
    """

    def __init__(self, config: MetaConfig, tasks: Sequence[Task]):
        if not tasks:
            raise ValueError("MetaTrainer needs at least one training task")
        self.config, self.tasks = config, list(tasks)
        self.optimizer = config.new_optimizer()
        self.sampler = torch.Generator().manual_seed(derived_seed(config.seed, "instances"))
        self.stage: str | None = None
        self.iteration = 0  # meta-iterations done in the current stage
        self.started = 0  # trajectories started, over all stages
        self.unrolls: list[Unroll] = []
        self.meta_opt: torch.optim.Adam | None = None
        self._view = self.optimizer

    def begin_stage(self, stage: str) -> None:
        """Start ``stage`` (``update`` or ``query``): fresh Adam state and fresh trajectories."""
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r} must be one of {', '.join(STAGES)}")
        trained, frozen = (
            (self.optimizer.update_net, self.optimizer.query_net)
            if stage == "update"
            else (self.optimizer.query_net, self.optimizer.update_net)
        )
        frozen.requires_grad_(False).zero_grad(set_to_none=True)  # no stale gradients from a past stage
        trained.requires_grad_(True)
        lr = self.config.update_lr if stage == "update" else self.config.query_lr
        self.meta_opt = torch.optim.Adam(trained.parameters(), lr=lr)
        self.stage, self.iteration = stage, 0
        self._view = self.optimizer.with_options(**STAGE_OPTIONS[stage])  # shares the networks
        self.unrolls = [self._new_unroll() for _ in range(self.config.trajectories)]

    def load_networks(self, ckpt: dict) -> None:
        """Copy the weights of a checkpoint dict (``update_rnn``, ``query_rnn``) into the networks."""
        self.optimizer.update_net.load_state_dict(ckpt["update_rnn"])
        self.optimizer.query_net.load_state_dict(ckpt["query_rnn"])

    def frozen(self) -> ZOLSTM:
        """An independent, gradient-free copy of the optimizer as the current stage trains it."""
        optimizer = self.optimizer.frozen_copy(**STAGE_OPTIONS[self.stage or "update"])
        for net in (optimizer.update_net, optimizer.query_net):
            net.eval().requires_grad_(False)
        return optimizer

    def _new_unroll(self) -> Unroll:
        index = int(torch.randint(len(self.tasks), (), generator=self.sampler))
        task, k = self.tasks[index], self.started
        self.started += 1
        x = task.project(task.x0())  # where l2l.run starts, too
        return Unroll(
            task_index=index,
            x=x,
            carry=self.optimizer.initial_carry(x.shape[0]),
            rng=torch.Generator().manual_seed(derived_seed(self.config.seed, "directions", k)),
            batch_rng=torch.Generator().manual_seed(derived_seed(self.config.seed, "batches", k)),
        )

    def meta_step(self) -> dict[str, float]:
        """One meta-iteration: a window of ``unroll`` steps on each trajectory, then one Adam step.

        Returns:
            ``meta_loss`` (mean window loss, scaled by ``meta_loss_scale``), ``reg`` (its lambda-term),
            ``loss`` (mean full-objective loss at the window's end), and ``trajectory_step`` (step
            reached by the first trajectory).
        """
        if self.stage is None or self.meta_opt is None:
            raise RuntimeError("call begin_stage('update') or begin_stage('query') before meta_step")
        self.meta_opt.zero_grad(set_to_none=True)
        totals = {"meta_loss": 0.0, "reg": 0.0, "loss": 0.0}
        n = len(self.unrolls)
        for unroll in self.unrolls:
            loss, reg, final = self._unroll_window(unroll)
            (loss / n).backward()  # one trajectory at a time: its graph is freed before the next
            for key, value in zip(totals, (float(loss.detach()), float(reg), final), strict=True):
                totals[key] += value / n
        trajectory_step = self.unrolls[0].step
        self._clip_and_step()
        self.unrolls = [self._continue(u) for u in self.unrolls]
        self.iteration += 1
        return {**totals, "trajectory_step": float(trajectory_step)}

    def _unroll_window(self, unroll: Unroll) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The meta-loss of the next window of ``unroll``: sum_t t f(theta_t) + lambda ||Sigma_t - I||^2."""
        cfg, task = self.config, self.tasks[unroll.task_index]
        view = self._view
        full = optimizee_objective(task, None, cfg.optimizee_grad, cfg.coord_mu)
        loss, reg = torch.zeros(()), torch.zeros(())
        for _ in range(min(cfg.unroll, cfg.steps - unroll.step)):
            batch = task.sample_batch(unroll.batch_rng)
            f = optimizee_objective(task, batch, cfg.optimizee_grad, cfg.coord_mu)
            out = view.advance(unroll.x, unroll.carry, f, unroll.rng, use_query=True, project=task.project)
            unroll.x, unroll.step = out.x, unroll.step + 1
            value = full(out.x.unsqueeze(0))[0]
            loss = loss + unroll.step * value
            if out.std is not None:
                reg = reg + cfg.reg_lambda * sigma_penalty(out.std)
        if not torch.isfinite(loss + reg):
            raise FloatingPointError(
                f"the meta-loss became {float(loss + reg)} in stage {self.stage!r}, meta-iteration "
                f"{self.iteration}, trajectory step {unroll.step}; lower the meta learning rate or alpha"
            )
        divisor = cfg.loss_divisor()
        return (loss + reg) / divisor, reg.detach() / divisor, float(value.detach())

    def _clip_and_step(self) -> None:
        assert self.meta_opt is not None
        for group in self.meta_opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.clamp_(-self.config.clip, self.config.clip)
        self.meta_opt.step()

    def _continue(self, unroll: Unroll) -> Unroll:
        """Truncate a trajectory, or replace it by a new one once it has taken all its steps."""
        if unroll.step >= self.config.steps:
            return self._new_unroll()
        unroll.truncate()
        return unroll

    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit (plain dicts, tensors and numbers)."""
        return {
            "stage": self.stage,
            "iteration": self.iteration,
            "started": self.started,
            "sampler": self.sampler.get_state(),
            "update_rnn": self.optimizer.update_net.state_dict(),
            "query_rnn": self.optimizer.query_net.state_dict(),
            "meta_opt": None if self.meta_opt is None else self.meta_opt.state_dict(),
            "unrolls": [u.state_dict() for u in self.unrolls],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (of a trainer built with the same config and tasks)."""
        self.load_networks(state)
        if state["stage"] is not None:
            self.begin_stage(state["stage"])
            assert self.meta_opt is not None
            self.meta_opt.load_state_dict(state["meta_opt"])
        self.unrolls = [Unroll.from_state_dict(u) for u in state["unrolls"]]
        self.stage, self.iteration, self.started = state["stage"], state["iteration"], state["started"]
        self.sampler.set_state(state["sampler"])


@dataclass
class Validation:
    """How a frozen optimizer did on validation instances.

    Attributes:
        final_loss_mean: mean final full-objective loss (the model-selection score).
        final_loss_std: its standard deviation over runs.
        weighted_loss_mean: mean of sum_t t f(theta_t) / sum_t t (the meta-loss's f part, normalized).
        success_rate: fraction of runs that ever succeeded, or None when the task defines no success.
        loss_curve_mean: mean loss per step, starting with f(x0).
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


def validate(optimizer: ZOOptimizer, tasks: Sequence[Task], steps: int, seed: int = 0) -> Validation:
    """Run ``optimizer`` with ``l2l.run`` (the evaluation code path) on each task, with fixed seeds."""
    if not tasks:
        raise ValueError("validate needs at least one task")
    trajs = [run(optimizer, task, steps=steps, seed=val_seed(seed, i)) for i, task in enumerate(tasks)]
    curves = torch.tensor([t.losses for t in trajs], dtype=torch.float64)
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
