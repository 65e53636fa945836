"""SignHunter after a meta-learned first query: a class-conditional sign prior learned on the train split.

SignHunter (:class:`l2l.optimizers.signhunter.SignHunter`) spends its first query on s = all ones and
then flips dyadic chunks of s. This learned optimizer spends one query before that search on a learned
sign vector for the true class y, proj(eps sign(theta_y)) (theta_y = 0 counts as +1), read from a
meta-parameter theta of shape [classes, d]; then SignHunter runs unchanged, from all ones (its own start),
so a failed first query costs exactly one query. An untargeted attacker knows the true class y (it
defines the margin loss), and the perturbation has the image's dimension, so theta is tied to the image
shape it was trained on.

Why SignHunter restarts from all ones rather than from the learned signs (the ``continue`` variant,
``path#continue``): on the val images at eps 0.2, flipping chunks of the learned signs succeeded less
often by 100 queries than restarting from all ones, which also beat plain SignHunter there; the images
the prior misses are the hard ones, and its signs are a worse basin for the dyadic flips there
(docs/results/linf_l2_attacks.md has the val table).

**Meta-training** (``python -m train.learned --optimizer signhunter_prior --task mnist_attack_linf
--steps 1``): the first query is the only differentiable part of the search, so a trajectory is one step,
x_1 = proj(eps tanh(theta_y)), and the meta-loss is the task's loss there, the margin clipped at 0 (the
success threshold): each train image of class y pushes theta_y until it is misclassified, then stops
pulling. That is the "t-weighted margin clipped at the success threshold" of the learned-attack issue at
T = 1; tanh relaxes the sign (its gradient at theta = 0 is 1). Validation (``--val-steps 1``) scores the
real first query, the clipped margin at proj(eps sign(theta_y)) on the val images, so the checkpoint is
chosen by what the attack does, not by the relaxed loss. Training reads the target model's gradients on
train images (the training-time gradient assumption of every learned optimizer here, papers/002
sec. 3.3); evaluation is black-box.

What theta_y is: a universal perturbation for class y (Moosavi-Dezfooli et al. 2017), signed and
class-conditional, learned from the train split's images of that class. So this optimizer's gain over
SignHunter is a data prior, not a better search; the untrained control (theta = 0, so the learned query
is all ones) is SignHunter after one extra all-ones query, which makes the comparison a clean ablation of
the learned query. Our design: no paper proposes this combination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from l2l.common.config import doc_field
from l2l.estimators import Objective
from l2l.learned.protocol import LearnedConfig, LearnedOptimizer, Project, Stage, TrainStep, register_learned
from l2l.optimizers.core.base import ZOState
from l2l.optimizers.core.search_attack import AttackGeometry, Search
from l2l.optimizers.signhunter import SignHunter
from l2l.tasks.base import Task


class SignPrior(nn.Module):
    """theta [classes, dim]: row y scores the start sign of every coordinate for true class y.

    Args:
        classes: the number of classes of the attacked model.
        dim: the perturbation's dimension (the image's numel).
    """

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(classes, dim))  # zero: all ones, SignHunter's own start

    def signs(self, label: int) -> torch.Tensor:
        """The first query's sign vector for class ``label``: sign(theta_label), with 0 read as +1."""
        return torch.where(self.theta[label] < 0, -1.0, 1.0)

    def relaxed(self, label: int, eps: float) -> torch.Tensor:
        """The differentiable start eps * tanh(theta_label) that meta-training optimizes."""
        return eps * torch.tanh(self.theta[label])


@dataclass
class SignHunterPriorConfig(LearnedConfig):
    """Meta-train the class-conditional start of SignHunter (one stage; trajectories of one step)."""

    steps: int = doc_field(1, "must be 1: only the first query (the start) is differentiable")
    unroll: int = doc_field(1, "must be 1 (one step per trajectory)")
    meta_batch: int = doc_field(20, "K: train images per meta-iteration (mean clipped margin, one Adam step)")
    classes: int = doc_field(10, "classes of the attacked model (rows of theta)")
    dim: int = doc_field(784, "the perturbation's dimension (28 x 28 for MNIST)")
    meta_lr: float = doc_field(0.05, "Adam learning rate of theta")

    def __post_init__(self) -> None:
        if self.steps != 1 or self.unroll != 1:
            raise ValueError(
                f"steps={self.steps} and unroll={self.unroll} must both be 1 for signhunter_prior (only the "
                "start is differentiable); pass --steps 1, and --val-steps N to validate N-query searches"
            )
        if self.classes < 2 or self.dim < 1 or not self.meta_lr > 0:
            raise ValueError(
                f"classes={self.classes} must be >= 2, dim={self.dim} >= 1 and meta_lr={self.meta_lr!r} > 0"
            )
        super().__post_init__()

    def new_optimizer(self) -> SignHunterPrior:
        """The optimizer this config describes, with theta = 0 (its first query: all ones)."""
        return SignHunterPrior(classes=self.classes, dim=self.dim)


