"""The ``mnist_attack`` family: black-box attacks on held-out MNIST images of the shipped target model.

:class:`MnistAttackFamily` serves any data set of :data:`l2l.tasks.target_models.TARGET_DATA` through
its ``dataset`` class attribute; ``fashion_attack`` (:mod:`l2l.tasks.fashion_attack`) is the same family
on Fashion-MNIST.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import torch

from l2l.tasks.attack import AttackTask
from l2l.tasks.base import TaskFamily, split_counts
from l2l.tasks.registry import register_family
from l2l.tasks.target_models import load_target_model, target_data

SPLIT_SEED = 7
DEFAULT_SIZES = (200, 100, None)  # train, val, test (None: every remaining image)


@lru_cache(maxsize=4)
def correctly_classified(dataset: str = "mnist", checkpoint: str | None = None) -> torch.Tensor:
    """Indices into the data set's held-out images (1,000) that its target model classifies correctly.

    Args:
        dataset: ``mnist`` or ``fashion`` (:data:`l2l.tasks.target_models.TARGET_DATA`).
        checkpoint: the target-model file (None: the shipped one).
    """
    images, labels = target_data(dataset).heldout_split()
    with torch.no_grad():
        predicted = load_target_model(dataset, checkpoint)(images).argmax(dim=1)
    return torch.nonzero(predicted == labels).flatten()


class MnistAttackTask(AttackTask):
    """An :class:`AttackTask` that also remembers which image of its data set it attacks (and its family)."""

    family = "mnist_attack"

    def __init__(self, image_id: int, family: str = "mnist_attack", **kwargs):
        super().__init__(**kwargs)
        self.image_id = image_id
        self.family = family

    def describe(self) -> dict:
        return {**super().describe(), "image_id": self.image_id}


@register_family("mnist_attack")
class MnistAttackFamily(TaskFamily):
    """Untargeted attacks on MNIST images the target model never trained on and gets right.

    The correctly classified held-out images are shuffled with a fixed seed and cut into disjoint
    train / val / test splits.

    Args:
        c: L1 distortion weight (papers/002: 0.1).
        kappa: confidence margin (0).
        sizes: instances in (train, val, test); None takes every image that remains.
        checkpoint: target-model file (default: ``checkpoints/mnist_cnn.pt``).
        eps: bound on the perturbation's ``norm`` (None: the image box alone); see ``mnist_attack_linf``.
        norm: ``linf`` or ``l2``, the norm that ``eps`` bounds.
    """

    name = "mnist_attack"
    #: the data set of :data:`~l2l.tasks.target_models.TARGET_DATA` whose held-out images are attacked
    dataset: ClassVar[str] = "mnist"

    def __init__(
        self,
        c: float = 0.1,
        kappa: float = 0.0,
        sizes: tuple[int | None, int | None, int | None] = DEFAULT_SIZES,
        checkpoint: str | None = None,
        eps: float | None = None,
        norm: str = "linf",
    ):
        self.c, self.kappa, self.checkpoint, self.eps, self.norm = c, kappa, checkpoint, eps, norm
        self.model = load_target_model(self.dataset, checkpoint)
        pool = correctly_classified(self.dataset, checkpoint)
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED))]
        counts = split_counts(len(pool), list(sizes))
        bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
        self.pools = {
            split: pool[bounds[i] : bounds[i + 1]] for i, split in enumerate(("train", "val", "test"))
        }

    def split_size(self, split: str) -> int:
        return len(self.pools[split])

    def image_id(self, split: str, index: int) -> int:
        """The instance's image id: its position in the shuffled 5,000-image MNIST set (Fashion-MNIST:
        its row in the 60,000 training images)."""
        self.check_index(split, index)
        return int(target_data(self.dataset).heldout_ids()[self.pools[split][index]])

    def instance(self, split: str, index: int) -> MnistAttackTask:
        image_id = self.image_id(split, index)
        images, labels = target_data(self.dataset).heldout_split()
        local = int(self.pools[split][index])
        return MnistAttackTask(
            image_id=image_id,
            family=self.name,
            model=self.model,
            image=images[local],
            label=int(labels[local]),
            c=self.c,
            kappa=self.kappa,
            eps=self.eps,
            norm=self.norm,
        )
