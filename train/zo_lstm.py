"""Meta-train the ZO-LSTM of papers/002: stage 1 the UpdateRNN, stage 2 the QueryRNN; keep the best on val.

    python -m train.zo_lstm --task mnist_attack                # T = 200 steps, unrolled 20
    python -m train.zo_lstm --task binary_classification       # T = 500 steps
    python -m train.zo_lstm --task mnist_attack --resume       # continue from <out>/last.pt

Training trajectories come from the **train** split; every ``--val-every`` meta-iterations (and at the
start and end of each stage) the frozen optimizer runs through ``l2l.run`` on the first
``--val-instances`` **val** instances with fixed seeds, and the best mean final loss is kept. The test
split is never touched. Written to ``--out``:

- ``best.pt``: the best-on-val optimizer of the last stage (``l2l.load_optimizer("…/best.pt")``);
- ``stage1.pt``: the best-on-val optimizer of stage 1 (Gaussian queries), where stage 2 starts from;
- ``last.pt``: the whole training state, for ``--resume`` (bit-for-bit continuation);
- ``history.json``: every validation; and the wandb run folder (offline by default).

``--meta-batch K`` unrolls K train tasks per meta-iteration; ``--task a,b`` trains across families;
``torchrun --nproc-per-node N -m train.zo_lstm ...`` (or ``--workers N``) splits the meta-batch over N
processes (all three: :mod:`train.learned`).

The loop is the generic one of ``python -m train.learned`` (:func:`train.learned.train`); this entry
point keeps the ZO-LSTM's flags, its validation horizon on binary and its choice of alpha on val.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from l2l.common import distributed
from l2l.common.cli import run_cli, user_input
from l2l.common.config import doc_field, parse_config, parse_float_list
from l2l.learned.checkpoint import TRAINING_FORMAT, optimizer_from_checkpoint, read_checkpoint, save_zo_lstm
from l2l.learned.meta import validate
from l2l.learned.zo_lstm import ZOLSTMConfig, upgrade_options
from l2l.tasks.base import Task
from l2l.tasks.zoo import surrogates_only
from train.learned import Job, LoopOptions, check_loop_fields, family_steps, fill_out, finish, train

#: validation horizon when --val-steps is none: the 200 steps eval.compare reports on binary (training
#: trajectories stay at the family's 500); else the training horizon
DEFAULT_VAL_STEPS = {"binary_classification": 200}
ALPHA_GRID = "0.5,1,1.5,2,4,8"
#: config fields that may differ between a run and its --resume
RESUMABLE_CHANGES = {
    "alpha_grid",
    "resume",
    "wandb",
    "wandb_project",
    "update_iterations",
    "query_iterations",
    "threads",
    "workers",
}
#: the value a field had in runs saved before it existed, so that their --resume still matches
SAVED_BEFORE_FIELD = {
    "meta_loss_scale": "sum",
    "meta_batch": 1,
    "device": "cpu",
    "input_scale": 1.0,
    "input_norm": "none",
    "update": "rnn",
    "base_delta": None,
    "base_beta1": None,
    "base_beta2": None,
    "directions": "query",
    "trend_strength": None,
    "trend_decay": None,
}


@dataclass
class TrainConfig(LoopOptions, ZOLSTMConfig):
    """Meta-train a ZO-LSTM on a task family's train split, selecting on its val split."""

    task: str = doc_field(
        "mnist_attack", "task family to train on, or several comma-separated (see l2l.family_names())"
    )
    steps: int | None = doc_field(
        None, "optimizee steps T per trajectory (none: the family's default_steps: 500 for binary, else 200)"
    )
    update_iterations: int = doc_field(1000, "stage-1 meta-iterations (UpdateRNN); 0 skips the stage")
    query_iterations: int = doc_field(500, "stage-2 meta-iterations (QueryRNN, UpdateRNN frozen); 0 skips")
    val_steps: int | None = doc_field(None, "steps of a validation run (none: 200 for binary, else --steps)")
    images: int = doc_field(4, "attack tasks: adversarial examples logged to wandb per validation")
    alpha_grid: str = doc_field(
        ALPHA_GRID,
        "update scales alpha tried on val after training; the best goes into best.pt ('': keep --alpha)",
    )
    init_from: str | None = doc_field(
        None,
        "start from this ZO-LSTM checkpoint's weights (none: random); with both stages at 0 iterations, "
        "only score them on val and choose alpha (a transfer study)",
    )
    out: str = doc_field("results/zo_lstm/{task}", "output folder ({task} is filled in)")

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = family_steps(self.task)
        if self.val_steps is None:
            self.val_steps = DEFAULT_VAL_STEPS.get(self.task, self.steps)
        super().__post_init__()
        unset = [name for name in self.tuned_sources() if getattr(self, name) is None]
        unset = [f"--{name.replace('_', '-')}" for name in unset]
        if "," in self.task and unset:
            raise ValueError(
                f"--update {self.update} --directions {self.directions} over several families "
                f"({self.task}) needs explicit {', '.join(unset)}: each family has its own tuned baselines"
            )
        if self.directions == "trend" and self.query_iterations > 0:
            raise ValueError(
                f"--directions trend has no QueryRNN to train, but query_iterations={self.query_iterations}; "
                "pass --query-iterations 0"
            )
        self.fill_base(self.task)
        check_loop_fields(
            self, ("val_instances", "val_every", "val_steps", "threads", "workers"),
            ("update_iterations", "query_iterations", "images"),
        )  # fmt: skip

    def out_dir(self) -> Path:
        """The output folder, with the task filled in."""
        return fill_out(self.out, task=self.task)

    def job(self) -> Job:
        """The generic loop's run: this config is the trainer's config, too."""
        assert self.val_steps is not None
        return Job(
            meta=self, task=self.task, out=self.out_dir(), record=dataclasses.asdict(self),
            iterations={"update": self.update_iterations, "query": self.query_iterations},
            training_format=TRAINING_FORMAT, train_instances=self.train_instances,
            val_instances=self.val_instances, val_every=self.val_every, val_steps=self.val_steps,
            images=self.images, init_from=self.init_from, resume=self.resume, wandb=self.wandb,
            wandb_project=self.wandb_project, resumable=frozenset(RESUMABLE_CHANGES),
            saved_before=SAVED_BEFORE_FIELD, upgrade_record=upgrade_options, device=self.device,
        )  # fmt: skip


