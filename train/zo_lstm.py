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
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

import l2l
from l2l.common.config import doc_field, parse_config, parse_float_list
from l2l.common.io import save_torch_atomic, write_json_atomic
from l2l.learned.checkpoint import (
    FORMAT_VERSION,
    TRAINING_FORMAT,
    optimizer_from_checkpoint,
    read_checkpoint,
    save_zo_lstm,
)
from l2l.learned.meta import STAGES, MetaConfig, MetaTrainer, Validation, is_better, validate
from l2l.tasks.base import Task

#: optimizee steps per trajectory when --steps is none (papers/002 sec. 4: 200; 500 for binary)
DEFAULT_STEPS = {"binary_classification": 500}
#: validation horizon when --val-steps is none: the 200 steps eval.compare reports on binary (training
#: trajectories stay at the paper's 500); else the training horizon
DEFAULT_VAL_STEPS = {"binary_classification": 200}
ALPHA_GRID = "0.5,1,1.5,2,4,8"
STAGE_FILES = {"update": "stage1.pt", "query": "best.pt"}
#: config fields that may differ between a run and its --resume
RESUMABLE_CHANGES = {
    "alpha_grid",
    "resume",
    "wandb",
    "wandb_project",
    "update_iterations",
    "query_iterations",
    "threads",
}
#: the value a field had in runs saved before it existed, so that their --resume still matches
SAVED_BEFORE_FIELD = {"meta_loss_scale": "sum"}


@dataclass
class TrainConfig(MetaConfig):
    """Meta-train a ZO-LSTM on a task family's train split, selecting on its val split."""

    task: str = doc_field("mnist_attack", "task family to train on (see l2l.family_names())")
    steps: int | None = doc_field(None, "optimizee steps T per trajectory (none: 500 for binary, else 200)")
    update_iterations: int = doc_field(1000, "stage-1 meta-iterations (UpdateRNN); 0 skips the stage")
    query_iterations: int = doc_field(500, "stage-2 meta-iterations (QueryRNN, UpdateRNN frozen); 0 skips")
    train_instances: int | None = doc_field(None, "use the first N train instances (none: all)")
    val_instances: int = doc_field(10, "val instances scored at each validation")
    val_every: int = doc_field(100, "meta-iterations between validations (and saves of last.pt)")
    val_steps: int | None = doc_field(None, "steps of a validation run (none: 200 for binary, else --steps)")
    images: int = doc_field(4, "attack tasks: adversarial examples logged to wandb per validation")
    alpha_grid: str = doc_field(
        ALPHA_GRID,
        "update scales alpha tried on val after training; the best goes into best.pt ('': keep --alpha)",
    )
    init_from: str | None = doc_field(None, "start from this ZO-LSTM checkpoint's weights (none: random)")
    out: str = doc_field("results/zo_lstm/{task}", "output folder ({task} is filled in)")
    threads: int = doc_field(1, "torch CPU threads (pin it: results depend on it bit for bit)")
    wandb: Literal["online", "offline", "disabled"] = doc_field(
        "offline", "wandb mode: offline needs no account or network; online uploads"
    )
    wandb_project: str = doc_field("l2l-zo", "wandb project name")
    resume: bool = doc_field(False, "continue from <out>/last.pt (pass the same options as the first run)")

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = DEFAULT_STEPS.get(self.task, 200)
        if self.val_steps is None:
            self.val_steps = DEFAULT_VAL_STEPS.get(self.task, self.steps)
        super().__post_init__()
        for name in ("val_instances", "val_every", "val_steps", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("update_iterations", "query_iterations", "images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")

    def out_dir(self) -> Path:
        return Path(self.out.replace("{task}", self.task))

    def stages(self) -> list[tuple[str, int]]:
        """(stage, meta-iterations) in order, skipping stages with 0 iterations."""
        plan = [("update", self.update_iterations), ("query", self.query_iterations)]
        return [(stage, n) for stage, n in plan if n > 0]


def new_progress() -> dict[str, Any]:
    """What the loop tracks besides the trainer: best record per stage, all validations, the wandb run."""
    return {"best": {}, "history": [], "global_step": 0, "wandb_id": None}


def save_training_state(out: Path, cfg: TrainConfig, trainer: MetaTrainer, progress: dict) -> None:
    state = {
        "format": TRAINING_FORMAT,
        "format_version": FORMAT_VERSION,
        "version": l2l.__version__,
        "config": dataclasses.asdict(cfg),
        "trainer": trainer.state_dict(),
        "progress": progress,
    }
    save_torch_atomic(out / "last.pt", state)
    write_json_atomic(out / "history.json", progress["history"])


def load_training_state(out: Path, cfg: TrainConfig, trainer: MetaTrainer) -> dict:
    """Restore ``trainer`` from ``out/last.pt`` and return the loop's progress."""
    path = out / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no training state at {str(path)!r}; run without --resume first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise ValueError(f"{str(path)!r} is not a train.zo_lstm training state")
    saved, now = {**SAVED_BEFORE_FIELD, **state["config"]}, dataclasses.asdict(cfg)
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"--resume with different options ({diffs}); pass the options of the first run")
    trainer.load_state_dict(state["trainer"])
    return state["progress"]


