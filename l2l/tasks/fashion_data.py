"""Fashion-MNIST (Xiao et al., 2017) from the Debian package ``dataset-fashion-mnist``, read with numpy.

The package installs the four original idx files under ``/usr/share/datasets/fashion-mnist/``
(``make setup`` installs it when it is missing and the user is root). Nothing is downloaded at run
time. ``$L2L_FASHION_MNIST`` points to another folder holding the same four files.
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


@lru_cache(maxsize=2)
def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 [N, 1, 28, 28] in [0, 1] and int64 labels [N], in the files' order (cached).

    Args:
        split: ``train`` (60,000 images) or ``test`` (10,000; the retrieval database of the order
            attack, papers/004 sec. 3).
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split={split!r} must be one of {', '.join(SPLIT_FILES)}")
    stem = data_dir() / SPLIT_FILES[split]
    pixels = _read_idx(Path(f"{stem}-images-idx3-ubyte.gz"), 3)
    labels = _read_idx(Path(f"{stem}-labels-idx1-ubyte.gz"), 1)
    if len(pixels) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(pixels)} images but {len(labels)} labels")
    images = torch.from_numpy(pixels.astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)
    return images, torch.from_numpy(labels.astype(np.int64))