def select_alpha(cfg: TrainConfig, out: Path, val_groups: dict[str, list[Task]]) -> dict | None:
    """Choose the update scale alpha of the final ``best.pt`` on val (papers/002 sec. 4.3).

    The criterion is the meta-objective itself (eq. 4's t-weighted mean loss over the trajectory), so a
    scale that reaches low loss sooner wins over one that only ends marginally lower. The networks stay
    as trained; only the test-time scale of their output changes. Over several families an alpha scores
    the mean over families of its weighted loss divided by that family's mean over the grid, so every
    family counts alike whatever its loss scale. In a process group every rank calls it (the val runs are
    split over the ranks) and rank 0 rewrites ``best.pt``. Returns the val score of every alpha tried, or
    None without ``--alpha-grid``.

    Args:
        cfg: the run's config (``alpha_grid``, ``val_steps``, ``seed``).
        out: the output folder whose ``best.pt`` is rewritten with the chosen alpha.
        val_groups: each family's val instances.
    """
    grid = parse_float_list(cfg.alpha_grid, "alpha_grid")
    if not grid:
        return None
    ckpt = read_checkpoint(out / "best.pt")
    trained = optimizer_from_checkpoint(ckpt)
    assert cfg.val_steps is not None
    scores = {
        a: {name: validate(trained.with_options(alpha=a), tasks, cfg.val_steps, seed=cfg.seed, sharded=True)
            for name, tasks in val_groups.items()}
        for a in grid
    }  # fmt: skip
    units = {name: sum(scores[a][name].weighted_loss_mean for a in grid) / len(grid) for name in val_groups}
    if len(val_groups) == 1:
        units = dict.fromkeys(val_groups, 1.0)  # one family: its weighted loss itself, as always
    tried = {
        str(a): sum(scores[a][name].weighted_loss_mean / units[name] for name in val_groups) / len(val_groups)
        for a in grid
    }
    best = min(grid, key=lambda a: tried[str(a)])
    if len(val_groups) == 1:
        chosen = next(iter(scores[best].values())).summary()
    else:
        chosen = {"families": {name: val.summary() for name, val in scores[best].items()}}
    val = {**ckpt["val"], **chosen, "alpha_grid": tried}
    if distributed.is_main():
        save_zo_lstm(out / "best.pt", trained.with_options(alpha=best), train_config=ckpt["train_config"],
                     task=ckpt["task"], val=val)  # fmt: skip
    return {"alpha": best, "val_weighted_loss": tried}


def main(argv: list[str] | None = None) -> dict:
    """``python -m train.zo_lstm``: train both stages, choose alpha on val, print the summary as JSON."""
    cfg = parse_config(TrainConfig, argv)
    with user_input():  # a bad worker count is the command line's error
        distributed.check_workers(cfg.workers)
    with surrogates_only():  # meta-training never sees a held-out target model (spawned ranks inherit it)
        return distributed.launch(_train_rank, cfg, cfg.workers)


def _train_rank(cfg: TrainConfig) -> dict:
    """One rank's ``python -m train.zo_lstm`` (every rank validates its share of the alphas' val runs)."""
    torch.set_num_threads(cfg.threads)
    with user_input():  # a bad task or option is the command line's error
        job = cfg.job()
    result = train(job)
    alpha = select_alpha(cfg, job.out, result["val_groups"])
    return finish(result, {"alpha": alpha}, {"alpha": alpha["alpha"]} if alpha is not None else None)


if __name__ == "__main__":
    run_cli(main)