def start_wandb(cfg: TrainConfig, out: Path, progress: dict) -> Any:
    """A wandb run (resumed when the training is), or None when --wandb disabled."""
    if cfg.wandb == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb  # imported here: slow, and unused when disabled

    progress["wandb_id"] = progress["wandb_id"] or uuid.uuid4().hex[:12]  # kept in last.pt for --resume
    return wandb.init(
        project=cfg.wandb_project, mode=cfg.wandb, dir=str(out), config=dataclasses.asdict(cfg),
        job_type="train_zo_lstm", id=progress["wandb_id"], resume="allow",
    )  # fmt: skip


def adversarial_images(val: Validation, tasks: list[Task], count: int) -> list[Any]:
    """wandb images of (clean | adversarial) pairs for attack tasks; [] for other tasks."""
    import wandb

    images = []
    for task, traj in list(zip(tasks, val.trajectories, strict=True))[:count]:
        if not hasattr(task, "adversarial"):
            return []
        adv = task.adversarial(traj.x.unsqueeze(0))[0]
        with torch.no_grad():
            predicted = int(task.model(adv.unsqueeze(0)).argmax(dim=1))
        pair = torch.cat([task.image, adv], dim=-1).clamp(0, 1)
        caption = f"label {task.label} -> {predicted}, loss {traj.final_loss:.3f}"
        images.append(wandb.Image(pair, caption=caption))
    return images


def log_validation(run: Any, val: Validation, record: dict, tasks: list[Task], cfg: TrainConfig) -> None:
    import wandb

    curve = val.loss_curve_mean
    name = f"{record['stage']} it {record['iteration']}"
    row = {f"val/{k}": v for k, v in record.items() if isinstance(v, int | float) and v is not None}
    row["val/loss_curve"] = wandb.plot.line_series(
        xs=[list(range(len(curve)))], ys=[curve], keys=[name], title=f"val loss curve ({name})", xname="step"
    )
    images = adversarial_images(val, tasks, cfg.images)
    if images:
        row["val/adversarial"] = images
    run.log(row, step=record["global_step"])


def evaluate(
    trainer: MetaTrainer, cfg: TrainConfig, val_tasks: list[Task], progress: dict, out: Path, run: Any
) -> dict:
    """Validate the current optimizer, keep it if it is the stage's best, and save the training state."""
    stage = trainer.stage
    assert stage is not None and cfg.val_steps is not None
    optimizer = trainer.frozen()
    val = validate(optimizer, val_tasks, cfg.val_steps, seed=cfg.seed)
    record = {"stage": stage, "iteration": trainer.iteration, "global_step": progress["global_step"]}
    record.update({k: v for k, v in val.summary().items() if k != "loss_curve_mean"})
    progress["history"].append(record)
    best = progress["best"].get(stage)
    if is_better(val.final_loss_mean, None if best is None else best["final_loss_mean"]):
        progress["best"][stage] = record
        for name in stage_files(cfg, stage):
            save_zo_lstm(
                out / name, optimizer, train_config=dataclasses.asdict(cfg), task=task_info(cfg, trainer),
                val={**val.summary(), "stage": stage, "iteration": trainer.iteration, "split": "val"},
            )  # fmt: skip
    if run is not None:
        log_validation(run, val, record, val_tasks, cfg)
    save_training_state(out, cfg, trainer, progress)
    return record


def stage_files(cfg: TrainConfig, stage: str) -> list[str]:
    """The checkpoint files a stage's best goes to: its own, and best.pt for the last stage."""
    files = [STAGE_FILES[stage]]
    if cfg.stages()[-1][0] == stage and "best.pt" not in files:
        files.append("best.pt")
    return files


