"""Meta-train any registered learned optimizer, stage by stage; keep the best of each stage on val.

    python -m train.learned --optimizer zo_lmom --task quadratic --iterations 200
    python -m train.learned --optimizer zo_lstm --task mnist_attack --iterations 1000,500 \\
        --options q=20,update_lr=1e-3
    python -m train.learned --optimizer zo_lmom --task quadratic --iterations 200 --resume

The optimizer's own options and its meta-training procedure (the fields of its config class, listed at
the end of ``--help``) go in ``--options`` as ``key=value`` pairs. Training trajectories come from the
**train** split; every ``--val-every`` meta-iterations (and at the start and end of each stage) the
frozen optimizer runs through ``l2l.run`` on the first ``--val-instances`` **val** instances with fixed
seeds, and the best mean final loss is kept. The test split is never touched. Written to ``--out``:

- ``best.pt``: the best-on-val optimizer of the last stage (``l2l.load_optimizer("…/best.pt")``);
- ``stage<k>.pt``: the best-on-val optimizer of stage k, for every stage but the last (stage k + 1
  starts from it);
- ``last.pt``: the whole training state, for ``--resume`` (bit-for-bit continuation);
- ``history.json``: every validation; and the wandb run folder (offline by default).

**Meta-batches and families.** ``meta_batch`` (``--options meta_batch=K``; ``--meta-batch K`` in
``train.zo_lstm``) unrolls K train tasks per meta-iteration (:mod:`l2l.learned.meta` says how they are
drawn). ``--task a,b`` trains one optimizer on several families: the meta-batch mixes them round-robin
(K >= the number of families), every validation scores each family's val instances, and the selection
score is the mean over families of ``final_loss_mean / control``, where ``control`` is the family's val
final loss of the untrained control (the same options, fresh weights), measured once at the start; so
every family counts alike whatever the scale of its loss. With one family the score is the plain
``final_loss_mean``, as before.

**Parallel.** Under ``torchrun --nproc-per-node N -m train.learned ...`` or with ``--workers N`` the
meta-batch is split over the ranks and the meta-gradients all-reduced (:mod:`l2l.learned.meta`), and
every validation's runs are split over the ranks too; rank 0 writes every file and the wandb run, and
every rank reads ``last.pt`` on ``--resume`` (the output folder must be shared by the ranks). A run
resumed on another number of ranks continues the same meta-batch.

**Estimators.** ``--meta-grad tbptt`` (the default) backpropagates through windows of the
optimizer's differentiable step; ``--meta-grad es`` (antithetic ES over whole runs) and ``pes``
(persistent ES over truncations of ``--truncation`` steps) only run the optimizer through the oracle,
with ``--population`` antithetic pairs at perturbation scale ``--sigma``, on ``--meta-objective``
(final_loss, mean_log_loss, queries_to_success, success_auc, tau_s; :mod:`l2l.learned.meta_grad`).
Their population members shard over the ranks and a run resumes bit for bit on any rank count.
``--horizon`` lets an inner run go past the differentiable trajectory:

    python -m train.learned --optimizer zo_lmom --task quadratic --meta-grad es --population 8 \
        --sigma 0.01 --meta-objective final_loss
    python -m train.learned --optimizer signhunter_prior --task mnist_attack_linf --steps 1 \
        --horizon 200 --meta-grad es --meta-objective mean_log_loss

``python -m train.zo_lstm`` is the ZO-LSTM's own entry point on top of this loop (its flags, its alpha
selection on val).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

import l2l
from l2l.common import distributed
from l2l.common.cli import run_cli, user_input
from l2l.common.config import check_at_least, doc_field, parse_config, unwrap_optional
from l2l.common.device import DEVICE_HELP, resolve_device
from l2l.common.io import save_torch_atomic, write_json_atomic
from l2l.learned.checkpoint import TRAINING_PREFIX, read_checkpoint, save_learned
from l2l.learned.meta import MetaTrainer, Validation, is_better, validate
from l2l.learned.meta_grad import MetaGradConfig
from l2l.learned.protocol import UNTRAINED, LearnedConfig, LearnedOptimizer, learned_class, learned_names
from l2l.tasks.base import Task
from l2l.tasks.registry import default_steps, family_models
from l2l.tasks.zoo import surrogates_only
from l2l.tasks.zoo.registry import zoo_model, zoo_names

#: the format version of the training states (last.pt) this loop writes
TRAINING_VERSION = 1
#: the estimator fields' values in runs saved before they existed (truncated BPTT on its meta-loss)
_GRAD = MetaGradConfig()
ESTIMATOR_DEFAULTS = {
    "meta_grad": _GRAD.estimator, "population": _GRAD.population, "sigma": _GRAD.sigma,
    "truncation": _GRAD.truncation, "meta_objective": _GRAD.objective, "horizon": _GRAD.horizon,
}  # fmt: skip


@dataclass
class Job:
    """One meta-training run, as the loop needs it (built by a CLI from its config).

    Attributes:
        meta: the optimizer's config (options and procedure; ``meta.new_optimizer()`` builds it).
        task: the task family's name.
        iterations: meta-iterations per stage, by stage name (0 skips the stage).
        out: the output folder.
        record: the CLI's whole config, stored in checkpoints and compared on ``--resume``.
        training_format: the marker of this run's last.pt.
        train_instances: use the first N train instances (None: all).
        val_instances: val instances scored at each validation.
        val_every: meta-iterations between validations.
        val_steps: steps of a validation run.
        images: attack tasks: adversarial examples logged to wandb per validation.
        init_from: a checkpoint whose weights training starts from, or None.
        resume: continue from ``out/last.pt``.
        wandb: wandb mode.
        wandb_project: wandb project.
        resumable: fields of ``record`` that may differ on ``--resume``.
        saved_before: the value fields had in runs saved before they existed.
        upgrade_record: maps a saved ``record`` to today's field names (fields renamed since it was saved).
        device: where the tasks, their models and the optimizer's modules live.
        meta_grad: the meta-gradient estimator and meta-objective (default: truncated BPTT).
        family_options: options every family is built with (e.g. ``eps``).
        models: zoo models to train on, each family's instances on each of them as one group of the
            meta-batch (``None``: the family's default target alone).
    """

    meta: LearnedConfig
    task: str
    iterations: dict[str, int]
    out: Path
    record: dict
    training_format: str
    train_instances: int | None = None
    val_instances: int = 10
    val_every: int = 100
    val_steps: int = 200
    images: int = 4
    init_from: str | None = None
    resume: bool = False
    wandb: str = "offline"
    wandb_project: str = "l2l-zo"
    resumable: frozenset[str] = frozenset()
    saved_before: dict = field(default_factory=dict)
    family_options: dict = field(default_factory=dict)
    models: tuple[str | None, ...] = (None,)
    upgrade_record: Callable[[dict], dict] = dict
    device: str = "cpu"
    meta_grad: MetaGradConfig = field(default_factory=MetaGradConfig)


@dataclass
class LoopOptions:
    """The outer-loop options every meta-training CLI shares (validation, threads, wandb, resume)."""

    train_instances: int | None = doc_field(None, "use the first N train instances (none: all)")
    val_instances: int = doc_field(10, "val instances scored at each validation (at most the split's size)")
    val_every: int = doc_field(100, "meta-iterations between validations (and saves of last.pt)")
    threads: int = doc_field(1, "torch CPU threads (pin it: results depend on it bit for bit)")
    wandb: Literal["online", "offline", "disabled"] = doc_field(
        "offline", "wandb mode: offline needs no account or network; online uploads"
    )
    wandb_project: str = doc_field("l2l-zo", "wandb project name")
    resume: bool = doc_field(False, "continue from <out>/last.pt (pass the same options as the first run)")
    workers: int = doc_field(
        distributed.WORKERS_DEFAULT,
        "processes to split the meta-batch over (torch.distributed, gloo; under torchrun leave it out)",
    )
    device: str = doc_field("cpu", DEVICE_HELP + "; --resume needs the device of the first run")


@dataclass
class LearnedTrainConfig(LoopOptions):
    """Meta-train a registered learned optimizer on a task family's train split, selecting on val."""

    optimizer: str = doc_field("zo_lmom", "the learned optimizer to train (see l2l.learned.learned_names())")
    task: str = doc_field(
        "quadratic", "task family to train on, or several comma-separated (see l2l.family_names())"
    )
    options: str = doc_field(
        "", "the optimizer's options and procedure as key=value pairs, comma-separated (fields below)"
    )
    eps: float | None = doc_field(
        None, "perturbation radius the attack families are built with (none: each family's default)"
    )
    models: str | None = doc_field(
        None,
        "zoo models (l2l.tasks.zoo) to meta-train on: surrogates (every surrogate of the family's zoo) or "
        "a comma list of surrogate names; the meta-batch mixes them round-robin as it mixes --task "
        "families (none: the family's default target alone). Held-out targets are refused: they are for "
        "evaluation only",
    )
    steps: int | None = doc_field(None, "optimizee steps T per trajectory (none: the family's default_steps)")
    iterations: str = doc_field(
        "100", "meta-iterations per stage, comma-separated in stage order (one number: every stage); 0 skips"
    )
    val_steps: int | None = doc_field(None, "steps of a validation run (none: --steps)")
    images: int = doc_field(4, "attack tasks: adversarial examples logged to wandb per validation")
    init_from: str | None = doc_field(
        None, "start from this checkpoint's weights (none: random); 0 iterations everywhere: score only"
    )
    out: str = doc_field(
        "results/learned/{optimizer}/{task}", "output folder ({optimizer}, {task} filled in)"
    )
    meta_grad: str = doc_field(
        _GRAD.estimator,
        "meta-gradient estimator: tbptt (truncated BPTT through train_step), es (antithetic ES over whole "
        "runs through the oracle only) or pes (persistent ES over truncations, oracle only)",
    )
    population: int = doc_field(
        _GRAD.population, "es / pes: antithetic pairs per meta-iteration (2x inner runs)"
    )
    sigma: float = doc_field(_GRAD.sigma, "es / pes: perturbation scale of the flattened meta-parameters")
    truncation: int = doc_field(
        _GRAD.truncation, "pes: inner steps per truncation (one truncation per meta-iteration)"
    )
    horizon: int | None = doc_field(
        None,
        "es / pes: steps of an inner run (none: --steps); e.g. signhunter_prior: --steps 1 --horizon 200",
    )
    meta_objective: str = doc_field(
        _GRAD.objective,
        "what meta-training minimizes (l2l.learned.meta_grad.objectives): weighted_loss (tbptt's, "
        "differentiable), final_loss, mean_log_loss, queries_to_success, success_auc, tau_s",
    )

    def __post_init__(self) -> None:
        learned_class(self.optimizer)  # a clear KeyError listing the registered ones
        self.meta_grad_config()  # refuses a bad estimator, population, sigma, truncation or objective
        if self.steps is None:
            self.steps = family_steps(self.task)
        if self.val_steps is None:
            self.val_steps = self.horizon or self.steps
        check_loop_fields(
            self, ("val_instances", "val_every", "val_steps", "threads", "workers"), ("images",)
        )
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps={self.eps} must be > 0 (or none for each family's default)")
        self.model_names()  # refuse unknown and held-out models before anything loads

    def model_names(self) -> tuple[str | None, ...]:
        """The zoo models of ``--models`` ((None,) without it), checked to be surrogates of every family."""
        if self.models is None:
            return (None,)
        names: list[str] = []
        for family in family_names(self.task):
            dataset, names = family_models(family, self.models)
            heldout = [name for name in names if zoo_model(dataset, name).role == "heldout"]
            if heldout:
                raise ValueError(
                    f"models={self.models!r} names held-out target(s) {heldout}: they are attacked at test "
                    f"time only; meta-train on surrogates ({', '.join(zoo_names(dataset, 'surrogate'))})"
                )
        return tuple(names)

    def family_options(self) -> dict[str, float]:
        """The options every family is built with: ``eps`` when given."""
        return {} if self.eps is None else {"eps": self.eps}

    def meta_grad_config(self) -> MetaGradConfig:
        """The estimator options of ``--meta-grad``, ``--population``, ``--sigma``, ``--truncation``."""
        return MetaGradConfig(
            estimator=self.meta_grad, population=self.population, sigma=self.sigma,
            truncation=self.truncation, objective=self.meta_objective, horizon=self.horizon,
        )  # fmt: skip

    def job(self) -> Job:
        """The run this config describes."""
        cls = learned_class(self.optimizer)
        meta = cls.config_class(**{**parse_options(self.options, cls.config_class), "steps": self.steps})
        stages = [stage.name for stage in meta.new_optimizer().stages(meta)]
        assert self.val_steps is not None
        return Job(
            meta=meta, task=self.task, iterations=parse_iterations(self.iterations, stages),
            out=fill_out(self.out, optimizer=self.optimizer, task=self.task),
            record=dataclasses.asdict(self), training_format=TRAINING_PREFIX + self.optimizer,
            train_instances=self.train_instances, val_instances=self.val_instances,
            val_every=self.val_every, val_steps=self.val_steps, images=self.images,
            init_from=self.init_from, resume=self.resume, wandb=self.wandb,
            wandb_project=self.wandb_project, resumable=frozenset({"iterations", "resume", "wandb",
                                                                   "wandb_project", "threads", "workers"}),
            saved_before={"device": "cpu", "eps": None, "models": None, **ESTIMATOR_DEFAULTS},
            device=self.device, meta_grad=self.meta_grad_config(), family_options=self.family_options(),
            models=self.model_names(),
        )  # fmt: skip


def family_names(task: str) -> list[str]:
    """``"a,b"`` -> ["a", "b"]: the families of a ``--task`` value (ValueError: an empty or repeated one)."""
    names = [name.strip() for name in task.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"task={task!r} must be one family or distinct comma-separated families")
    return names


def family_steps(task: str) -> int:
    """The default trajectory length of ``task``'s families (they must agree, else ``--steps`` is needed)."""
    steps = {name: default_steps(name) for name in family_names(task)}
    if len(set(steps.values())) > 1:
        raise ValueError(f"the families' default steps differ ({steps}); give --steps")
    return next(iter(steps.values()))


def fill_out(out: str, task: str, optimizer: str = "") -> Path:
    """``out`` with ``{optimizer}`` and ``{task}`` (the families joined by ``+``) filled in."""
    return Path(out.replace("{optimizer}", optimizer).replace("{task}", "+".join(family_names(task))))


def check_loop_fields(cfg: Any, positive: tuple[str, ...], nonnegative: tuple[str, ...]) -> None:
    """Raise a clear ValueError for a field of ``positive`` below 1 or of ``nonnegative`` below 0.

    It also refuses a ``device`` this machine lacks (every loop config has the field).
    """
    resolve_device(cfg.device)
    check_at_least(cfg, positive, 1)
    check_at_least(cfg, nonnegative, 0)


def parse_options(text: str, config_class: type[LearnedConfig]) -> dict[str, Any]:
    """``"q=10,unroll=5"`` -> {"q": 10, "unroll": 5}, each value converted to its field's type.

    Raises:
        ValueError: an item without ``=``, an unknown field (the message lists them), ``steps`` (a
            flag of its own) or a value of the wrong type.
    """
    hints = typing.get_type_hints(config_class)
    fields = [f.name for f in dataclasses.fields(config_class) if f.name != "steps"]
    values: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, eq, raw = (part.strip() for part in item.partition("="))
        if not eq or key not in fields:
            raise ValueError(
                f"--options item {item!r} must be key=value with key one of {', '.join(fields)}"
                + (" (steps has its own flag, --steps)" if key == "steps" else "")
            )
        values[key] = _convert(raw, hints[key], key)
    return values


def _convert(raw: str, tp: Any, key: str) -> Any:
    tp, optional = unwrap_optional(tp)
    if optional and raw.lower() == "none":
        return None
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        if raw not in args:
            raise ValueError(f"--options {key}={raw!r} must be one of {', '.join(map(str, args))}")
        return raw
    if tp is bool:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--options {key}={raw!r} must be true or false")
        return raw.lower() in ("true", "1")
    try:
        return tp(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--options {key}={raw!r} is not a valid {getattr(tp, '__name__', tp)}") from err


def parse_iterations(text: str, stages: list[str]) -> dict[str, int]:
    """``"1000,500"`` -> {stage 1: 1000, stage 2: 500}; a single number applies to every stage."""
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError as err:
        raise ValueError(
            f"iterations={text!r} must be comma-separated whole numbers, e.g. '1000,500'"
        ) from err
    if len(counts) == 1:
        counts = counts * len(stages)
    if len(counts) != len(stages) or any(n < 0 for n in counts):
        raise ValueError(
            f"iterations={text!r} must give one count >= 0 per stage ({', '.join(stages)}), or one for all"
        )
    return dict(zip(stages, counts, strict=True))


def new_progress() -> dict[str, Any]:
    """What the loop tracks besides the trainer: best record per stage, all validations, the wandb run."""
    return {"best": {}, "history": [], "global_step": 0, "wandb_id": None, "train_s": 0.0}


def save_training_state(job: Job, trainer: MetaTrainer, progress: dict) -> None:
    """Write ``last.pt`` (for ``--resume``) and ``history.json`` (rank 0; every rank must call it)."""
    trainer_state = trainer.state_dict()  # a collective in a process group
    if not distributed.is_main():
        return
    state = {
        "format": job.training_format,
        "format_version": TRAINING_VERSION,
        "version": l2l.__version__,
        "config": job.record,
        "trainer": trainer_state,
        "progress": progress,
    }
    save_torch_atomic(job.out / "last.pt", state)
    write_json_atomic(job.out / "history.json", progress["history"])


def load_training_state(job: Job, trainer: MetaTrainer) -> dict:
    """Restore ``trainer`` from ``out/last.pt`` and return the loop's progress."""
    path = job.out / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no training state at {str(path)!r}; run without --resume first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != job.training_format:
        raise ValueError(f"{str(path)!r} is not a training state of this run ({job.training_format})")
    saved, now = {**job.saved_before, **job.upgrade_record(state["config"])}, job.record
    changed = sorted(k for k in now if k not in job.resumable and saved.get(k) != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"--resume with different options ({diffs}); pass the options of the first run")
    trainer.load_state_dict(state["trainer"])
    return state["progress"]


def start_wandb(job: Job, progress: dict) -> Any:
    """A wandb run (resumed when the training is), or None when --wandb disabled."""
    if job.wandb == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb  # imported here: slow, and unused when disabled

    progress["wandb_id"] = progress["wandb_id"] or uuid.uuid4().hex[:12]  # kept in last.pt for --resume
    return wandb.init(
        project=job.wandb_project, mode=job.wandb, dir=str(job.out), config=job.record,
        job_type=f"train_{job.meta.new_optimizer().learned_name}", id=progress["wandb_id"], resume="allow",
    )  # fmt: skip


def adversarial_images(val: Validation, tasks: list[Task], count: int) -> list[Any]:
    """wandb images of (clean | adversarial) pairs for classifier attacks; [] for other tasks."""
    import wandb

    images = []
    for task, traj in list(zip(tasks, val.trajectories, strict=True))[:count]:
        if not task.classifier_attack:
            return []
        attack: Any = task  # a classifier attack has model, image, label and adversarial (Task docs)
        adv = attack.adversarial(traj.x.unsqueeze(0))[0]
        with torch.no_grad():
            predicted = int(attack.model(adv.unsqueeze(0)).argmax(dim=1))
        pair = torch.cat([attack.image, adv], dim=-1).clamp(0, 1)
        caption = f"label {attack.label} -> {predicted}, loss {traj.final_loss:.3f}"
        images.append(wandb.Image(pair.cpu(), caption=caption))
    return images


def log_validation(
    run: Any, val: Validation, record: dict, tasks: list[Task], job: Job, prefix: str = "val"
) -> None:
    """Log one validation (numbers, the mean loss curve, attack images) to wandb, under ``prefix/``."""
    import wandb

    curve = val.loss_curve_mean
    name = f"{record['stage']} it {record['iteration']}"
    row = {f"{prefix}/{k}": v for k, v in record.items() if isinstance(v, int | float) and v is not None}
    row[f"{prefix}/loss_curve"] = wandb.plot.line_series(
        xs=[list(range(len(curve)))], ys=[curve], keys=[name], title=f"val loss curve ({name})", xname="step"
    )
    images = adversarial_images(val, tasks, job.images)
    if images:
        row[f"{prefix}/adversarial"] = images
    run.log(row, step=record["global_step"])


def evaluate(
    trainer: MetaTrainer, job: Job, val_groups: dict[str, list[Task]], progress: dict, run: Any
) -> dict:
    """Validate the current optimizer, keep it if it is the stage's best, and save the training state.

    In a process group every rank calls it: the val runs are split over the ranks, every rank gets all of
    them and keeps the same records, and rank 0 alone writes files.
    """
    stage = trainer.stage
    assert stage is not None
    optimizer = trainer.frozen()
    vals = {name: validate(optimizer, tasks, job.val_steps, seed=job.meta.seed, sharded=True)
            for name, tasks in val_groups.items()}  # fmt: skip
    # train_s (meta-step seconds so far, validation excluded) is a log for reading val curves at equal
    # wall time; it is the one field a rerun or a --resume does not reproduce
    record = {"stage": stage, "iteration": trainer.iteration, "global_step": progress["global_step"],
              "train_s": round(progress.get("train_s", 0.0), 3)}  # fmt: skip
    record.update(validation_numbers(vals, progress.get("control")))
    progress["history"].append(record)
    best = progress["best"].get(stage)
    if is_better(score_of(record), None if best is None else score_of(best)):
        progress["best"][stage] = record
        summary = next(iter(vals.values())).summary() if len(vals) == 1 else record
        for name in stage_files(job, trainer.stage_names(), stage) if distributed.is_main() else ():
            save_learned(
                job.out / name, optimizer, train_config=job.record, task=task_info(job, trainer),
                val={**summary, "stage": stage, "iteration": trainer.iteration, "split": "val"},
            )  # fmt: skip
    if run is not None:
        for name, val in vals.items():
            numbers = record if len(vals) == 1 else {**record, **record["families"][name]}
            prefix = "val" if len(vals) == 1 else f"val/{name}"
            log_validation(run, val, numbers, val_groups[name], job, prefix)
    save_training_state(job, trainer, progress)
    return record


def validation_numbers(vals: dict[str, Validation], control: dict[str, float] | None) -> dict:
    """A validation's record entries: one family's summary, or the score and every family's summary.

    Args:
        vals: each family's validation.
        control: each family's untrained-control val final loss (needed for several families).
    """
    summaries = {name: {k: v for k, v in val.summary().items() if k != "loss_curve_mean"}
                 for name, val in vals.items()}  # fmt: skip
    if len(vals) == 1:
        return next(iter(summaries.values()))
    assert control is not None
    ratios = [vals[name].final_loss_mean / control[name] for name in vals]
    return {"score": sum(ratios) / len(ratios), "families": summaries}


def score_of(record: dict) -> float:
    """The selection score of a validation record (lower is better)."""
    return record["score"] if "score" in record else record["final_loss_mean"]


def control_scores(optimizer: LearnedOptimizer, val_groups: dict[str, list[Task]], job: Job) -> dict:
    """Each family's val final loss of the untrained control, the unit of the several-family score."""
    control = optimizer.make_variant(UNTRAINED)
    scores = {name: validate(control, tasks, job.val_steps, seed=job.meta.seed, sharded=True).final_loss_mean
              for name, tasks in val_groups.items()}  # fmt: skip
    bad = {name: score for name, score in scores.items() if not score > 0}
    if bad:
        raise ValueError(
            f"the untrained control's val final loss is {bad}, not > 0, so it cannot be the unit of the "
            "several-family score; train on these families separately"
        )
    return scores


def load_tasks(job: Job) -> tuple[dict[str, list[Task]], dict[str, list[Task]]]:
    """The train and val instances of each family of ``job.task`` on each of ``job.models``, by group
    name: the family's, or ``family@model`` with ``--models``."""
    train_groups, val_groups = {}, {}
    with user_input():  # a task or an instance count the family cannot give is the command line's error
        for name in family_names(job.task):
            for model in job.models:
                options = job.family_options | ({} if model is None else {"model": model})
                family = l2l.make_family(name, device=job.device, **options)
                group = name if model is None else f"{name}@{model}"
                train_groups[group] = family.instances("train", limit=job.train_instances)
                limit = min(job.val_instances, family.split_size("val"))
                val_groups[group] = family.instances("val", limit=limit)
    return train_groups, val_groups


def stage_file(stages: list[str], stage: str) -> str:
    """The checkpoint of a stage's best: ``stage<k>.pt``, or ``best.pt`` for the last declared stage."""
    k = stages.index(stage) + 1
    return "best.pt" if k == len(stages) else f"stage{k}.pt"


def stage_files(job: Job, stages: list[str], stage: str) -> list[str]:
    """The files a stage's best goes to: its own, and best.pt when it is the last stage that runs."""
    files = [stage_file(stages, stage)]
    ran = [s for s in stages if job.iterations[s] > 0]
    if ran and ran[-1] == stage and "best.pt" not in files:
        files.append("best.pt")
    return files


def task_info(job: Job, trainer: MetaTrainer) -> dict:
    """What the optimizer was trained on, for its checkpoint."""
    return {
        "family": job.task, "split": "train", "instances": len(trainer.tasks),
        "val_instances": job.val_instances, "family_options": job.family_options,
        "models": None if job.models == (None,) else list(job.models),
    }  # fmt: skip


def begin_stage(trainer: MetaTrainer, job: Job, stage: str) -> None:
    """A stage after the first starts from the previous stage's best-on-val weights (if saved here)."""
    stages = trainer.stage_names()
    k = stages.index(stage)
    previous = job.out / stage_file(stages, stages[k - 1]) if k > 0 else None
    if previous is not None and previous.is_file():
        trainer.load_weights(read_checkpoint(previous))
    trainer.begin_stage(stage)


def train(job: Job) -> dict:
    """Run ``job`` (or continue it with ``job.resume``); returns the best record of each stage and ``out``."""
    job.out.mkdir(parents=True, exist_ok=True)
    train_groups, val_groups = load_tasks(job)
    with user_input():  # too small a meta-batch for the families is the command line's error
        trainer = MetaTrainer(
            job.meta,
            train_groups if len(train_groups) > 1 else next(iter(train_groups.values())),
            job.meta_grad,
        )
    if job.resume:
        progress = load_training_state(job, trainer)
    else:
        progress = new_progress()
        if job.init_from:
            trainer.load_weights(read_checkpoint(job.init_from))
    if len(val_groups) > 1 and "control" not in progress:
        progress["control"] = control_scores(trainer.optimizer, val_groups, job)
    run = start_wandb(job, progress) if distributed.is_main() else None
    stages = trainer.stage_names()
    plan = [(stage, job.iterations[stage]) for stage in stages if job.iterations[stage] > 0]
    bar = tqdm(total=sum(n for _, n in plan), initial=progress["global_step"], unit="meta-it",
               disable=not distributed.is_main())  # fmt: skip
    if not plan and job.init_from:  # no stage runs: score the given weights (a transfer study), save them
        trainer.begin_stage(stages[-1])
        evaluate(trainer, job, val_groups, progress, run)
    for stage, iterations in plan:
        if trainer.stage is not None and stages.index(stage) < stages.index(trainer.stage):
            continue  # resumed after this stage (an unfinished or extended stage continues below)
        if trainer.stage != stage:  # a fresh stage (not one resumed mid-way)
            begin_stage(trainer, job, stage)
            record = evaluate(trainer, job, val_groups, progress, run)
            bar.set_postfix_str(f"{stage} val {score_of(record):.4f}")
        while trainer.iteration < iterations:
            started = time.perf_counter()
            stats = trainer.meta_step()
            progress["train_s"] = progress.get("train_s", 0.0) + time.perf_counter() - started
            progress["global_step"] += 1
            bar.update(1)
            if run is not None:
                run.log({"stage": 1 + stages.index(stage), **{f"meta/{k}": v for k, v in stats.items()}},
                        step=progress["global_step"])  # fmt: skip
            if trainer.iteration % job.val_every == 0 or trainer.iteration == iterations:
                record = evaluate(trainer, job, val_groups, progress, run)
                val_loss = score_of(record)
                bar.set_postfix_str(f"{stage} meta-loss {stats['meta_loss']:.3g} val {val_loss:.4f}")
        save_training_state(job, trainer, progress)
    bar.close()
    return {"best": progress["best"], "out": str(job.out), "run": run, "val_groups": val_groups}


def options_help() -> str:
    """The ``--options`` fields of every registered learned optimizer, for ``--help``."""
    lines = ["options of each learned optimizer (--options key=value,...; steps has its own flag):"]
    for name in learned_names():
        cls, defaults = learned_class(name), learned_class(name).config_class()
        stages = ", ".join(stage.name for stage in defaults.new_optimizer().stages(defaults))
        lines.append(f"  {name} ({cls.config_class.__name__}; stages: {stages}):")
        for f in dataclasses.fields(cls.config_class):
            if f.name != "steps":
                lines.append(f"    {f.name} = {f.default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)


def finish(result: dict, extra: dict | None = None, wandb_summary: dict | None = None) -> dict:
    """Close the wandb run (with ``wandb_summary``), print the summary (with ``extra``) as JSON, return it."""
    run = result.pop("run")
    result.pop("val_groups")
    summary = {**result, **(extra or {})}
    if run is not None:
        for key, value in (wandb_summary or {}).items():
            run.summary[key] = value
        run.finish()
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict:
    """``python -m train.learned``: parse the command line, train, print the summary as JSON."""
    cfg = parse_config(LearnedTrainConfig, argv, epilog=options_help())
    with user_input():  # a bad worker count is the command line's error
        distributed.check_workers(cfg.workers)
    with surrogates_only():  # meta-training never sees a held-out target model (spawned ranks inherit it)
        return distributed.launch(_train_rank, cfg, cfg.workers)


def _train_rank(cfg: LearnedTrainConfig) -> dict:
    """One rank's ``python -m train.learned`` (all of it without a process group)."""
    torch.set_num_threads(cfg.threads)
    with user_input():  # a bad optimizer, task or option is the command line's error
        job = cfg.job()
    return finish(train(job))


if __name__ == "__main__":
    run_cli(main)
