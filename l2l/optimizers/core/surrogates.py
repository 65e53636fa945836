"""A surrogate ensemble: the white-box models a surrogate-based attack may differentiate.

The black-box threat model (docs/results/target_models.md) lets an attacker carry knowledge of other
models, the **surrogates** of the attacked data set's zoo (:data:`l2l.tasks.zoo.registry.ZOO`), but
never the target's gradients. :class:`SurrogateEnsemble` loads only models whose zoo role is
``surrogate``, so an attack built on it cannot read a held-out target even where evaluation has opened
the guard. Every method here is free: it touches the surrogates alone, never the oracle.

The loss is the task's (:class:`l2l.tasks.attack.AttackTask`): the log-probability margin
log p_t - max_{j != t} log p_j of the true class t, here summed over the ensemble and not clipped, so a
surrogate that is already fooled keeps pushing (a transfer example with margin to spare transfers
better). The sum, not the mean: the sheet's "summed margin loss"; sign and normalized steps make the
two the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
from torch import nn

from l2l.tasks.attack import class_margins
from l2l.tasks.base import NormBall
from l2l.tasks.registry import family_zoo
from l2l.tasks.target_models import load_target_model
from l2l.tasks.zoo.registry import ZOO, zoo_model, zoo_names

#: ``surrogates=`` value meaning every surrogate of the data set's zoo
ALL_SURROGATES = "all"


def parse_surrogates(dataset: str, names: str) -> tuple[str, ...]:
    """The surrogate names ``names`` lists (``all``: the zoo's surrogates, in zoo order).

    Raises:
        ValueError: an unknown model, a held-out target, an empty or repeated item.
    """
    if names == ALL_SURROGATES:
        return tuple(zoo_names(dataset, "surrogate"))
    listed = tuple(name.strip() for name in names.split(","))
    if not all(listed) or len(set(listed)) != len(listed):
        raise ValueError(f"surrogates={names!r} has an empty or repeated item; list each model once")
    for name in listed:
        if zoo_model(dataset, name).role != "surrogate":
            raise ValueError(
                f"surrogates={names!r} names {name!r}, a held-out target of the {dataset} zoo; an attack "
                f"may carry surrogates only: {', '.join(zoo_names(dataset, 'surrogate'))} (or 'all')"
            )
    return listed


def check_surrogate_names(names: str) -> None:
    """Refuse ``names`` at an attack's construction, before it has seen a task: every zoo shares its
    model names, so a name bad in one (unknown, held-out) is bad in all (:func:`parse_surrogates`)."""
    for dataset in ZOO:
        parse_surrogates(dataset, names)


def task_zoo(task: object) -> str | None:
    """The data set whose zoo the attack ``task`` comes from (its family's ``model`` option), or None."""
    family = getattr(task, "family", None)
    return family_zoo(family) if isinstance(family, str) and family else None  # "": a hand-built task


class SurrogateEnsemble:
    """The surrogate models of one data set's zoo, differentiated together.

    Args:
        dataset: ``mnist`` or ``fashion``.
        names: surrogate names, or ``all`` (:func:`parse_surrogates`).
        exclude: a model left out (the attacked one, when it is itself a surrogate: differentiating the
            target would make the attack white-box), or None.

    Raises:
        ValueError: bad names (:func:`parse_surrogates`), or none left once ``exclude`` is out.
    """

    def __init__(self, dataset: str, names: str = ALL_SURROGATES, exclude: str | None = None):
        self.dataset = dataset
        self.names = tuple(name for name in parse_surrogates(dataset, names) if name != exclude)
        if not self.names:
            raise ValueError(
                f"surrogates={names!r} leaves no model once the attacked {exclude!r} is out; add others"
            )
        self.models: tuple[nn.Module, ...] = _load(dataset, self.names)

    def margin(self, images: torch.Tensor, label: int) -> torch.Tensor:
        """The summed margin of every image [n, c, h, w] in [0, 1], [n] (differentiable in ``images``)."""
        labels = torch.full((images.shape[0],), label, dtype=torch.long, device=images.device)
        total = torch.zeros(images.shape[0], device=images.device)
        for model in self.models:
            total = total + class_margins(model.to(images.device)(images), labels)[0]
        return total

    def gradient(self, image: torch.Tensor, delta: torch.Tensor, label: int) -> torch.Tensor:
        """d(summed margin)/d(delta) at the attacked image clamp(image + delta, 0, 1), flat [d].

        Args:
            image: the clean image, any shape a surrogate takes per example.
            delta: the flat perturbation [d].
            label: the true class.
        """
        delta = delta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            attacked = (image.unsqueeze(0) + delta.view(1, *image.shape)).clamp(0.0, 1.0)
            (grad,) = torch.autograd.grad(self.margin(attacked, label).sum(), delta)
        return grad

    def pgd(
        self,
        image: torch.Tensor,
        label: int,
        ball: NormBall,
        project: Callable[[torch.Tensor], torch.Tensor],
        steps: int,
        step_fraction: float,
    ) -> torch.Tensor:
        """A transfer perturbation: ``steps`` PGD steps on the summed margin, from 0, flat [d].

        L-inf steps move every coordinate by ``step_fraction * eps`` along -sign(gradient); L2 steps
        move ``step_fraction * eps`` along the normalized -gradient. ``project`` (the task's free
        projection) keeps every iterate in the ball and the image box.
        """
        delta = torch.zeros(image.numel(), device=image.device)
        size = step_fraction * ball.eps
        for _ in range(steps):
            grad = self.gradient(image, delta, label)
            if ball.norm == "linf":
                move = grad.sign()
            else:
                move = grad / torch.linalg.vector_norm(grad).clamp_min(1e-12)
            delta = project(delta - size * move)
        return delta.detach()


@lru_cache(maxsize=8)
def _load(dataset: str, names: Sequence[str]) -> tuple[nn.Module, ...]:
    """The surrogate models, loaded once per (data set, names); held-out names never reach here."""
    return tuple(load_target_model(dataset, str(zoo_model(dataset, name).path())) for name in names)