def task_info(cfg: TrainConfig, trainer: MetaTrainer) -> dict:
    """What the optimizer was trained on, for its checkpoint."""
    return {
        "family": cfg.task, "split": "train", "instances": len(trainer.tasks),
        "val_instances": cfg.val_instances,
    }  # fmt: skip


def begin_stage(trainer: MetaTrainer, stage: str, out: Path) -> None:
    """Stage 2 starts from stage 1's best-on-val UpdateRNN (when stage 1 ran in this folder)."""
    if stage == "query" and (out / STAGE_FILES["update"]).is_file():
        trainer.load_networks(read_checkpoint(out / STAGE_FILES["update"]))
    trainer.begin_stage(stage)


def select_alpha(cfg: TrainConfig, out: Path, val_tasks: list[Task]) -> dict | None:
    """Choose the update scale alpha of the final ``best.pt`` on val (papers/002 sec. 4.3).

    The criterion is the meta-objective itself (eq. 4's t-weighted mean loss over the trajectory), so a
    scale that reaches low loss sooner wins over one that only ends marginally lower. The networks stay
    as trained; only the test-time scale of their output changes. Returns the val score of every alpha
    tried, or None without ``--alpha-grid``.
    """
    grid = parse_float_list(cfg.alpha_grid, "alpha_grid")
    if not grid:
        return None
    ckpt = read_checkpoint(out / "best.pt")
    trained = optimizer_from_checkpoint(ckpt)
    scores = {
        a: validate(trained.with_options(alpha=a), val_tasks, cfg.val_steps, seed=cfg.seed) for a in grid
    }
    best = min(grid, key=lambda a: scores[a].weighted_loss_mean)
    tried = {str(a): scores[a].weighted_loss_mean for a in grid}
    val = {**ckpt["val"], **scores[best].summary(), "alpha_grid": tried}
    save_zo_lstm(out / "best.pt", trained.with_options(alpha=best), train_config=ckpt["train_config"],
                 task=ckpt["task"], val=val)  # fmt: skip
    return {"alpha": best, "val_weighted_loss": tried}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(TrainConfig, argv)
    torch.set_num_threads(cfg.threads)
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    family = l2l.make_family(cfg.task)
    train_tasks = family.instances("train", limit=cfg.train_instances)
    val_tasks = family.instances("val", limit=cfg.val_instances)
    trainer = MetaTrainer(cfg, train_tasks)
    if cfg.resume:
        progress = load_training_state(out, cfg, trainer)
    else:
        progress = new_progress()
        if cfg.init_from:
            trainer.load_networks(read_checkpoint(cfg.init_from))
    run = start_wandb(cfg, out, progress)
    bar = tqdm(total=sum(n for _, n in cfg.stages()), initial=progress["global_step"], unit="meta-it")
    for stage, iterations in cfg.stages():
        if trainer.stage is not None and STAGES.index(stage) < STAGES.index(trainer.stage):
            continue  # resumed after this stage (an unfinished or extended stage continues below)
        if trainer.stage != stage:  # a fresh stage (not one resumed mid-way)
            begin_stage(trainer, stage, out)
            record = evaluate(trainer, cfg, val_tasks, progress, out, run)
            bar.set_postfix_str(f"{stage} val {record['final_loss_mean']:.4f}")
        while trainer.iteration < iterations:
            stats = trainer.meta_step()
            progress["global_step"] += 1
            bar.update(1)
            if run is not None:
                run.log({"stage": 1 + (stage == "query"), **{f"meta/{k}": v for k, v in stats.items()}},
                        step=progress["global_step"])  # fmt: skip
            if trainer.iteration % cfg.val_every == 0 or trainer.iteration == iterations:
                record = evaluate(trainer, cfg, val_tasks, progress, out, run)
                val_loss = record["final_loss_mean"]
                bar.set_postfix_str(f"{stage} meta-loss {stats['meta_loss']:.3g} val {val_loss:.4f}")
        save_training_state(out, cfg, trainer, progress)
    bar.close()
    alpha = select_alpha(cfg, out, val_tasks)
    if run is not None:
        if alpha is not None:
            run.summary["alpha"] = alpha["alpha"]
        run.finish()
    summary = {"best": progress["best"], "alpha": alpha, "out": str(out)}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
