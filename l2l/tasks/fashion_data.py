"""Fashion-MNIST (Xiao et al., 2017) from the Debian package ``dataset-fashion-mnist``, read with numpy.

The package installs the four original idx files under ``/usr/share/datasets/fashion-mnist/``
(``make setup`` installs it when it is missing and the user is root). Nothing is downloaded at run
time. ``$L2L_FASHION_MNIST`` points to another folder holding the same four files.

Two uses: the 10,000 test images are the order attack's retrieval database (``fashion_order_attack``),
and the 60,000 training images feed the ``fashion_attack`` target classifier, split as MNIST's 5,000
are (:mod:`l2l.tasks.mnist_data`): shuffled once with a fixed seed, the first 4,000 train the classifier
(``python -m train.target_model --dataset fashion``) and the next 1,000 are its held-out pool, the only
images attack instances come from. The other 55,000 are unused by the shipped classifier, which keeps
its training as short as MNIST's and its setting (4,000 images, C&W CNN) the same; the target-model zoo
(:mod:`l2l.tasks.zoo`) trains on more of them, never on the held-out 1,000.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_SHAPE = (1, 28, 28)
SPLIT_FILES = {"train": "train", "test": "t10k"}
#: the classifier's split of the training images (module docstring)
CLASSIFIER_SEED = 20170825
N_MODEL_TRAIN = 4000
N_HELDOUT = 1000
#: the idx magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels)
_MAGIC = {3: 0x00000803, 1: 0x00000801}


def data_dir() -> Path:
    """The folder of the idx files: ``$L2L_FASHION_MNIST`` if set, else the Debian package's folder."""
    return Path(os.environ.get("L2L_FASHION_MNIST", DEFAULT_DIR))


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in one gzipped idx file with ``ndim`` dimensions."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST file {str(path)!r} is missing; it comes from the Debian package "
            f"{DEBIAN_PACKAGE}: run `apt-get install -y {DEBIAN_PACKAGE}` (as root; or `make setup`), "
            "or set L2L_FASHION_MNIST to a folder holding the four idx .gz files"
        )
    raw = gzip.decompress(path.read_bytes())
    header = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(header[0]) != _MAGIC[ndim]:
        raise ValueError(f"{str(path)!r} is not a {ndim}-d uint8 idx file (magic {int(header[0]):#010x})")
    shape = tuple(int(s) for s in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{str(path)!r} holds {data.size} values; its header promises shape {shape}")
    return data.reshape(shape)


def _read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 pixels [N, 28, 28] and labels [N] of one split's files (not cached)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"split={split!r} must be one of {', '.join(SPLIT_FILES)}")
    stem = data_dir() / SPLIT_FILES[split]
    pixels = _read_idx(Path(f"{stem}-images-idx3-ubyte.gz"), 3)
    labels = _read_idx(Path(f"{stem}-labels-idx1-ubyte.gz"), 1)
    if len(pixels) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(pixels)} images but {len(labels)} labels")
    return pixels, labels


def _as_tensors(pixels: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 images [N, 1, 28, 28] in [0, 1] and int64 labels [N] from uint8 arrays."""
    images = torch.from_numpy(pixels.astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)
    return images, torch.from_numpy(labels.astype(np.int64))


@lru_cache(maxsize=2)
def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 [N, 1, 28, 28] in [0, 1] and int64 labels [N], in the files' order (cached).

    Args:
        split: ``train`` (60,000 images) or ``test`` (10,000; the retrieval database of the order
            attack, papers/004 sec. 3).
    """
    return _as_tensors(*_read_split(split))


@lru_cache(maxsize=1)
def classifier_splits() -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The classifier's ``model_train`` (4,000) and ``heldout`` (1,000) images: (images, labels, rows).

    ``rows`` are the images' row numbers in the training files. Only these 5,000 images are kept (16
    MB), not the 60,000 (188 MB as float32).
    """
    pixels, labels = _read_split("train")
    order = torch.from_numpy(np.random.default_rng(CLASSIFIER_SEED).permutation(len(labels)))
    parts = {
        "model_train": order[:N_MODEL_TRAIN],
        "heldout": order[N_MODEL_TRAIN : N_MODEL_TRAIN + N_HELDOUT],
    }
    return {
        name: (*_as_tensors(pixels[rows.numpy()], labels[rows.numpy()]), rows) for name, rows in parts.items()
    }


def model_train_split(n: int = N_MODEL_TRAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training images (and labels) of the shuffled order that never holds a held-out one.

    The default 4,000 are the ones the shipped ``fashion_attack`` classifier trained on; a larger ``n``
    (the target-model zoo) continues past the 1,000 held-out images into the 55,000 unused ones, so
    every model's training images exclude the attack pool and the smaller sets nest in the larger ones.

    Args:
        n: how many images, 1 to 59,000 (the 60,000 less the held-out 1,000).
    """
    if n <= N_MODEL_TRAIN:
        images, labels, _ = classifier_splits()["model_train"]
        return images[:n], labels[:n]
    pixels, labels = _read_split("train")
    rows = model_train_rows(n)
    return _as_tensors(pixels[rows], labels[rows])


def model_train_rows(n: int = N_MODEL_TRAIN) -> np.ndarray:
    """Row numbers (in the training files) of :func:`model_train_split`'s ``n`` images, in its order.

    Args:
        n: how many, 1 to 59,000.
    """
    total = len(_read_split("train")[1])
    if not 1 <= n <= total - N_HELDOUT:
        raise ValueError(f"n={n}: Fashion-MNIST has {total - N_HELDOUT} images outside the held-out 1,000")
    order = np.random.default_rng(CLASSIFIER_SEED).permutation(total)  # the order of classifier_splits
    return np.concatenate([order[:N_MODEL_TRAIN], order[N_MODEL_TRAIN + N_HELDOUT : N_HELDOUT + n]])[:n]


def heldout_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,000 training images the classifier never sees; ``fashion_attack`` instances come from these."""
    images, labels, _ = classifier_splits()["heldout"]
    return images, labels


def heldout_ids() -> torch.Tensor:
    """Row numbers (in the training files) of the 1,000 held-out images, in the held-out split's order."""
    return classifier_splits()["heldout"][2]
