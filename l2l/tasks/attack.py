"""Untargeted black-box attack on one image of any torch classifier (papers/002 app. A.1)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from l2l.tasks.base import NORMS, NormBall, Task, check_blocks, check_rows


def project_linf_box(x: torch.Tensor, image: torch.Tensor, eps: float) -> torch.Tensor:
    """The nearest perturbation to ``x`` with ||x||_inf <= eps and ``image + x`` in [0, 1] (a clamp).

    Args:
        x: perturbation(s), [d] or [B, d].
        image: the flattened clean image [d] in [0, 1].
        eps: the L-inf radius.
    """
    return torch.minimum(torch.maximum(x, (-image).clamp_min(-eps)), (1 - image).clamp_max(eps))


def class_margins(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p_t - max_{j != t} log p_j`` and ``log p_t`` of each row, t being that row's own label.

    Args:
        logits: [B, classes].
        labels: [B] true class of each row (int64).
    """
    logp = F.log_softmax(logits, dim=1)
    index = labels.unsqueeze(1)
    log_p_true = logp.gather(1, index).squeeze(1)
    others = logp.scatter(1, index, float("-inf"))
    return log_p_true - others.max(dim=1).values, log_p_true


class AttackTask(Task):
    """Find a small perturbation that changes a classifier's top class.

    The variable is the flattened perturbation delta (x0 = 0). The attacked image is
    ``clamp(image + delta, 0, 1)``, so every query stays in the valid image box, and the loss is

        max{log p_t(x) - max_{j != t} log p_j(x), -kappa} + c * ||x - image||_1

    with the L1 distortion charged on the clamped perturbation (as the official ZO-L2L code does).
    Success: the top class of x is not t.

    With ``eps``, the perturbation is also constrained to ||delta||_norm <= eps intersected with the
    image box, enforced by :meth:`project`: the L-inf ball of the ZO-NGD setting (papers/000 eq. 1), or
    the L2 ball (``norm="l2"``); use c = 0 there for the pure margin loss of papers/000 eq. 2 (which
    equals the logit margin z_t - max_j z_j, since log-softmax shifts every logit alike). A
    score-based black box also reveals log p_t(x), which :meth:`loss_and_log_likelihood` returns with
    the loss.

    Args:
        model: any torch classifier returning logits [B, classes]; it is used in eval mode.
        image: the clean image, any shape the model takes per example (e.g. [1, 28, 28]), in [0, 1].
        label: the true class t.
        c: weight of the L1 distortion.
        kappa: confidence margin (0: stop pushing once misclassified).
        eps: bound on the perturbation's ``norm``, or None for the image box alone (no projection).
        norm: ``linf`` or ``l2``: which norm ``eps`` bounds.
    """

    classifier_attack = True
    perturbs_image = True
    exact_loss_and_success = True  # loss and loss_and_success share _forward and _loss_from

    def __init__(
        self,
        model: nn.Module,
        image: torch.Tensor,
        label: int,
        c: float = 0.1,
        kappa: float = 0.0,
        eps: float | None = None,
        norm: str = "linf",
    ):
        if c < 0 or kappa < 0:
            raise ValueError(f"c={c} and kappa={kappa} must both be >= 0")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} must be one of {', '.join(NORMS)}")
        if eps is not None and not eps > 0:
            raise ValueError(f"eps={eps!r} must be > 0 (the {norm} radius), or None for no norm constraint")
        if image.min() < 0 or image.max() > 1:
            lo, hi = float(image.min()), float(image.max())
            raise ValueError(f"image values must lie in [0, 1]; got [{lo}, {hi}] (scale pixels by 1/255?)")
        self.model = model.eval()
        self.image = image.detach().float()
        self.label = int(label)
        self.c, self.kappa = float(c), float(kappa)
        self.eps = None if eps is None else float(eps)
        self.norm = norm

    @property
    def dim(self) -> int:
        return self.image.numel()

    def x0(self) -> torch.Tensor:
        return torch.zeros(self.dim, device=self.image.device)

    def adversarial(self, X: torch.Tensor) -> torch.Tensor:
        """The attacked images for perturbation rows ``X`` [B, d] -> [B, *image.shape]."""
        X = check_rows(X, self.dim)
        return (self.image.unsqueeze(0) + X.view(-1, *self.image.shape)).clamp(0.0, 1.0)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape)

    @property
    def ball(self) -> NormBall | None:
        return None if self.eps is None else NormBall(self.norm, self.eps)  # type: ignore[arg-type]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Move the perturbation into the norm ball and the image box (identity without eps).

        L-inf: the exact projection, a clamp. L2: scale onto the ball, then clamp into the box. The box
        contains 0, so the clamp only shrinks coordinates and the result stays in the ball (feasible,
        though not always the nearest feasible point).
        """
        if self.eps is None:
            return x
        flat = self.image.flatten()
        if self.norm == "l2":
            norm = torch.linalg.vector_norm(x)
            x = x * (self.eps / norm) if norm > self.eps else x
            return torch.minimum(torch.maximum(x, -flat), 1 - flat)
        return project_linf_box(x, flat, self.eps)

    def _forward(self, adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One model pass: the log-probability margin, the logits and log p_t of each attacked image."""
        logits = self.model(adv)
        labels = torch.full((logits.shape[0],), self.label, dtype=torch.long, device=logits.device)
        margin, log_p_true = class_margins(logits, labels)
        return margin, logits, log_p_true

    def _loss_from(self, adv: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        if self.c == 0:  # the norm-ball attacks: the same values without computing the L1 term
            return margin.clamp_min(-self.kappa)
        distortion = (adv - self.image.unsqueeze(0)).abs().flatten(1).sum(dim=1)
        return margin.clamp_min(-self.kappa) + self.c * distortion

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        adv = self.adversarial(X)
        margin, _, _ = self._forward(adv)
        return self._loss_from(adv, margin)

    def loss_and_log_likelihood(
        self, X: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adv = self.adversarial(X)
        margin, _, log_p_true = self._forward(adv)
        return self._loss_from(adv, margin), log_p_true

    def success(self, X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.adversarial(X)).argmax(dim=1) != self.label

    def loss_and_success(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        adv = self.adversarial(X)
        margin, logits, _ = self._forward(adv)
        return self._loss_from(adv, margin), logits.argmax(dim=1) != self.label

    def stack_key(self) -> Hashable:
        """Attacks on one model object (any images and labels, same image shape and device) stack."""
        return (type(self), id(self.model), self.image_shape, str(self.image.device))

    @classmethod
    def loss_many(
        cls,
        tasks: Sequence[Task],
        rows: Sequence[torch.Tensor],
        batches: Sequence[torch.Tensor | None] | None = None,
    ) -> list[torch.Tensor]:
        """Every instance's loss from ONE forward of the shared model over all instances' attacked images.

        The margin of each row uses its own instance's label, the L1 term its own clean image, c and
        kappa. Equal to :meth:`loss` per instance up to float rounding (the model sees a bigger batch).
        Attacks are deterministic, so ``batches`` is checked and ignored.

        Args:
            tasks: attacks with one :meth:`stack_key`.
            rows: each instance's perturbation rows, [B_i, d].
            batches: unused (None, or one None per task).
        """
        check_blocks(tasks, rows, batches)
        stacked = cls._stacked(tasks, rows)
        return [task._loss_from(adv, margin) for task, (adv, margin, _) in zip(tasks, stacked, strict=True)]

    @classmethod
    def loss_and_success_many(
        cls, tasks: Sequence[Task], rows: Sequence[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Every instance's loss and success from one shared forward (see :meth:`loss_many`).

        Args:
            tasks: attacks with one :meth:`stack_key`.
            rows: each instance's perturbation rows, [B_i, d].
        """
        check_blocks(tasks, rows, None)
        return [
            (task._loss_from(adv, margin), logits.argmax(dim=1) != task.label)
            for task, (adv, margin, logits) in zip(tasks, cls._stacked(tasks, rows), strict=True)
        ]

    @classmethod
    def loss_and_log_likelihood_many(
        cls,
        tasks: Sequence[Task],
        rows: Sequence[torch.Tensor],
        batches: Sequence[torch.Tensor | None] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every instance's loss and log p_true from one shared forward (see :meth:`loss_many`).

        Args:
            tasks: attacks with one :meth:`stack_key`.
            rows: each instance's perturbation rows, [B_i, d].
            batches: unused (None, or one None per task).
        """
        check_blocks(tasks, rows, batches)
        out = []
        for task, (adv, margin, logits) in zip(tasks, cls._stacked(tasks, rows), strict=True):
            labels = torch.full((logits.shape[0],), task.label, dtype=torch.long, device=logits.device)
            out.append((task._loss_from(adv, margin), class_margins(logits, labels)[1]))
        return out

    @staticmethod
    def _stacked(
        tasks: Sequence[AttackTask], rows: Sequence[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(attacked images, margins, logits) of each instance's rows, from one pass of the shared model."""
        model = tasks[0].model
        if any(task.model is not model for task in tasks):
            raise ValueError("stacked attacks must share one model object; group tasks by stack_key() first")
        advs = [task.adversarial(X) for task, X in zip(tasks, rows, strict=True)]
        sizes = [adv.shape[0] for adv in advs]
        labels = torch.cat(
            [
                torch.full((n,), task.label, dtype=torch.long, device=adv.device)
                for task, n, adv in zip(tasks, sizes, advs, strict=True)
            ]
        )
        logits = model(torch.cat(advs))
        margins, _ = class_margins(logits, labels)
        return list(zip(advs, margins.split(sizes), logits.split(sizes), strict=True))

    def describe(self) -> dict:
        info = {**super().describe(), "label": self.label, "c": self.c, "kappa": self.kappa}
        return info if self.eps is None else {**info, "eps": self.eps, "norm": self.norm}