@register_learned("signhunter_prior")
@dataclass
class SignHunterPrior(SignHunter, LearnedOptimizer):
    """A learned class-conditional sign vector as the first query, then SignHunter (module docstring).

    1 query per step, as SignHunter; L-inf tasks with a true label only (a clear error otherwise).

    Args:
        classes: rows of theta (the attacked model's classes).
        dim: the perturbation's dimension theta was trained for.
        restart: after the learned query, SignHunter starts afresh from all ones (True, the default) or
            flips chunks of the learned signs (False; the ``continue`` variant, worse on val).
    """

    classes: int = 10
    dim: int = 784
    restart: bool = True

    name: ClassVar[str] = "signhunter_prior"  # not SignHunter's registry name, in messages
    title: ClassVar[str] = "SignHunter-prior"
    config_class: ClassVar[type[LearnedConfig]] = SignHunterPriorConfig
    architecture: ClassVar[tuple[str, ...]] = ("classes", "dim")
    variants: ClassVar[dict[str, dict]] = {"continue": {"restart": False}}
    shipped_files: ClassVar[dict[str, str]] = {"mnist_attack_linf": "signhunter_prior_linf.pt"}
    train_command: ClassVar[str] = (
        "python -m train.learned --optimizer <name> --task mnist_attack_linf --steps 1 --val-steps 1"
    )

    def __post_init__(self) -> None:
        if self.classes < 2 or self.dim < 1:
            raise ValueError(f"classes={self.classes} must be >= 2 and dim={self.dim} >= 1")
        self.prior = SignPrior(self.classes, self.dim)

    def modules(self) -> dict[str, nn.Module]:
        return {"prior": self.prior}

    def initial_carry(self, dim: int) -> dict[str, torch.Tensor]:
        return {}

    def stages(self, config: LearnedConfig) -> tuple[Stage, ...]:
        if not isinstance(config, SignHunterPriorConfig):
            raise TypeError(
                f"signhunter_prior trains with a SignHunterPriorConfig, not a {type(config).__name__}"
            )
        return (Stage("prior", ("prior",), config.meta_lr),)

    def _check_instance(self, dim: int, label: int | None, norm: str) -> int:
        if dim != self.dim or label is None or not 0 <= label < self.classes or norm != "linf":
            raise ValueError(
                f"signhunter_prior was trained for L-inf attacks of dimension {self.dim} on {self.classes} "
                f"classes; this task has dimension {dim}, label {label!r} and a {norm} ball (attack an "
                "mnist_attack_linf instance, or train a prior for this task: --options dim=D,classes=C)"
            )
        return label

    def instance_carry(self, task: Task) -> dict[str, torch.Tensor]:
        ball = task.ball
        norm = "none" if ball is None else ball.norm
        label = self._check_instance(task.dim, getattr(task, "label", None), norm)
        assert ball is not None
        return {"label": torch.tensor(label), "eps": torch.tensor(ball.eps)}

    def search(self, state: ZOState, geometry: AttackGeometry) -> Search:
        label = self._check_instance(geometry.dim, geometry.label, geometry.ball.norm)
        learned = self.prior.signs(label).detach()
        if not self.restart:
            yield from self.hunt(geometry, learned.clone())
            return
        yield geometry.project(geometry.ball.eps * learned)
        # its loss needs no answer: l2l.run stops on a success, and SignHunter starts afresh otherwise
        yield from super().search(state, geometry)

    def train_step(
        self, x: torch.Tensor, carry: dict, f: Objective, rng: torch.Generator, project: Project
    ) -> TrainStep:
        """The relaxed first query proj(eps tanh(theta_y)); like the search's, it ignores ``x``."""
        start = self.prior.relaxed(int(carry["label"]), float(carry["eps"]))
        return TrainStep(x=project(start.to(x.device)))
