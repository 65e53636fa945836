"""The ``mnist_attack`` family: black-box attacks on held-out MNIST images of the shipped target model."""

from __future__ import annotations

from functools import lru_cache

import torch

from l2l.tasks.attack import AttackTask
from l2l.tasks.base import TaskFamily, split_counts
from l2l.tasks.mnist_data import N_MODEL_TRAIN, heldout_split
from l2l.tasks.registry import register_family
from l2l.tasks.target_models import load_mnist_target_model

SPLIT_SEED = 7
DEFAULT_SIZES = (200, 100, None)  # train, val, test (None: every remaining image)


@lru_cache(maxsize=2)
def correctly_classified(checkpoint: str | None = None) -> torch.Tensor:
    """Indices into the held-out 1,000 images that the target model classifies correctly."""
    images, labels = heldout_split()
    with torch.no_grad():
        predicted = load_mnist_target_model(checkpoint)(images).argmax(dim=1)
    return torch.nonzero(predicted == labels).flatten()


class MnistAttackTask(AttackTask):
    """An :class:`AttackTask` that also remembers which MNIST image it attacks (and from which family)."""

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
        self.model = load_mnist_target_model(checkpoint)
        pool = correctly_classified(checkpoint)
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED))]
        counts = split_counts(len(pool), list(sizes))
        bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
        self.pools = {
            split: pool[bounds[i] : bounds[i + 1]] for i, split in enumerate(("train", "val", "test"))
        }

    def split_size(self, split: str) -> int:
        return len(self.pools[split])

    def image_id(self, split: str, index: int) -> int:
        """Position of the instance's image in the shuffled 5,000-image MNIST set."""
        self.check_index(split, index)
        return N_MODEL_TRAIN + int(self.pools[split][index])

    def instance(self, split: str, index: int) -> MnistAttackTask:
        image_id = self.image_id(split, index)
        images, labels = heldout_split()
        local = image_id - N_MODEL_TRAIN
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
