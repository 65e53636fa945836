"""The ``mnist_attack`` family: black-box attacks on held-out MNIST images of the shipped target model.

:class:`MnistAttackFamily` serves any data set of :data:`l2l.tasks.target_models.TARGET_DATA` through
its ``dataset`` class attribute; ``fashion_attack`` (:mod:`l2l.tasks.fashion_attack`) is the same family
on Fashion-MNIST. ``model=`` attacks another model of the data set's zoo (:mod:`l2l.tasks.zoo`) on the
same images: the splits are cut once, on the shipped model's correctly classified images, and every
model keeps, of each split, the images it classifies correctly, so no image is a training instance for
one model and a test instance for another (a surrogate's train images never test a held-out target).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import torch

from l2l.tasks.attack import AttackTask
from l2l.tasks.base import TaskFamily, split_counts
from l2l.tasks.registry import register_family
from l2l.tasks.target_models import load_target_model, target_data
from l2l.tasks.zoo.registry import DEFAULT_MODEL, zoo_model

SPLIT_SEED = 7
DEFAULT_SIZES = (200, 100, None)  # train, val, test (None: every remaining image)


@lru_cache(maxsize=16)
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

    def __init__(self, image_id: int, family: str = "mnist_attack", model_name: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.image_id = image_id
        self.family = family
        #: the attacked model's name in the data set's zoo (None: unknown), which a surrogate-based
        #: attack leaves out of its ensemble
        self.model_name = model_name

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
        checkpoint: target-model file (default: ``checkpoints/mnist_cnn.pt``); only with the default model.
        eps: bound on the perturbation's ``norm`` (None: the image box alone); see ``mnist_attack_linf``.
        norm: ``linf`` or ``l2``, the norm that ``eps`` bounds.
        model: the attacked model of the data set's zoo (:data:`l2l.tasks.zoo.registry.ZOO`; none: the
            shipped C&W CNN, ``cw``). A held-out target loads only where evaluation allows it
            (:mod:`l2l.tasks.zoo.guard`). Its splits are the default model's, less the images it gets wrong.
    """

    name = "mnist_attack"
    #: the data set of :data:`~l2l.tasks.target_models.TARGET_DATA` whose held-out images are attacked
    dataset: ClassVar[str] = "mnist"
    #: the ``model`` a None resolves to (read by ``tuning_key``, which leaves the default out of the key)
    default_model: ClassVar[str] = DEFAULT_MODEL

    def __init__(
        self,
        c: float = 0.1,
        kappa: float = 0.0,
        sizes: tuple[int | None, int | None, int | None] = DEFAULT_SIZES,
        checkpoint: str | None = None,
        eps: float | None = None,
        norm: str = "linf",
        model: str | None = None,
    ):
        self.model_name = self.default_model if model is None else model
        entry = zoo_model(self.dataset, self.model_name)
        if checkpoint is not None and self.model_name != self.default_model:
            raise ValueError(
                f"checkpoint={checkpoint!r} replaces the default model only, not model={model!r}"
            )
        self.c, self.kappa, self.checkpoint, self.eps, self.norm = c, kappa, checkpoint, eps, norm
        zoo_checkpoint = None if self.model_name == self.default_model else str(entry.path())
        self.model = load_target_model(self.dataset, zoo_checkpoint or checkpoint)
        pool = correctly_classified(self.dataset, checkpoint)
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED))]
        counts = split_counts(len(pool), list(sizes))
        bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
        self.pools = {
            split: pool[bounds[i] : bounds[i + 1]] for i, split in enumerate(("train", "val", "test"))
        }
        if zoo_checkpoint is not None:
            self.pools = self._keep_correct(self.pools, pool, sizes[-1] is None, zoo_checkpoint)

    def _keep_correct(
        self, pools: dict[str, torch.Tensor], pool: torch.Tensor, test_takes_rest: bool, checkpoint: str
    ) -> dict[str, torch.Tensor]:
        """The default model's ``pools`` cut down to the images the model in ``checkpoint`` gets right.

        The held-out images the default model gets wrong (outside every split so far) join the test
        split when it takes every remaining image, in a fixed shuffled order, after its other images.
        """
        n_heldout = len(target_data(self.dataset).heldout_split()[1])
        outside = torch.ones(n_heldout, dtype=torch.bool)
        outside[pool] = False
        rest = torch.nonzero(outside).flatten()
        rest = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(SPLIT_SEED))]
        if test_takes_rest:
            pools = {**pools, "test": torch.cat([pools["test"], rest])}
        correct = torch.zeros(n_heldout, dtype=torch.bool)
        correct[correctly_classified(self.dataset, checkpoint)] = True
        return {split: indices[correct[indices]] for split, indices in pools.items()}

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
            model_name=self.model_name,
            model=self.model,
            image=images[local],
            label=int(labels[local]),
            c=self.c,
            kappa=self.kappa,
            eps=self.eps,
            norm=self.norm,
        )
