"""``l2l.attack``: attack a batch of images of any torch classifier, as attack libraries do.

One call runs a black-box attack on every image of a batch, in lockstep where the method allows it
(:func:`l2l.run_many`: one model forward per step for all images still running), and returns per-image
results under both query conventions of the attack tables (:func:`queries_with_checks`).

The rules a user can rely on:

- each image i is attacked with its own seed ``seed + i`` (its index in the whole batch), so the result
  of an image does not depend on ``batch_size`` or on the other images (up to float rounding: a forward
  over a different batch composition may round differently in the last bits);
- an image the model already misclassifies costs 0 queries and comes back unchanged, with success True
  (the clean prediction is the experimenter's, as the tables treat the clean image: never charged);
- an image that succeeds or spends its budget leaves the batch and spends nothing more;
- bad input (pixels outside [0, 1], a label out of the model's range, a model that returns NaN or inf
  on the clean images, an unknown method) raises a ValueError that names the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from l2l.common.device import resolve_device
from l2l.loading import load_optimizer
from l2l.optimizers import ZOOptimizer, make_optimizer, optimizer_names
from l2l.run import Trajectory
from l2l.run_many import run_many
from l2l.tasks.attack import AttackTask
from l2l.tasks.base import NORMS


@dataclass
class AttackResult:
    """Per-image results of :func:`attack` (every tensor has the batch's length B first).

    Attributes:
        adversarial: the attacked images, the input's shape: the successful adversarial image, the
            attack's last iterate where it failed, the clean image where the model was already wrong.
        success: [B] bool, whether the model misclassifies ``adversarial``.
        queries: [B] int64, the queries the attack spent (to its first success, or in all on failure;
            0 for an image that was already misclassified).
        queries_with_checks: [B] int64, the same plus the queries an attacker needs to see that an
            iterate succeeds (:func:`queries_with_checks`).
        linf: [B] the L-inf size of ``adversarial - images``.
        l2: [B] the L2 size of ``adversarial - images``.
        already_misclassified: [B] bool, images the model got wrong before the attack.
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor
    queries_with_checks: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    already_misclassified: torch.Tensor

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """The fraction of images that are misclassified after the attack."""
        return float(self.success.float().mean())


def queries_with_checks(trajectory: Trajectory, optimizer: ZOOptimizer) -> int:
    """The queries of a run counted with success checks (the attack tables' second convention).

    A real attacker must see the model's answer at an iterate to know that it succeeds. An optimizer
    whose every step queries its own iterate (``optimizer.evaluates_iterate``: forward differences, the
    search attacks) pays 1 query to check the successful x_K; any other pays 1 check per step, K in all.
    A run that never succeeds is charged its queries plus, for the latter kind, a check per step taken.

    Args:
        trajectory: the run.
        optimizer: the optimizer that made it.
    """
    if trajectory.success_query is None or trajectory.success_step is None:
        return trajectory.queries[-1] + (0 if optimizer.evaluates_iterate else trajectory.steps)
    if trajectory.success_step == 0:
        return trajectory.success_query
    return trajectory.success_query + (1 if optimizer.evaluates_iterate else trajectory.success_step)


def resolve_method(method: str | os.PathLike | ZOOptimizer, **options: object) -> ZOOptimizer:
    """An optimizer from a registered name, a checkpoint path or an optimizer instance.

    Args:
        method: ``"square"`` (any name of ``l2l.optimizer_names()``), a checkpoint file for
            ``l2l.load_optimizer``, or an object with the optimizer protocol.
        **options: the registered method's parameters (class defaults otherwise); not for the others.
    """
    if isinstance(method, str) and method in optimizer_names():
        return make_optimizer(method, **options)
    if options:
        raise ValueError(f"options {sorted(options)} apply to registered methods only, not to {method!r}")
    if isinstance(method, (str, os.PathLike)):
        if Path(method).is_file():
            return load_optimizer(method)
        raise ValueError(
            f"method={str(method)!r} is neither a registered optimizer ({', '.join(optimizer_names())}) "
            "nor an existing checkpoint file"
        )
    if callable(getattr(method, "init", None)) and callable(getattr(method, "step", None)):
        return method
    raise ValueError(f"method={method!r} must be a registered name, a checkpoint path or an optimizer")


def _check_inputs(images: torch.Tensor, labels: torch.Tensor, eps: float, norm: str, budget: int) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} must be one of {', '.join(NORMS)}")
    if not eps > 0:
        raise ValueError(f"eps={eps!r} must be > 0 (the {norm} radius on [0, 1] pixels)")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"budget={budget!r} must be an integer >= 1 (queries per image)")
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a batch [B, ...] with B >= 1; got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},), one per image; got {tuple(labels.shape)}"
        )
    lo, hi = float(images.min()), float(images.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(
            f"images must lie in [0, 1]; got values in [{lo:g}, {hi:g}] (scale pixels by 1/255?)"
        )


def _clean_predictions(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether the model gets each clean image right (uncounted); checks the labels and the outputs."""
    with torch.no_grad():
        logits = model(images)
    if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            f"the model must return logits [B, classes]; it returned shape {tuple(logits.shape)}"
        )
    bad = ~torch.isfinite(logits).all(dim=1)
    if bad.any():
        raise ValueError(
            f"the model returned NaN or inf for {int(bad.sum())} clean image(s), first at index "
            f"{int(bad.nonzero()[0])}; an attack on those outputs would be meaningless"
        )
    classes = logits.shape[1]
    out = (labels < 0) | (labels >= classes)
    if out.any():
        i = int(out.nonzero()[0])
        raise ValueError(
            f"labels[{i}]={int(labels[i])} is outside the model's {classes} classes (0..{classes - 1})"
        )
    return logits.argmax(dim=1) == labels


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str | os.PathLike | ZOOptimizer = "square",
    eps: float = 0.3,
    norm: str = "linf",
    budget: int = 10_000,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    **options: object,
) -> AttackResult:
    """Untargeted score-based black-box attack on each image: the margin loss in a norm ball.

    Each image is an :class:`~l2l.tasks.attack.AttackTask` (loss: log p_t - max_{j != t} log p_j, no
    distortion term; the ball ||delta|| <= eps intersected with the image box), attacked until it is
    misclassified or has spent ``budget`` queries. Images run ``batch_size`` at a time through
    :func:`l2l.run_many`: methods that step in lockstep (``l2l.runs_in_lockstep``) share one model
    forward per step; the others run image by image with the same results.

    Args:
        model: a torch classifier returning logits [B, classes] for images in [0, 1]; it is used in
            eval mode and never differentiated.
        images: [B, ...] the clean images (e.g. [B, 3, 224, 224]), pixels in [0, 1].
        labels: [B] their true classes.
        method: a registered name (``"square"``, ``"signhunter"``, ...), a checkpoint path, or an
            optimizer instance.
        eps: the radius of the perturbation's ``norm`` ball, on [0, 1] pixels.
        norm: ``linf`` or ``l2``.
        budget: the most queries per image.
        seed: image i's run uses ``seed + i``.
        device: where the model and images run (None: where the images are; ``cuda`` needs a GPU).
        batch_size: images per lockstep batch (None: all at once).
        **options: parameters of a registered method (its class defaults otherwise).

    Raises:
        ValueError: a bad value (named in the message).
    """
    optimizer = resolve_method(method, **options)
    labels = torch.as_tensor(labels, dtype=torch.long)
    _check_inputs(images, labels, eps, norm, budget)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1, or None for the whole batch")
    target = resolve_device(device) if device is not None else images.device
    model = model.to(target).eval()
    images, labels = images.detach().float().to(target), labels.to(target)
    correct = _clean_predictions(model, images, labels)

    adversarial = images.clone()
    queries = torch.zeros(len(images), dtype=torch.long)
    with_checks = torch.zeros(len(images), dtype=torch.long)
    success = ~correct.cpu()
    todo = correct.nonzero().flatten().tolist()
    size = batch_size or max(len(todo), 1)
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        tasks = [AttackTask(model, images[i], int(labels[i]), c=0.0, eps=eps, norm=norm) for i in chunk]
        seeds = [seed + i for i in chunk]
        runs = run_many(optimizer, tasks, steps=budget, budget=budget, seeds=seeds, stop_at_success=True)
        for i, task, run in zip(chunk, tasks, runs, strict=True):
            adversarial[i] = task.adversarial(run.x.unsqueeze(0))[0]
            success[i] = run.success_step is not None
            queries[i] = run.success_query if run.success_query is not None else run.queries[-1]
            with_checks[i] = queries_with_checks(run, optimizer)
    delta = (adversarial - images).flatten(1).double()
    return AttackResult(
        adversarial=adversarial,
        success=success,
        queries=queries,
        queries_with_checks=with_checks,
        linf=torch.linalg.vector_norm(delta, ord=float("inf"), dim=1).float().cpu(),
        l2=torch.linalg.vector_norm(delta, dim=1).float().cpu(),
        already_misclassified=~correct.cpu(),
    )
